/**
 * Types for the undici modules lib/puppet/http.ts imports directly (see the comment there): the
 * very class and API function undici's index exports, so undici's own types describe them.
 */
declare module 'undici/lib/dispatcher/agent.js' {
  import type { Agent } from 'undici';

  const AgentClass: typeof Agent;
  export default AgentClass;
}

declare module 'undici/lib/dispatcher/dispatcher.js' {
  import type { Dispatcher } from 'undici';

  const DispatcherClass: typeof Dispatcher;
  export default DispatcherClass;
}

declare module 'undici/lib/api/api-request.js' {
  import type { Dispatcher } from 'undici';

  /** What undici's index installs as Dispatcher.prototype.request. */
  const request: Dispatcher['request'];
  export default request;
}
