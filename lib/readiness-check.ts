/**
 * The load balancer's health check of a compile master, defined once: the stack gives both target
 * groups exactly these settings, and the node agent's readiness daemon derives from them how long
 * it must answer "not ready" before it lets Puppet Server stop. A copy of these numbers in either
 * place would let the drain fall short of what the NLB needs after someone tunes the check.
 */
export const READINESS_CHECK = {
  /** Plain HTTP, served by the node agent's readiness daemon (compile-master-readiness.service). */
  port: 8141,
  path: '/ready',
  intervalSeconds: 10,
  timeoutSeconds: 5,
  healthyThresholdCount: 3,
  unhealthyThresholdCount: 3,
} as const;

/** The settings the drain depends on. */
export interface ReadinessCheck {
  intervalSeconds: number;
  timeoutSeconds: number;
  unhealthyThresholdCount: number;
}

/**
 * After the last check that found the target unhealthy, NLB nodes take a few more seconds to stop
 * sending it new connections.
 */
export const DRAIN_MARGIN_SECONDS = 10;

/**
 * How long a target must answer "not ready" before the NLB has surely stopped sending it new
 * connections: the check in flight when the answer changes may still pass (one timeout), then
 * `unhealthyThresholdCount` failed checks one interval apart, then the margin.
 */
export function drainSeconds(check: ReadinessCheck = READINESS_CHECK): number {
  return check.unhealthyThresholdCount * check.intervalSeconds + check.timeoutSeconds + DRAIN_MARGIN_SECONDS;
}

/**
 * The longest the readiness daemon waits, after the drain, for agents already connected to finish
 * their runs before Puppet Server stops. A run that began just before the load balancer stopped
 * sending new connections may still be compiling its catalog; Puppet Server answers its next
 * request 503 once it begins to stop. Bounded because EC2 forces a reboot that has not shut down
 * within four minutes (the drain, this wait, the metadata look-up and Puppet Server's and PuppetDB's
 * own graceful stops must all fit), and an NLB closes an unhealthy target's connections after its
 * draining interval (the deregistration delay) anyway.
 */
export const IN_FLIGHT_WAIT_MAX_SECONDS = 90;

/** What the stack writes for the in-flight wait: how long the NLB keeps an unhealthy target's connections, within the bound. */
export function inFlightWaitSeconds(unhealthyDrainingSeconds: number): number {
  return Math.min(unhealthyDrainingSeconds, IN_FLIGHT_WAIT_MAX_SECONDS);
}
