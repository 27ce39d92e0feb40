import type { NodeAgentEvent } from '../../lib/node-agent-notice';
import type { CertificateContents, CsrFacts } from '../../lib/puppet/csr';
import type { RecheckReason } from './messages';
import type { PrimaryRunState } from './ports';
import type { GoneEc2State } from './vocabulary';

/** What the signer checked in the CSR, to compare with what the CA then issues. */
export type CheckedRequest = Pick<CsrFacts, 'publicKeySha256' | 'dnsAltNames' | 'puppetExtensions'>;

/** What made the controller look. Every trigger ends in the same full reconcile. */
export type Trigger =
  | { kind: 'lifecycle'; transition: 'launch' | 'terminate'; instanceId: string }
  | { kind: 'instance-state'; instanceId: string; state: GoneEc2State }
  | { kind: 'schedule' }
  /**
   * Sent by the instance itself (SQS's SenderId), so its key report is the instance's word.
   * bootedAt (when SQS received a booted or enrolled notice) is its own word that it just booted.
   */
  | { kind: 'node-agent'; instanceId: string; event: NodeAgentEvent; keyReport?: KeyReport; bootedAt?: string }
  | { kind: 'recheck'; reason: RecheckReason; instanceId?: string; runId?: string; attempt: number };

/**
 * The key an instance said its CSR is made from, in a message only it could send: the one thing
 * about a CSR an attacker on 8140 cannot copy (DESIGN rule 2). The latest report counts.
 */
export interface KeyReport {
  publicKeySha256: string;
  /** When SQS received the report. */
  reportedAt: string;
}

/** An Auto Scaling group member as DescribeAutoScalingGroups reports it. */
export interface Member {
  instanceId: string;
  /** AWS's LifecycleState, e.g. "Pending:Wait", "InService", "Terminating:Wait". */
  lifecycleState: string;
  /**
   * AWS's HealthStatus. "Unhealthy" on an InService member: someone (the controller's
   * SetInstanceHealth) handed it to the group, which replaces it shortly.
   */
  healthStatus?: 'Healthy' | 'Unhealthy';
}

export interface Ec2Instance {
  instanceId: string;
  /** pending | running | shutting-down | terminated | stopping | stopped */
  state: string;
  privateDnsName: string | undefined;
  privateIp: string | undefined;
  launchTime: Date | undefined;
}

/**
 * Registry states of an instance the controller enrolled:
 * signed → converging (healthy, waiting for the primary's run) → in-service;
 * stalled: the primary's run failed for good, the launch is left to the hook's default result;
 * purging (claimed, lease in claimedAt) → purged. A purged entry of a live member may re-enroll.
 */
export type RegistryState = 'signed' | 'converging' | 'in-service' | 'stalled' | 'purging' | 'purged';

export interface RegistryEntry {
  instanceId: string;
  certname: string;
  state: RegistryState;
  createdAt: string;
  updatedAt: string;
  /** When the current purge claim was taken (state purging). */
  claimedAt?: string;
  /**
   * What was checked in the CSR the controller signed for it, recorded with ownership before
   * signing, so the issued certificate can be compared with it on any later pass. Absent on
   * entries written before it was recorded.
   */
  checked?: CheckedRequest;
  /** The certificate the CA issued, once it passed the comparison with `checked` ("verified"). */
  issued?: IssuedRecord;
  /** The current (or last) purge's progress. */
  purge?: PurgeProgress;
  /** In service: the first pass that saw its Puppet Server unhealthy, cleared by the first that sees it healthy. */
  unhealthySince?: string;
  /** When SQS received the node agent's latest booted or enrolled notice (the instance's own word). */
  bootedAt?: string;
}

export interface IssuedRecord {
  /** Decimal, as the CA API reports `serial_number`. */
  serial: string;
  /** "AB:CD:…", SHA-256 of the certificate: what a purge compares with the CA's certificate. */
  sha256Fingerprint: string;
  verifiedAt: string;
}

export type PurgeStep = 'ca' | 'puppetdb';

/** A retried purge does only the steps not done yet, and deactivates with the first attempt's time. */
export interface PurgeProgress {
  /** When the purge was first claimed: PuppetDB's producer_timestamp on every attempt. */
  startedAt: string;
  /** When the CA step was done: the certificate cleaned, or found not to be this instance's and left alone. */
  ca?: string;
  puppetdb?: string;
}

/** A registry item that cannot be trusted (does not parse, hostile certname, key not an instance id): never acted on. */
export interface DamagedEntry {
  /** The item's key as stored: untrusted text. */
  key: string;
  /** When the key is a valid instance id: nothing is done for that instance while its item is damaged. */
  instanceId?: string;
  problem: string;
}

export interface RegistryListing {
  entries: RegistryEntry[];
  damaged: DamagedEntry[];
}

/**
 * The one run of the primary for the tier, coordinated through one registry item with optimistic
 * versioning: `pending` collects instances whose change the primary has not yet seen; a run claims
 * them all at once, so a burst of changes costs one run.
 */
export interface RunRecord {
  version: number;
  pending: string[];
  /** Last time something was added to pending: runs start after a short quiet period. */
  requestedAt?: string;
  job?: RunJob;
  last?: { name: string; outcome: 'finished' | 'failed'; covers: string[]; endedAt: string };
}

export interface RunJob {
  /**
   * The runner's run id (see PrimaryRunPort), set once the runner accepted the run; absent between
   * claim and start. Stored as `name` since the orchestrator-only records.
   */
  name?: string;
  claimedAt: string;
  covers: string[];
  attempt: number;
}

export type CertState = 'requested' | 'signed' | 'revoked' | 'absent';

/** What the CA holds for a certname at one moment: a pending CSR, and a certificate (revoked or not). */
export interface CaHolding {
  requested: boolean;
  certificate: CertificateContents | undefined;
}

export type CsrObservation = { ok: true; facts: CsrFacts } | { ok: false; problem: string };

/** The runner's answer about the current run; 'unreachable' must not stop the rest of a pass. */
export type RunObservation = { kind: 'state'; state: PrimaryRunState } | { kind: 'missing' } | { kind: 'unreachable'; problem: string };

/** Everything the planner may look at; gathered fresh for every pass. */
export interface Observed {
  now: Date;
  members: Member[];
  instances: ReadonlyMap<string, Ec2Instance>;
  registry: RegistryEntry[];
  /** Registry items quarantined as damaged; their instances are left alone. */
  damaged: DamagedEntry[];
  run: RunRecord;
  /**
   * CA state by certname, for the certnames the pass cares about. For a certname a member holds
   * (registry entry not purged) it is the certificate's state while there is one, even with a CSR
   * pending next to it.
   */
  certs: ReadonlyMap<string, CertState>;
  /** Pending CSRs of launching (or re-enrolling) members, by certname. */
  csrs: ReadonlyMap<string, CsrObservation>;
  /** The latest key report of each launching instance not enrolled yet, and of each whose pending CSR was read, by instance id. */
  keyReports: ReadonlyMap<string, KeyReport>;
  /** Puppet Server health of nodes waiting to be converged, and of owned InService nodes, by instance id. */
  health: ReadonlyMap<string, boolean>;
  /** State of run.job, when it has a run id. */
  runState: RunObservation | undefined;
  /** Why nothing may be signed this pass (the CA accepts duplicate CSRs, or could not say); absent when signing may go ahead. */
  signingSuspended?: string;
}

export interface PurgeTarget {
  instanceId: string;
  certname: string;
  /** Also CONTINUE the instance's terminate lifecycle action once purged. */
  completeTerminate: boolean;
}

/** What the executor carries out. Every action says why, for the log. */
export type Action =
  | { kind: 'refuse'; instanceId: string; certname?: string; reasons: string[]; abandon: boolean }
  /**
   * Deletes a pending CSR that is not the instance's (its key is not the one the instance
   * reported), so the instance can submit its own; only while the CSR pending is still that one.
   */
  | { kind: 'remove-csr'; instanceId: string; certname: string; publicKeySha256: string | undefined; reason: string }
  | { kind: 'sign'; instanceId: string; certname: string; checked: CheckedRequest; reEnrollment: boolean }
  /** Compares a certificate signed by an earlier pass with what was checked; revokes it if it differs. */
  | { kind: 'verify'; instanceId: string; certname: string; checked: CheckedRequest; launching: boolean }
  | { kind: 'purge'; targets: PurgeTarget[]; reason: string }
  | { kind: 'forget'; instanceId: string; reason: string }
  | { kind: 'complete-terminate'; instanceId: string; reason: string }
  /** Healthy nodes the primary must see: one request for all of them. */
  | { kind: 'converge'; instanceIds: string[] }
  | { kind: 'launched'; instanceId: string; completeLaunch: boolean }
  | { kind: 'heartbeat'; instanceIds: string[] }
  | { kind: 'stall'; instanceIds: string[]; reason: string }
  /** Claims everything pending (plus, for a retry, what the failed run covered) for one new run. */
  | { kind: 'start-run'; attempt: number; retryOf?: string; reason: string }
  | { kind: 'end-run'; runId: string; outcome: 'finished' | 'failed' }
  | { kind: 'reset-run'; claimedAt: string; reason: string }
  | { kind: 'recheck'; delaySeconds: number; reason: RecheckReason; instanceId?: string; runId?: string; attempt: number }
  /** Starts (a time) or ends (undefined) a serving node's unhealthy streak in the registry. */
  | { kind: 'record-health'; instanceId: string; unhealthySince: string | undefined }
  /** Tells the group the node is unhealthy: it is terminated through the terminate hook (and purged there) and replaced. */
  | { kind: 'replace-unhealthy'; instanceId: string; certname: string; reason: string };

export interface Drift {
  instanceId?: string;
  certname?: string;
  detail: string;
}

export interface Plan {
  actions: Action[];
  drift: Drift[];
  /** How many registry items were quarantined as damaged (each is also drift). */
  damagedEntries: number;
  /** Things the pass saw and deliberately left alone, for the log. */
  notes: string[];
}
