import { randomUUID } from 'node:crypto';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { instanceSenderId, type NodeAgentNotice } from '../lib/node-agent-notice';
import { LIVE_STATES, readRegistryItem } from '../lambdas/controller/aws/registry';
import { LIFECYCLE_ACTION, SCHEDULE, STATE_CHANGE, type RecheckMessage } from '../lambdas/controller/messages';
import { isGoneEc2State } from '../lambdas/controller/vocabulary';
import type { CertificateContents } from '../lib/puppet/csr';
import type { CheckedRequest, Ec2Instance, KeyReport, Member, PurgeStep, RegistryEntry, RegistryListing, RegistryState, RunRecord } from '../lambdas/controller/model';
import type {
  GroupPort,
  InstancesPort,
  LeasePort,
  LifecycleHook,
  NodeHealthPort,
  Ports,
  PrimaryRunPort,
  PuppetPort,
  QueuePort,
  RegistryPort,
} from '../lambdas/controller/ports';

/**
 * The AWS side of the controller, in memory: an Auto Scaling group with lifecycle hooks, EC2
 * descriptions, the registry table with DynamoDB's conditional-write semantics, the SQS queue
 * with delays, and node health. It behaves like AWS where the controller can
 * tell (a completed action cannot be completed again, an ABANDONed launch terminates, a
 * terminated instance stays describable), emits the EventBridge events AWS would, and can inject
 * failures. Used by the controller's tests and benchmarks and by the lab.
 */

export interface MemoryCloudOptions {
  groupName?: string;
  launchHookName?: string;
  terminateHookName?: string;
  region?: string;
  accountId?: string;
  /** The clock everything here stamps with; tests move it to age claims and delays. */
  clock?: () => Date;
  /** Where emitted EventBridge events go; by default straight onto the queue. */
  onEvent?: (event: EventBridgeEvent) => void;
  /** A real load balancer behind the target group (the lab's HAProxy); none: bookkeeping only. */
  balancer?: TargetBalancer;
  /** The queue's visibility timeout and redrive policy; none: a received message is gone (see MemoryQueue). */
  redrive?: QueueRedrive;
}

/**
 * What the target group drives in the machine lab. The group waits for `deregister` before the
 * terminate hook, as Auto Scaling waits for the deregistration delay.
 */
export interface TargetBalancer {
  register(instanceId: string, privateIp: string): void;
  /** Stops new connections at once; resolves once the delay is over and open connections were closed. */
  deregister(instanceId: string): Promise<void>;
}

export interface EventBridgeEvent {
  version: '0';
  id: string;
  'detail-type': string;
  source: string;
  account: string;
  time: string;
  region: string;
  resources: string[];
  detail: Record<string, unknown>;
}

export interface LifecycleRecord {
  instanceId: string;
  hook: LifecycleHook;
  result: 'CONTINUE' | 'ABANDON';
  at: Date;
}

/** An operation name as the ports see it, e.g. 'group.completeLifecycleAction' or 'registry.putRun'. */
export type Operation = `${'group' | 'instances' | 'registry' | 'lease' | 'queue' | 'health'}.${string}`;

/** SQS's SenderId for what EventBridge delivers (an AWS service's own id) and for the controller's rechecks. */
export const EVENTBRIDGE_SENDER = 'AIDAEXAMPLEEVENTBRIDGE';
export const CONTROLLER_SENDER = 'AROAEXAMPLECONTROLLER0:compile-masters-controller';

/** How long a spot interruption notice comes before EC2 interrupts the instance. */
export const SPOT_NOTICE_SECONDS = 120;

/** The memory cloud's account unless told otherwise; the lab's other AWS doubles share it. */
export const LAB_ACCOUNT_ID = '123456789012';

export class MemoryCloud {
  readonly groupName: string;
  /** The compile masters' instance role id: their messages carry `<it>:<instance id>` as SenderId. */
  readonly compileMasterRoleId = 'AROAEXAMPLECOMPILEMASTR';
  readonly launchHookName: string;
  readonly terminateHookName: string;
  readonly region: string;
  readonly accountId: string;
  readonly clock: () => Date;
  readonly group: MemoryGroup;
  readonly instances: MemoryInstances;
  readonly registry: MemoryRegistry;
  readonly lease: MemoryLease;
  readonly queue: MemoryQueue;
  readonly health: MemoryHealth;
  readonly targets: MemoryTargets;
  /** Every event emitted, in order (also those handed to `onEvent`). */
  readonly events: EventBridgeEvent[] = [];
  /** Every port call, in order: what a test asserts the controller did (or did not) ask. */
  readonly calls: Array<{ operation: Operation; args: unknown[] }> = [];
  private readonly faults: Array<{ operation: Operation; error: Error; remaining: number }> = [];
  private readonly onEvent: (event: EventBridgeEvent) => void;
  /** What AWS will do at a set time, run by runDue once the clock gets there. */
  private readonly timers: Array<{ at: Date; run: () => void }> = [];
  private sequence = 0;

  constructor(options: MemoryCloudOptions = {}) {
    this.groupName = options.groupName ?? 'compile-masters';
    this.launchHookName = options.launchHookName ?? 'compile-master-launching';
    this.terminateHookName = options.terminateHookName ?? 'compile-master-terminating';
    this.region = options.region ?? 'us-west-2';
    this.accountId = options.accountId ?? LAB_ACCOUNT_ID;
    this.clock = options.clock ?? (() => new Date());
    this.group = new MemoryGroup(this);
    this.instances = new MemoryInstances(this);
    this.registry = new MemoryRegistry(this);
    this.lease = new MemoryLease(this);
    this.queue = new MemoryQueue(this, options.redrive);
    this.health = new MemoryHealth(this);
    this.targets = new MemoryTargets((instanceId) => this.instances.get(instanceId)?.privateIp, options.balancer);
    this.onEvent = options.onEvent ?? ((event) => this.queue.enqueue(JSON.stringify(event)));
  }

  /**
   * The controller's ports over this cloud, with the given Puppet side and primary runner; the
   * nodes' health from their real Puppet Servers when given, else what the scenario says of them.
   */
  ports(puppet: PuppetPort, primaryRun: PrimaryRunPort, health: NodeHealthPort = this.health): Ports {
    return { group: this.group, instances: this.instances, registry: this.registry, queue: this.queue, puppet, primaryRun, health };
  }

  // ---- simulation ----------------------------------------------------------------------------

  /**
   * A new instance joins the group and waits in Pending:Wait for the launch hook. Its private DNS
   * name (the certname) defaults to the EC2 shape for its private IP.
   */
  launch(options: { instanceId?: string; privateIp?: string; privateDnsName?: string } = {}): Ec2Instance {
    this.sequence += 1;
    const instanceId = options.instanceId ?? `i-${(0x0a000000 + this.sequence).toString(16).padStart(17, '0')}`;
    const privateIp = options.privateIp ?? `10.0.${Math.floor(this.sequence / 250)}.${(this.sequence % 250) + 4}`;
    const instance: Ec2Instance = {
      instanceId,
      state: 'running',
      privateIp,
      privateDnsName: options.privateDnsName ?? `ip-${privateIp.replaceAll('.', '-')}.${this.region}.compute.internal`,
      launchTime: this.clock(),
    };
    this.instances.put(instance);
    this.group.setState(instanceId, 'Pending:Wait');
    this.emitLifecycle(instanceId, 'launch');
    return instance;
  }

  /** A member already in service (e.g. enrolled before the test). */
  addInService(instance: Omit<Ec2Instance, 'launchTime' | 'state'> & { launchTime?: Date }): void {
    this.instances.put({ state: 'running', launchTime: this.clock(), ...instance });
    this.group.setState(instance.instanceId, 'InService');
    this.targets.register(instance.instanceId);
  }

  /**
   * The group scales in: each instance is drained from the load balancer ('Terminating'), then
   * waits in Terminating:Wait for the terminate hook. Resolves once all of them wait.
   */
  async scaleIn(instanceIds: readonly string[]): Promise<void> {
    await Promise.all(instanceIds.map((instanceId) => this.beginTermination(instanceId)));
  }

  /** Someone runs `aws ec2 terminate-instances`: the group loses the instance without any hook. */
  terminateOutside(instanceId: string): void {
    this.ec2Terminates(instanceId);
  }

  /**
   * EC2 interrupts a spot instance, with its notice `afterSeconds` (two minutes) ahead. With
   * capacity rebalancing on, the group launches a replacement and terminates the instance through
   * the terminate hook (Terminating:Wait), as for a scale-in; but the instance does not wait for
   * the hook: unless the action was completed by the end of the notice, EC2 terminates it then
   * (shutting-down, terminated, gone from the group, the state-change events the stack's rule
   * forwards). The clock decides when that is; see runDue. Resolves once the hook waits.
   */
  async interruptSpot(instanceId: string, options: { afterSeconds?: number } = {}): Promise<{ replacement: Ec2Instance }> {
    const deadline = new Date(this.clock().getTime() + (options.afterSeconds ?? SPOT_NOTICE_SECONDS) * 1000);
    this.timers.push({
      at: deadline,
      run: () => {
        const state = this.instances.get(instanceId)?.state;
        if (state !== undefined && !isGoneEc2State(state)) this.ec2Terminates(instanceId);
      },
    });
    const replacement = this.launch();
    await this.beginTermination(instanceId);
    return { replacement };
  }

  /** Runs what AWS does on its own at a set time (an interruption's end) once the clock has reached it. */
  runDue(): void {
    const now = this.clock().getTime();
    for (const timer of [...this.timers].sort((a, b) => a.at.getTime() - b.at.getTime())) {
      if (timer.at.getTime() > now) continue;
      this.timers.splice(this.timers.indexOf(timer), 1);
      timer.run();
    }
  }

  /** When runDue has something to do next, if ever. */
  nextDueAt(): Date | undefined {
    return this.timers.reduce<Date | undefined>((soonest, timer) => (!soonest || timer.at < soonest ? timer.at : soonest), undefined);
  }

  /** A node agent's notice, sent with that instance's credentials (or, to forge, another's). */
  notifyFrom(notice: NodeAgentNotice, sender: string = notice.instanceId): void {
    this.queue.enqueue(JSON.stringify(notice), 0, instanceSenderId(this.compileMasterRoleId, sender));
  }

  /** Makes the next `times` calls of `operation` fail with `error` (e.g. throttling). */
  failNext(operation: Operation, error: Error, times = 1): void {
    this.faults.push({ operation, error, remaining: times });
  }

  /** Port calls of one operation, e.g. completions: `callsOf('group.completeLifecycleAction')`. */
  callsOf(operation: Operation): unknown[][] {
    return this.calls.filter((call) => call.operation === operation).map((call) => call.args);
  }

  /** @internal Lets what is due happen first (the controller sees the world as of now), records the call and throws an injected fault, if any. */
  enter(operation: Operation, args: unknown[]): void {
    this.runDue();
    this.calls.push({ operation, args });
    const fault = this.faults.find((candidate) => candidate.operation === operation && candidate.remaining > 0);
    if (fault) {
      fault.remaining -= 1;
      throw fault.error;
    }
  }

  /** @internal */
  async beginTermination(instanceId: string): Promise<void> {
    // The group drains the instance from the load balancer before the terminate hook fires.
    const drained = this.targets.deregister(instanceId);
    if (drained) {
      this.group.setState(instanceId, 'Terminating');
      await drained;
    }
    this.group.setState(instanceId, 'Terminating:Wait');
    this.emitLifecycle(instanceId, 'terminate');
  }

  /** @internal The instance leaves the group and EC2 terminates it. */
  finishTermination(instanceId: string): void {
    this.group.remove(instanceId);
    this.targets.remove(instanceId);
    this.instances.setState(instanceId, 'terminated');
  }

  /** EC2 terminates the instance outside the group's lifecycle: it leaves the group at once, without a hook. */
  private ec2Terminates(instanceId: string): void {
    this.group.remove(instanceId);
    this.targets.remove(instanceId);
    for (const state of ['shutting-down', 'terminated'] as const) {
      this.instances.setState(instanceId, state);
      this.emit(STATE_CHANGE.source, STATE_CHANGE.detailType, { 'instance-id': instanceId, state }, [
        `arn:aws:ec2:${this.region}:${this.accountId}:instance/${instanceId}`,
      ]);
    }
  }

  private emitLifecycle(instanceId: string, hook: LifecycleHook): void {
    const launch = hook === 'launch';
    this.emit(
      LIFECYCLE_ACTION.source,
      LIFECYCLE_ACTION[hook].detailType,
      {
        LifecycleActionToken: randomUUID(),
        AutoScalingGroupName: this.groupName,
        LifecycleHookName: launch ? this.launchHookName : this.terminateHookName,
        EC2InstanceId: instanceId,
        LifecycleTransition: LIFECYCLE_ACTION[hook].transition,
        NotificationMetadata: '',
        Origin: launch ? 'EC2' : 'AutoScalingGroup',
        Destination: launch ? 'AutoScalingGroup' : 'EC2',
      },
      [`arn:aws:autoscaling:${this.region}:${this.accountId}:autoScalingGroup:0:autoScalingGroupName/${this.groupName}`],
    );
  }

  private emit(source: string, detailType: string, detail: Record<string, unknown>, resources: string[]): void {
    const event: EventBridgeEvent = {
      version: '0',
      id: randomUUID(),
      'detail-type': detailType,
      source,
      account: this.accountId,
      time: this.clock().toISOString(),
      region: this.region,
      resources,
      detail,
    };
    this.events.push(event);
    this.onEvent(event);
  }
}

export class MemoryGroup implements GroupPort {
  private readonly states = new Map<string, string>();
  /** Members marked unhealthy (SetInstanceHealth): AWS reports their HealthStatus so until they leave. */
  private readonly unhealthy = new Set<string>();
  readonly completions: LifecycleRecord[] = [];
  readonly heartbeats: Array<{ instanceId: string; at: Date }> = [];

  constructor(private readonly cloud: MemoryCloud) {}

  async members(): Promise<Member[]> {
    this.cloud.enter('group.members', []);
    return [...this.states].map(([instanceId, lifecycleState]) => ({ instanceId, lifecycleState, healthStatus: this.unhealthy.has(instanceId) ? 'Unhealthy' : 'Healthy' }));
  }

  async completeLifecycleAction(instanceId: string, hook: LifecycleHook, result: 'CONTINUE' | 'ABANDON'): Promise<'completed' | 'already-completed'> {
    this.cloud.enter('group.completeLifecycleAction', [instanceId, hook, result]);
    const state = this.states.get(instanceId);
    if (state !== waitState(hook)) return 'already-completed';
    this.completions.push({ instanceId, hook, result, at: this.cloud.clock() });
    if (hook === 'terminate') this.cloud.finishTermination(instanceId);
    else if (result === 'CONTINUE') {
      this.states.set(instanceId, 'InService');
      this.cloud.targets.register(instanceId);
    } else void this.cloud.beginTermination(instanceId);
    return 'completed';
  }

  async recordHeartbeat(instanceId: string, hook: LifecycleHook): Promise<'recorded' | 'no-active-action'> {
    this.cloud.enter('group.recordHeartbeat', [instanceId, hook]);
    if (this.states.get(instanceId) !== waitState(hook)) return 'no-active-action';
    this.heartbeats.push({ instanceId, at: this.cloud.clock() });
    return 'recorded';
  }

  /**
   * As Auto Scaling does with an unhealthy InService member: drained, then held at the terminate
   * hook (a replacement launch is left to the scenario). A member already leaving is left alone.
   */
  async setUnhealthy(instanceId: string): Promise<void> {
    this.cloud.enter('group.setUnhealthy', [instanceId]);
    if (this.states.get(instanceId) !== 'InService') return;
    this.unhealthy.add(instanceId);
    if (this.replacesUnhealthyAtOnce) void this.cloud.beginTermination(instanceId);
  }

  /**
   * Auto Scaling replaces an unhealthy member on its own schedule (seconds to a minute); false
   * keeps it InService and Unhealthy until `replaceUnhealthy()`, as a pass may see it in between.
   */
  replacesUnhealthyAtOnce = true;

  /** Auto Scaling gets to the members marked unhealthy. */
  replaceUnhealthy(): void {
    for (const instanceId of this.unhealthy) if (this.states.get(instanceId) === 'InService') void this.cloud.beginTermination(instanceId);
  }

  /** The lifecycle state of a member; undefined once it left the group. */
  stateOf(instanceId: string): string | undefined {
    return this.states.get(instanceId);
  }

  /** Lifecycle actions still waiting for a result. */
  pendingActions(): string[] {
    return [...this.states].filter(([, state]) => state.endsWith(':Wait')).map(([instanceId]) => instanceId);
  }

  setState(instanceId: string, lifecycleState: string): void {
    this.states.set(instanceId, lifecycleState);
  }

  remove(instanceId: string): void {
    this.states.delete(instanceId);
    this.unhealthy.delete(instanceId);
  }
}

function waitState(hook: LifecycleHook): string {
  return hook === 'launch' ? 'Pending:Wait' : 'Terminating:Wait';
}

export class MemoryInstances implements InstancesPort {
  private readonly known = new Map<string, Ec2Instance>();

  constructor(private readonly cloud: MemoryCloud) {}

  async describe(instanceIds: readonly string[]): Promise<Map<string, Ec2Instance>> {
    this.cloud.enter('instances.describe', [instanceIds]);
    const found = new Map<string, Ec2Instance>();
    for (const id of instanceIds) {
      const instance = this.known.get(id);
      if (instance) found.set(id, { ...instance });
    }
    return found;
  }

  get(instanceId: string): Ec2Instance | undefined {
    return this.known.get(instanceId);
  }

  put(instance: Ec2Instance): void {
    this.known.set(instance.instanceId, { ...instance });
  }

  setState(instanceId: string, state: string): void {
    const instance = this.known.get(instanceId);
    if (instance) instance.state = state;
  }
}

/**
 * The registry table, with the same conditions as the DynamoDB adapter's expressions and the same
 * reading of items (readRegistryItem), so it quarantines exactly what the adapter quarantines.
 */
export class MemoryRegistry implements RegistryPort {
  /** Items as DynamoDB would hold them; seedItem may put anything here. */
  private readonly entries = new Map<string, RegistryEntry>();
  private readonly keyReports = new Map<string, KeyReport>();
  private run: RunRecord | undefined;

  constructor(private readonly cloud: MemoryCloud) {}

  async get(instanceId: string): Promise<RegistryEntry | undefined> {
    this.cloud.enter('registry.get', [instanceId]);
    const item = this.entries.get(instanceId);
    if (!item) return undefined;
    const read = readRegistryItem(structuredClone(item) as unknown as Record<string, unknown>);
    return 'entry' in read ? read.entry : undefined;
  }

  async list(): Promise<RegistryListing> {
    this.cloud.enter('registry.list', []);
    const listing: RegistryListing = { entries: [], damaged: [] };
    for (const item of this.entries.values()) {
      const read = readRegistryItem(structuredClone(item) as unknown as Record<string, unknown>);
      if ('entry' in read) listing.entries.push(read.entry);
      else listing.damaged.push(read.damaged);
    }
    return listing;
  }

  async recordSigned(instanceId: string, certname: string, checked: CheckedRequest, now: Date): Promise<boolean> {
    this.cloud.enter('registry.recordSigned', [instanceId, certname]);
    const entry = this.entries.get(instanceId);
    if (entry && (entry.certname !== certname || entry.state === 'purging' || entry.state === 'stalled')) return false;
    const at = now.toISOString();
    const { publicKeySha256, dnsAltNames, puppetExtensions } = structuredClone(checked);
    // A new item: claimedAt, issued, purge and an unhealthy streak are gone, as the adapter's REMOVE does.
    this.entries.set(instanceId, {
      instanceId,
      certname,
      state: 'signed',
      createdAt: entry?.createdAt ?? at,
      updatedAt: at,
      checked: { publicKeySha256, dnsAltNames, puppetExtensions },
      ...(entry?.bootedAt === undefined ? {} : { bootedAt: entry.bootedAt }),
    });
    return true;
  }

  async recordIssued(instanceId: string, certificate: Pick<CertificateContents, 'serial' | 'sha256Fingerprint' | 'publicKeySha256'>, now: Date): Promise<boolean> {
    this.cloud.enter('registry.recordIssued', [instanceId, certificate]);
    const entry = this.entries.get(instanceId);
    if (!entry || !LIVE_STATES.includes(entry.state) || entry.checked?.publicKeySha256 !== certificate.publicKeySha256) return false;
    const at = now.toISOString();
    entry.issued = { serial: certificate.serial.toString(), sha256Fingerprint: certificate.sha256Fingerprint, verifiedAt: at };
    entry.updatedAt = at;
    return true;
  }

  async transition(instanceId: string, from: readonly RegistryState[], to: RegistryState, now: Date): Promise<boolean> {
    this.cloud.enter('registry.transition', [instanceId, from, to]);
    const entry = this.entries.get(instanceId);
    if (!entry || !from.includes(entry.state)) return false;
    entry.state = to;
    entry.updatedAt = now.toISOString();
    if (to === 'purged') delete entry.claimedAt;
    return true;
  }

  async claimPurge(instanceId: string, now: Date, staleBefore: Date): Promise<RegistryEntry | undefined> {
    this.cloud.enter('registry.claimPurge', [instanceId]);
    const entry = this.entries.get(instanceId);
    if (!entry) return undefined;
    const stale = entry.state === 'purging' && (!entry.claimedAt || entry.claimedAt < staleBefore.toISOString());
    if (!LIVE_STATES.includes(entry.state) && !stale) return undefined;
    entry.state = 'purging';
    entry.claimedAt = now.toISOString();
    entry.updatedAt = entry.claimedAt;
    entry.purge ??= { startedAt: entry.claimedAt };
    const read = readRegistryItem(structuredClone(entry) as unknown as Record<string, unknown>);
    return 'entry' in read ? read.entry : undefined;
  }

  async recordPurgeStep(instanceId: string, startedAt: string, step: PurgeStep, now: Date): Promise<boolean> {
    this.cloud.enter('registry.recordPurgeStep', [instanceId, startedAt, step]);
    const entry = this.entries.get(instanceId);
    if (!entry || entry.state !== 'purging' || entry.purge?.startedAt !== startedAt) return false;
    entry.purge[step] = now.toISOString();
    entry.updatedAt = entry.purge[step];
    return true;
  }

  async recordHealth(instanceId: string, since: string | undefined, now: Date): Promise<boolean> {
    this.cloud.enter('registry.recordHealth', [instanceId, since]);
    const entry = this.entries.get(instanceId);
    if (!entry) return false;
    if (since === undefined) {
      if (entry.unhealthySince === undefined) return false;
      delete entry.unhealthySince;
    } else {
      if (entry.state !== 'in-service' || entry.unhealthySince !== undefined) return false;
      entry.unhealthySince = since;
    }
    entry.updatedAt = now.toISOString();
    return true;
  }

  async recordBooted(instanceId: string, bootedAt: string): Promise<void> {
    this.cloud.enter('registry.recordBooted', [instanceId, bootedAt]);
    const entry = this.entries.get(instanceId);
    if (entry && (entry.bootedAt === undefined || entry.bootedAt < bootedAt)) entry.bootedAt = bootedAt;
  }

  async recordKeyReport(instanceId: string, report: KeyReport): Promise<void> {
    this.cloud.enter('registry.recordKeyReport', [instanceId, report]);
    const kept = this.keyReports.get(instanceId);
    if (!kept || kept.reportedAt <= report.reportedAt) this.keyReports.set(instanceId, { ...report });
  }

  async keyReport(instanceId: string): Promise<KeyReport | undefined> {
    this.cloud.enter('registry.keyReport', [instanceId]);
    const kept = this.keyReports.get(instanceId);
    return kept && { ...kept };
  }

  async consumeKeyReport(instanceId: string, publicKeySha256: string): Promise<void> {
    this.cloud.enter('registry.consumeKeyReport', [instanceId, publicKeySha256]);
    if (this.keyReports.get(instanceId)?.publicKeySha256 === publicKeySha256) this.keyReports.delete(instanceId);
  }

  async getRun(): Promise<RunRecord> {
    this.cloud.enter('registry.getRun', []);
    return this.peekRun();
  }

  async putRun(next: Omit<RunRecord, 'version'>, expectedVersion: number): Promise<boolean> {
    this.cloud.enter('registry.putRun', [next, expectedVersion]);
    if ((this.run?.version ?? 0) !== expectedVersion) return false;
    this.run = { ...(JSON.parse(JSON.stringify(next)) as Omit<RunRecord, 'version'>), version: expectedVersion + 1 };
    return true;
  }

  /** Reads without recording a call: for assertions. */
  peek(instanceId: string): RegistryEntry | undefined {
    const entry = this.entries.get(instanceId);
    return entry && structuredClone(entry);
  }

  peekRun(): RunRecord {
    return this.run ? structuredClone(this.run) : { version: 0, pending: [] };
  }

  /** Seeds an entry as if an earlier pass had written it. */
  seed(entry: RegistryEntry): void {
    this.entries.set(entry.instanceId, structuredClone(entry));
  }

  /** Seeds an item as the table might hold it after a bad hand edit or a bug: anything at all. */
  seedItem(item: Record<string, unknown>): void {
    this.entries.set(String(item.instanceId), structuredClone(item) as unknown as RegistryEntry);
  }
}

/** The reconcile lease, with the DynamoDB adapter's conditions (aws/lease.ts). */
export class MemoryLease implements LeasePort {
  private held: { holder: string; expiresAt: string } | undefined;
  private next: { holder: string; until: string } | undefined;

  constructor(private readonly cloud: MemoryCloud) {}

  async acquire(holder: string, now: Date, until: { lease: Date; nextTurn: Date }): Promise<boolean> {
    this.cloud.enter('lease.acquire', [holder]);
    const at = now.toISOString();
    const free = !this.held || this.held.expiresAt < at;
    const othersTurn = this.next !== undefined && this.next.holder !== holder && this.next.until >= at;
    if (free && !othersTurn) {
      this.held = { holder, expiresAt: until.lease.toISOString() };
      this.next = undefined;
      return true;
    }
    if (!othersTurn) this.next = { holder, until: until.nextTurn.toISOString() };
    return false;
  }

  async release(holder: string): Promise<void> {
    this.cloud.enter('lease.release', [holder]);
    if (this.held?.holder === holder) this.held = undefined;
  }

  /** Who holds it (expired or not), for assertions. */
  peek(): { holder: string; expiresAt: string } | undefined {
    return this.held && { ...this.held };
  }
}

/** A queue's visibility timeout and redrive policy, as the stack configures them. */
export interface QueueRedrive {
  visibilityTimeoutSeconds: number;
  /** A message received this many times that comes back once more goes to the dead-letter queue. */
  maxReceiveCount: number;
}

export interface QueuedMessage {
  messageId: string;
  body: string;
  availableAt: Date;
  receiveCount: number;
  /** What SQS records as SenderId: who sent it, whatever the body says. */
  senderId: string;
  sentAt: Date;
}

/**
 * The lifecycle queue: events and rechecks, each visible from its delay on. With a redrive policy
 * it keeps SQS's receive semantics: a received message stays in flight until it is deleted or its
 * visibility timeout ends, then comes back (its receive count grows) or, past maxReceiveCount,
 * goes to the dead-letter queue. Without one, a received message is gone unless returned.
 */
export class MemoryQueue implements QueuePort {
  readonly messages: QueuedMessage[] = [];
  /** Received and not deleted, each with `availableAt` = the end of its visibility timeout (redrive only). */
  readonly inFlight = new Map<string, QueuedMessage>();
  readonly deadLetters: QueuedMessage[] = [];
  /** Every receive of every message, in order: what a test asserts about redelivery. */
  readonly receipts: Array<{ messageId: string; receiveCount: number; at: Date }> = [];

  constructor(
    private readonly cloud: MemoryCloud,
    readonly redrive?: QueueRedrive,
  ) {}

  async sendRecheck(message: RecheckMessage, delaySeconds: number): Promise<void> {
    this.cloud.enter('queue.sendRecheck', [message, delaySeconds]);
    this.enqueue(JSON.stringify(message), delaySeconds, CONTROLLER_SENDER);
  }

  /** A message as EventBridge delivers it, unless another sender is named. */
  enqueue(body: string, delaySeconds = 0, senderId = EVENTBRIDGE_SENDER): void {
    const sentAt = this.cloud.clock();
    this.messages.push({ messageId: randomUUID(), body, availableAt: new Date(sentAt.getTime() + delaySeconds * 1000), receiveCount: 0, senderId, sentAt });
  }

  /** Takes up to `max` messages visible at `at` (default: now) off the queue, as one SQS batch. */
  receive(max = 10, at: Date = this.cloud.clock()): SQSEvent {
    this.expireInFlight(at);
    const due = this.messages.filter((message) => message.availableAt <= at).slice(0, max);
    for (const message of due) this.messages.splice(this.messages.indexOf(message), 1);
    const received = due.map((message) => ({ ...message, receiveCount: message.receiveCount + 1 }));
    for (const message of received) {
      this.receipts.push({ messageId: message.messageId, receiveCount: message.receiveCount, at });
      if (this.redrive) this.inFlight.set(message.messageId, { ...message, availableAt: new Date(at.getTime() + this.redrive.visibilityTimeoutSeconds * 1000) });
    }
    return toSqsEvent(received, this.cloud.region);
  }

  /**
   * What Lambda's event source does after an invocation (redrive only): deletes the records that
   * did not fail; failed ones stay invisible until their visibility timeout ends.
   */
  complete(event: SQSEvent, failures: ReadonlyArray<{ itemIdentifier: string }>): void {
    const failed = new Set(failures.map((failure) => failure.itemIdentifier));
    for (const record of event.Records) if (!failed.has(record.messageId)) this.inFlight.delete(record.messageId);
  }

  /** Puts failed records back, as SQS does after the visibility timeout. */
  returnFailed(event: SQSEvent, failures: ReadonlyArray<{ itemIdentifier: string }>, visibleAfterSeconds = 0): void {
    const failed = new Set(failures.map((failure) => failure.itemIdentifier));
    for (const record of event.Records) {
      if (!failed.has(record.messageId)) continue;
      this.messages.push({
        messageId: record.messageId,
        body: record.body,
        availableAt: new Date(this.cloud.clock().getTime() + visibleAfterSeconds * 1000),
        receiveCount: Number(record.attributes.ApproximateReceiveCount),
        senderId: record.attributes.SenderId,
        sentAt: new Date(Number(record.attributes.SentTimestamp)),
      });
    }
  }

  /** When the next message becomes visible, if any (in-flight ones included). */
  nextAvailableAt(): Date | undefined {
    return [...this.messages, ...this.inFlight.values()].reduce<Date | undefined>(
      (soonest, message) => (!soonest || message.availableAt < soonest ? message.availableAt : soonest),
      undefined,
    );
  }

  private expireInFlight(at: Date): void {
    for (const message of [...this.inFlight.values()]) {
      if (message.availableAt > at) continue;
      this.inFlight.delete(message.messageId);
      if (this.redrive && message.receiveCount >= this.redrive.maxReceiveCount) this.deadLetters.push(message);
      else this.messages.push(message);
    }
  }
}

/** The reconcile schedule's event body, as the EventBridge rule puts it on the queue. */
export function scheduledEvent(at: Date, region = 'us-west-2'): string {
  return JSON.stringify({ version: '0', id: randomUUID(), 'detail-type': SCHEDULE.detailType, source: SCHEDULE.source, account: '123456789012', time: at.toISOString(), region, resources: [], detail: {} });
}

/** Records shaped as the Lambda SQS event source delivers them. */
export function toSqsEvent(
  messages: ReadonlyArray<{ messageId?: string; body: string; receiveCount?: number; senderId?: string; sentAt?: Date }>,
  region = 'us-west-2',
): SQSEvent {
  return {
    Records: messages.map(
      (message): SQSRecord => ({
        messageId: message.messageId ?? randomUUID(),
        receiptHandle: randomUUID(),
        body: message.body,
        attributes: {
          ApproximateReceiveCount: String(message.receiveCount ?? 1),
          SentTimestamp: String((message.sentAt ?? new Date()).getTime()),
          SenderId: message.senderId ?? EVENTBRIDGE_SENDER,
          ApproximateFirstReceiveTimestamp: String(Date.now()),
        },
        messageAttributes: {},
        md5OfBody: '',
        eventSource: 'aws:sqs',
        eventSourceARN: `arn:aws:sqs:${region}:123456789012:compile-masters-lifecycle`,
        awsRegion: region,
      }),
    ),
  };
}

/**
 * The load balancer's target group as the Auto Scaling group drives it: an instance is registered
 * once its launch completes and draining from the moment its termination begins. The controller
 * never reads it (it has no target-health port); the lab checks it against the members.
 */
export class MemoryTargets {
  private readonly states = new Map<string, 'registered' | 'draining'>();

  constructor(
    private readonly addressOf: (instanceId: string) => string | undefined,
    private readonly balancer?: TargetBalancer,
  ) {}

  register(instanceId: string): void {
    this.states.set(instanceId, 'registered');
    const address = this.addressOf(instanceId);
    if (this.balancer && address) this.balancer.register(instanceId, address);
  }

  /** Undefined when there is nothing to wait for (not registered, or no real balancer). */
  deregister(instanceId: string): Promise<void> | undefined {
    if (this.states.get(instanceId) !== 'registered') return undefined;
    this.states.set(instanceId, 'draining');
    return this.balancer?.deregister(instanceId);
  }

  /** Gone without draining (terminated outside the group): a real balancer sees its connections fail. */
  remove(instanceId: string): void {
    if (this.states.get(instanceId) === 'registered') void this.balancer?.deregister(instanceId);
    this.states.delete(instanceId);
  }

  /** Instance ids that receive traffic. */
  registered(): string[] {
    return [...this.states].filter(([, state]) => state === 'registered').map(([instanceId]) => instanceId);
  }
}

/** Which nodes' Puppet Servers answer; simulated nodes start unhealthy. */
export class MemoryHealth implements NodeHealthPort {
  private readonly healthy = new Set<string>();

  constructor(private readonly cloud: MemoryCloud) {}

  async isHealthy(node: { certname: string; privateIp: string }): Promise<boolean> {
    this.cloud.enter('health.isHealthy', [node]);
    return this.healthy.has(node.certname);
  }

  set(certname: string, healthy: boolean): void {
    if (healthy) this.healthy.add(certname);
    else this.healthy.delete(certname);
  }
}

/**
 * The cloud's clock. Frozen at `start` when given (deterministic tests), else real time; either
 * way `advance` jumps ahead, so delayed messages and aging claims need no real waiting.
 */
export class ManualClock {
  private offsetMs = 0;

  constructor(private readonly start?: Date) {}

  readonly now = (): Date => new Date((this.start?.getTime() ?? Date.now()) + this.offsetMs);

  advance(seconds: number): void {
    this.offsetMs += seconds * 1000;
  }

  /** Moves forward to `at` (never back). */
  advanceTo(at: Date): void {
    this.offsetMs += Math.max(0, at.getTime() - this.now().getTime());
  }
}

/**
 * Runs the controller on the queue as Lambda's SQS event source does: batches of visible
 * messages, failed records back after a visibility timeout, delayed messages waited for by moving
 * the clock.
 */
export class QueueDriver {
  constructor(
    private readonly cloud: MemoryCloud,
    private readonly clock: ManualClock,
    private readonly handle: (event: SQSEvent) => Promise<SQSBatchResponse>,
    /** visibilityTimeoutSeconds: when a failed record comes back, for a queue without a redrive policy (it has its own). */
    private readonly options: { batchSize?: number; visibilityTimeoutSeconds?: number } = {},
  ) {}

  /** One invocation with what is visible now; undefined when nothing is. */
  async deliver(batchSize = this.options.batchSize ?? 10): Promise<SQSBatchResponse | undefined> {
    this.cloud.runDue();
    const event = this.cloud.queue.receive(batchSize);
    if (event.Records.length === 0) return undefined;
    const response = await this.handle(event);
    this.finish(event, response);
    return response;
  }

  /**
   * Runs the queue as Lambda's SQS event source with a maximum concurrency does: `pollers`
   * pollers, each receiving a batch only when it can invoke the function with it, until the queue
   * is dry or the next message is more than `maxSeconds` of clock time away. A `functionConcurrency`
   * below `pollers` is a reserved concurrency: a batch received beyond it is throttled, and its
   * messages stay invisible until their visibility timeout ends. Needs the queue's redrive policy.
   */
  async drain(options: { pollers: number; functionConcurrency?: number; maxSeconds?: number }): Promise<DrainReport> {
    const { queue } = this.cloud;
    if (!queue.redrive) throw new Error('drain needs the queue to have a redrive policy');
    const limit = options.functionConcurrency ?? options.pollers;
    const until = this.clock.now().getTime() + (options.maxSeconds ?? 600) * 1000;
    const report: DrainReport = { invocations: 0, throttled: 0, peakConcurrency: 0 };
    let running = 0;
    let turns = 0;
    const poller = async (): Promise<void> => {
      for (;;) {
        if (++turns > 1_000_000) throw new Error('the queue never settled');
        this.cloud.runDue();
        const event = queue.receive(this.options.batchSize ?? 10);
        if (event.Records.length > 0) {
          if (running >= limit) {
            report.throttled += 1;
            await nextTurn();
            continue;
          }
          running += 1;
          report.invocations += 1;
          report.peakConcurrency = Math.max(report.peakConcurrency, running);
          try {
            this.finish(event, await this.handle(event));
          } finally {
            running -= 1;
          }
          continue;
        }
        // An invocation under way may still send messages (rechecks): the clock waits for it.
        if (running > 0) {
          await nextTurn();
          continue;
        }
        const next = this.nextAt();
        if (!next || next.getTime() > until) return;
        this.clock.advanceTo(next);
      }
    };
    await Promise.all(Array.from({ length: options.pollers }, poller));
    return report;
  }

  /** The next moment something happens: a message becomes visible or AWS acts on its own. */
  private nextAt(): Date | undefined {
    const times = [this.cloud.queue.nextAvailableAt(), this.cloud.nextDueAt()].filter((at): at is Date => at !== undefined);
    return times.length === 0 ? undefined : new Date(Math.min(...times.map((at) => at.getTime())));
  }

  private finish(event: SQSEvent, response: SQSBatchResponse): void {
    const { queue } = this.cloud;
    if (queue.redrive) queue.complete(event, response.batchItemFailures);
    else queue.returnFailed(event, response.batchItemFailures, this.options.visibilityTimeoutSeconds ?? 30);
  }

  /** Delivers until the queue is dry or the next message is more than `maxSeconds` of clock time away. */
  async settle(maxSeconds = 600): Promise<void> {
    const until = this.clock.now().getTime() + maxSeconds * 1000;
    for (let guard = 0; guard < 10_000; guard++) {
      if (await this.deliver()) continue;
      const next = this.nextAt();
      if (!next || next.getTime() > until) return;
      this.clock.advanceTo(next);
    }
    throw new Error('the queue never settled: the controller keeps sending itself messages');
  }
}

export interface DrainReport {
  invocations: number;
  /** Batches received while the function was at its concurrency limit. */
  throttled: number;
  /** The most invocations that ran at once. */
  peakConcurrency: number;
}

/** Lets the other pollers' invocations run (a macrotask: their microtasks all go first). */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
