import type { InstanceMetadata, LifecycleObservation } from './imds';
import type { Logger } from './log';

export interface ShutdownDecision {
  /**
   * 'terminating': the group is terminating this instance; the controller purges it through the
   * terminate hook. 'keep-identity': a reboot, a stop, or we cannot tell — all keep the certificate.
   * There is deliberately no action that purges: the node holds no credentials to do it.
   */
  verdict: 'terminating' | 'keep-identity';
  reason: string;
}

/**
 * `target-lifecycle-state` is the state the instance is heading to, so only `Terminated` during
 * a shutdown means the instance will not come back. Everything else — InService (reboot),
 * Standby, Detached, Warmed:* (back to a warm pool), no transition yet (404), or no answer — keeps
 * the identity: wrongly keeping one costs a purge by the controller later, wrongly dropping one
 * costs a re-enrollment of a node that was only rebooting.
 */
export function decideShutdown(observation: LifecycleObservation): ShutdownDecision {
  switch (observation.kind) {
    case 'state':
      return observation.state === 'Terminated'
        ? { verdict: 'terminating', reason: 'target lifecycle state is Terminated: the controller purges this node through the terminate hook' }
        : { verdict: 'keep-identity', reason: `target lifecycle state is ${JSON.stringify(observation.state.slice(0, 40))}, not Terminated: reboot or stop` };
    case 'not-found':
      return { verdict: 'keep-identity', reason: 'no target lifecycle state yet (404): the instance has had no Auto Scaling transition, so this is a reboot or stop' };
    case 'unavailable':
      return { verdict: 'keep-identity', reason: `instance metadata did not answer (${observation.error.message}); keeping the identity is the safe default` };
  }
}

/** The shutdown step only looks and logs: nothing on the node is changed in any case. */
export async function shutdown(deps: { imds: InstanceMetadata; log: Logger }): Promise<ShutdownDecision> {
  const decision = decideShutdown(await deps.imds.targetLifecycleState());
  deps.log.info(decision.verdict === 'terminating' ? 'instance is terminating; leaving the purge to the controller' : 'keeping this node\'s identity', {
    verdict: decision.verdict,
    reason: decision.reason,
  });
  return decision;
}
