/**
 * The controller's shared vocabulary: what AWS's lifecycle and instance states mean to it, the
 * timings of its state machine, and the names of its metrics. The planner, the executor, observe,
 * the CLI, the lab and the stack's monitoring all speak it; it depends on nothing of theirs.
 */

// ---- Auto Scaling lifecycle states (DescribeAutoScalingGroups' LifecycleState) -------------

/** Held by the launch hook: the instance is enrolled now, and its launch completed by the controller. */
export const LAUNCHING = 'Pending:Wait';
/** Held by the terminate hook: the instance is purged now, and its termination completed by the controller. */
export const TERMINATING = 'Terminating:Wait';
/**
 * Being deregistered from the load balancer: agents may still be mid-request on it until the
 * deregistration delay ends, and the terminate hook (Terminating:Wait) always follows.
 */
export const DRAINING = 'Terminating';
/** Leaving the group for good: nothing to complete any more, but owned certificates must go. */
export const LEAVING: ReadonlySet<string> = new Set(['Terminating:Proceed', 'Terminated']);
/** Behind the load balancer: the only state in which a node's lasting ill health gets it replaced. */
export const IN_SERVICE = 'InService';
/** Serving, or about to: an owned certificate there must stay valid; a purged one may re-enroll. */
export const SERVING: ReadonlySet<string> = new Set([IN_SERVICE, 'Pending:Proceed', 'Standby', 'EnteringStandby']);

// ---- EC2 instance states -------------------------------------------------------------------

/**
 * The EC2 states of an instance that is gone for good: the ones the stack's rule forwards, the
 * controller accepts as a trigger, and the planner purges a departed instance in.
 */
export const GONE_EC2_STATES = ['shutting-down', 'terminated'] as const;
export type GoneEc2State = (typeof GONE_EC2_STATES)[number];

export function isGoneEc2State(state: string): state is GoneEc2State {
  return (GONE_EC2_STATES as readonly string[]).includes(state);
}

// ---- timings -------------------------------------------------------------------------------

/** Timings of the state machine; none is worth an environment variable. */
export const TIMING = {
  /** Quiet period after the last change before the primary's run starts: a burst costs one run. */
  runQuietSeconds: 5,
  followRunSeconds: 20,
  awaitNodeSeconds: 30,
  awaitNodeAttempts: 10,
  /** Longer than the function's timeout, so a live pass never loses its claim. */
  purgeLeaseMs: 150_000,
  /** A claimed run without a run id after this long was lost by a crashed pass. */
  runClaimTimeoutMs: 120_000,
  /** A run still not finished after this long counts as failed (and the SSM runner stops it then). */
  runTimeoutMs: 30 * 60_000,
  runAttempts: 2,
  stuckLaunchMs: 30 * 60_000,
  /** Auto Scaling replaces a member marked unhealthy within a minute or two; after this, say so. */
  groupReplacesUnhealthyMs: 10 * 60_000,
} as const;

// ---- metrics -------------------------------------------------------------------------------

/** Metric names (EMF through Powertools, dimension `service`); the stack's alarms use the first four. */
export const METRIC = {
  refused: 'LifecycleActionsRefused',
  failed: 'LifecycleActionsFailed',
  runsFailed: 'PrimaryRunsFailed',
  drift: 'Drift',
  completed: 'LifecycleActionsCompleted',
  signed: 'CertificatesSigned',
  requestsRefused: 'CertificateRequestsRefused',
  purged: 'NodesPurged',
  runsStarted: 'PrimaryRunsStarted',
  /** Pending CSRs whose key the instance did not report: someone else's, removed. */
  impostorCsrs: 'ImpostorCsrsRemoved',
  /** Queue messages whose sender may not say what they say (a compile master speaking for another). */
  forged: 'ForgedMessagesIgnored',
  /** Passes that had a CSR to sign but signed nothing: the CA accepts duplicate CSRs, or could not say. */
  signingSuspended: 'SigningSuspended',
  /** Registry items quarantined this pass (each is drift too): worth an alarm of its own, since a person must repair them. */
  damagedEntries: 'RegistryEntriesDamaged',
  /** Serving nodes whose Puppet Server stayed unhealthy past the window without rebooting: handed to the group to replace. */
  replacedUnhealthy: 'NodesReplacedUnhealthy',
  /** Passes that found the client certificate secret empty or missing: nothing signed or purged until it is put. */
  secretsMissing: 'SecretsMissing',
} as const;
