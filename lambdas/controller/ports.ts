import type { CertificateContents, CsrFacts } from '../../lib/puppet/csr';
import type { RecheckMessage } from './messages';
import type { CaHolding, CertState, CheckedRequest, Ec2Instance, KeyReport, Member, PurgeStep, RegistryEntry, RegistryListing, RunRecord } from './model';

/**
 * The controller's view of the outside world. The AWS adapters live in aws/, the Puppet one in
 * puppet.ts, and lab/memory-cloud.ts implements the AWS side in memory for tests and
 * the lab. Every method is safe to repeat.
 */

export type LifecycleHook = 'launch' | 'terminate';

export interface GroupPort {
  members(): Promise<Member[]>;
  /** 'already-completed' when AWS says there is no active action: a repeat is success. */
  completeLifecycleAction(instanceId: string, hook: LifecycleHook, result: 'CONTINUE' | 'ABANDON'): Promise<'completed' | 'already-completed'>;
  recordHeartbeat(instanceId: string, hook: LifecycleHook): Promise<'recorded' | 'no-active-action'>;
  /** Marks the member unhealthy now (no grace period): the group terminates it through the terminate hook and replaces it. */
  setUnhealthy(instanceId: string): Promise<void>;
}

export interface InstancesPort {
  /** Instances EC2 knows (terminated ones for about an hour); unknown ids are simply absent. */
  describe(instanceIds: readonly string[]): Promise<Map<string, Ec2Instance>>;
}

/**
 * The controller's record of what it enrolled. Writes are conditional: two passes racing on the
 * same instance cannot both claim it, and a lost race answers false, never throws.
 */
export interface RegistryPort {
  /** The entry; undefined also when its item is damaged. */
  get(instanceId: string): Promise<RegistryEntry | undefined>;
  /** Every entry, and apart from them the items that cannot be trusted (see DamagedEntry). */
  list(): Promise<RegistryListing>;
  /**
   * Takes ownership before signing: only if absent, or the same certname and not mid-purge or
   * stalled. Records the checked request, and forgets any earlier issued certificate and purge.
   */
  recordSigned(instanceId: string, certname: string, checked: CheckedRequest, now: Date): Promise<boolean>;
  /**
   * Records the certificate that passed the check (the entry is then verified): only while the
   * entry is live and its checked request is for the certificate's key.
   */
  recordIssued(instanceId: string, certificate: Pick<CertificateContents, 'serial' | 'sha256Fingerprint' | 'publicKeySha256'>, now: Date): Promise<boolean>;
  /** Moves an entry on, only if it is in one of `from`. */
  transition(instanceId: string, from: readonly RegistryEntry['state'][], to: 'converging' | 'in-service' | 'stalled' | 'purged', now: Date): Promise<boolean>;
  /**
   * Claims a purge: from any live state, or from a purge whose claim is older than `staleBefore`.
   * A first claim records the purge's start; a re-claim keeps it and the steps done. Answers the
   * claimed entry, or undefined when the claim was lost.
   */
  claimPurge(instanceId: string, now: Date, staleBefore: Date): Promise<RegistryEntry | undefined>;
  /** Records a purge step as done, only while the entry is still in the purge that started at `startedAt`. */
  recordPurgeStep(instanceId: string, startedAt: string, step: PurgeStep, now: Date): Promise<boolean>;
  /**
   * Starts an unhealthy streak (`since`) only on an in-service entry that has none, so the first
   * pass's time stays; undefined ends it on any entry that has one. False when nothing changed.
   */
  recordHealth(instanceId: string, since: string | undefined, now: Date): Promise<boolean>;
  /** Keeps the time of the instance's latest boot notice on its entry, unless a later one is kept; no entry, nothing kept. */
  recordBooted(instanceId: string, bootedAt: string): Promise<void>;
  /** Keeps an instance's key report unless a later one is kept already; safe to repeat. */
  recordKeyReport(instanceId: string, report: KeyReport): Promise<void>;
  keyReport(instanceId: string): Promise<KeyReport | undefined>;
  /**
   * Drops the report once its key is signed, only if it is still that key: a later enrollment
   * must be matched against its own report, never against a stale one.
   */
  consumeKeyReport(instanceId: string, publicKeySha256: string): Promise<void>;
  getRun(): Promise<RunRecord>;
  /** Replaces the run record if its version is still `expectedVersion`; the new record has version + 1. */
  putRun(next: Omit<RunRecord, 'version'>, expectedVersion: number): Promise<boolean>;
}

/**
 * One reconcile at a time across concurrent invocations: a lease with an expiry, so that a holder
 * that dies frees it by itself. Kept apart from RegistryPort (it guards passes, not instances).
 */
export interface LeasePort {
  /**
   * Takes the lease for `holder` until `until.lease` if it is free (or expired before `now`) and no
   * other holder has the next turn. Otherwise answers false, and takes the next turn until
   * `until.nextTurn` unless another has it: a waiter keeps its turn by asking again, so an
   * invocation that starts after it cannot take the lease first (no waiter starves).
   */
  acquire(holder: string, now: Date, until: { lease: Date; nextTurn: Date }): Promise<boolean>;
  /** Gives it up if `holder` still holds it; a lease taken over since is left alone. */
  release(holder: string): Promise<void>;
}

export interface QueuePort {
  sendRecheck(message: RecheckMessage, delaySeconds: number): Promise<void>;
}

/** The lifecycle client's TLS identity for the CA and PuppetDB: PEM, kept in memory only. */
export interface ClientBundle {
  cert: string;
  key: string;
  ca: string;
}

/** Secrets are cached and read again every few minutes; their values never reach a log line. */
export interface SecretsPort {
  clientBundle(): Promise<ClientBundle>;
  /** Only the orchestrator's runner asks for it; without an orchestrator there is no such secret. */
  rbacToken(): Promise<string>;
}

export interface PuppetPort {
  /** Certnames with a pending CSR (one call, whatever the CA's size), whether or not they also have a certificate. */
  requestedCertnames(): Promise<Set<string>>;
  /** The certificate's state when the CA holds one (even with a CSR pending too), else 'requested' or 'absent'. */
  certState(certname: string): Promise<CertState>;
  /** The pending CSR's facts; undefined when there is none any more. Throws RefusedInputError for garbage. */
  readCsr(certname: string): Promise<CsrFacts | undefined>;
  /** Deletes the pending CSR (never a certificate: only called while the certname is `requested`). */
  deleteRequest(certname: string): Promise<void>;
  /**
   * Whether the CA accepts a CSR for a certname that already has a CSR or certificate
   * (allow-duplicate-certs); the answer may be a few minutes old. Throws when the CA cannot tell.
   */
  duplicateCertsAllowed(): Promise<boolean>;
  /** Signs the pending CSR; a CSR someone already signed is success. */
  sign(certname: string): Promise<void>;
  /** What the issued certificate certifies; undefined when there is no certificate. */
  issuedCertificate(certname: string): Promise<CertificateContents | undefined>;
  /** What the CA holds for the certname now, for a purge to tell whether the certificate there is the one it may revoke. */
  holding(certname: string): Promise<CaHolding>;
  /** Revokes and deletes, one call for the batch; unknown certnames are fine. */
  clean(certnames: readonly string[]): Promise<void>;
  deactivate(certname: string, at: Date): Promise<void>;
}

export type PrimaryRunState = 'running' | 'finished' | 'failed';

/**
 * Converges the primary: PE's orchestrator, SSM Run Command, or nothing (primary-run/). The
 * planner treats every runner alike: one run for a batch of changes, followed by its id, retried
 * once, stalled after that.
 */
export interface PrimaryRunPort {
  /** Starts a Puppet run on the primary; answers an opaque run id (orchestrator job number, SSM command id). */
  start(description: string): Promise<string>;
  /** undefined when the runner no longer knows the id (it will never finish). */
  state(runId: string): Promise<PrimaryRunState | undefined>;
}

/**
 * What a run id may look like, whichever runner made it (a job number, a UUID, a fixed word): it
 * travels through SQS, the registry and log lines, so anything else is refused where it enters.
 */
export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;
export const RUN_ID_RULE = 'is not a primary run id (letters, digits and dashes, at most 64)';

export interface NodeHealthPort {
  /** Whether the node's Puppet Server answers "running", with its certificate verified as `certname`. */
  isHealthy(node: { certname: string; privateIp: string }): Promise<boolean>;
}

export interface Ports {
  group: GroupPort;
  instances: InstancesPort;
  registry: RegistryPort;
  queue: QueuePort;
  puppet: PuppetPort;
  primaryRun: PrimaryRunPort;
  health: NodeHealthPort;
}
