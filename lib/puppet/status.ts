import { PuppetEndpoint, type EndpointOptions } from './http';

/**
 * Puppet Server's status service. `/status/v1/simple` is open to any client in Puppet's default
 * auth.conf, so a freshly enrolled compile master can be checked with just the pinned CA.
 */
export class PuppetServerStatusClient {
  private readonly endpoint: PuppetEndpoint;

  constructor(options: Omit<EndpointOptions, 'server'>) {
    this.endpoint = new PuppetEndpoint({ ...options, server: 'puppetserver' });
  }

  /** True when the server answers "running". Failing to connect is "not healthy", not an error. */
  async isHealthy(): Promise<boolean> {
    try {
      const result = await this.endpoint.call({ operation: 'status', method: 'GET', path: '/status/v1/simple', accept: [200, 503], retry: false });
      return result.status === 200 && result.text.trim() === 'running';
    } catch {
      return false;
    }
  }

  close(): Promise<void> {
    return this.endpoint.close();
  }
}
