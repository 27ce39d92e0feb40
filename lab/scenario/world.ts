import { setTimeout as sleep } from 'node:timers/promises';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { handleBatch } from '../../lambdas/controller/batch';
import type { PlannerPolicy } from '../../lambdas/controller/planner';
import type { Ports } from '../../lambdas/controller/ports';
import { reconcile, type ControllerContext } from '../../lambdas/controller/reconcile';
import { labOrchestratorRun, labPuppetApis } from '../clients';
import type { LabDescription } from '../running-lab';
import { ManualClock, MemoryCloud, QueueDriver, scheduledEvent, type EventBridgeEvent, type TargetBalancer } from '../memory-cloud';
import type { NodeHealthPort, PrimaryRunPort } from '../../lambdas/controller/ports';
import type { Log } from '../../lambdas/controller/execute';
import { RecordingLogger, RecordingMetrics } from '../recorders';
import { LAUNCH_CEILING_MINUTES } from '../../lib/launch-budget';

export const REGION = 'us-west-2';
export const NLB_DNS_NAME = 'compile-masters-lab.elb.us-west-2.amazonaws.com';
/** The reconcile schedule of the stack's default (reconcileIntervalMinutes 5), in clock time. */
const SCHEDULE_SECONDS = 300;
/** Clock time one pump round may skip ahead to reach a delayed message. */
const PUMP_STEP_SECONDS = 20;
/**
 * How far the controller's clock may run ahead of real time while nothing but the controller and
 * the primary's runs is going on. Skipping delays saves minutes, but the controller stamps PuppetDB
 * deactivations with its clock, and a node re-enrolling after one must report facts newer than
 * that stamp to count as active again.
 */
const MAX_AHEAD_SECONDS = 10;
const RETRY_VISIBLE_AFTER_SECONDS = 10;

/** EventBridge between the cloud and the queue: delivers, or drops or repeats events a step asked for. */
export class EventDelivery {
  readonly dropped: EventBridgeEvent[] = [];
  readonly repeated: EventBridgeEvent[] = [];
  private readonly rules: Array<{ match: (event: EventBridgeEvent) => boolean; copies: number }> = [];

  constructor(private readonly enqueue: (body: string) => void) {}

  /** The next event matching `match` arrives `copies` times (0: lost). */
  next(match: (event: EventBridgeEvent) => boolean, copies: number): void {
    this.rules.push({ match, copies });
  }

  deliver(event: EventBridgeEvent): void {
    const index = this.rules.findIndex((rule) => rule.match(event));
    const copies = index < 0 ? 1 : (this.rules.splice(index, 1)[0]?.copies ?? 1);
    if (copies === 0) this.dropped.push(event);
    if (copies > 1) this.repeated.push(event);
    for (let copy = 0; copy < copies; copy++) this.enqueue(JSON.stringify(event));
  }
}

/** Thrown by a port when the lab kills the controller mid-batch. */
export class ControllerCrash extends Error {}

/**
 * Port calls as the lab sees them: every call of every port passes here first, so the lab can
 * count what the controller asked of Puppet, judge each purge, and crash the controller at a
 * chosen call — after which nothing more of that invocation reaches any port, as when a Lambda
 * runtime dies.
 */
export class PortTap {
  /** Operation → calls made, e.g. 'primaryRun.start'. */
  readonly counts = new Map<string, number>();
  private crashAt: string | undefined;
  private dead = false;
  private readonly watchers: Array<(operation: string, args: unknown[]) => void> = [];

  /** The next call of `operation` kills the invocation it belongs to. */
  crashOn(operation: string): void {
    this.crashAt = operation;
  }

  watch(watcher: (operation: string, args: unknown[]) => void): void {
    this.watchers.push(watcher);
  }

  /** Whether the invocation died; a new one starts alive. */
  endInvocation(): boolean {
    const died = this.dead;
    this.dead = false;
    return died;
  }

  count(operation: string): number {
    return this.counts.get(operation) ?? 0;
  }

  wrap(ports: Ports): Ports {
    const wrapped = {} as Record<string, object>;
    for (const [name, port] of Object.entries(ports)) wrapped[name] = this.wrapPort(name, port as object);
    return wrapped as unknown as Ports;
  }

  private wrapPort(name: string, port: object): object {
    return new Proxy(port, {
      get: (target, property, receiver) => {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== 'function' || typeof property !== 'string') return value;
        return (...args: unknown[]) => {
          const operation = `${name}.${property}`;
          this.enter(operation, args);
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  }

  private enter(operation: string, args: unknown[]): void {
    if (this.dead) throw new ControllerCrash('the controller process is gone');
    if (this.crashAt === operation) {
      this.crashAt = undefined;
      this.dead = true;
      throw new ControllerCrash(`the lab killed the controller at ${operation}`);
    }
    this.counts.set(operation, this.count(operation) + 1);
    for (const watcher of this.watchers) watcher(operation, args);
  }
}

/**
 * The controller's world in the lab: the real controller code (SQS batch entry, reconcile,
 * planner, executor) with the real Puppet clients against the lab, and AWS in memory — the Auto
 * Scaling group, EC2, the registry, the queue fed by a lossy EventBridge, and target health.
 * Invocations run one at a time, as the reconcile lease has them take turns in the stack.
 */
export class LabWorld {
  readonly clock = new ManualClock();
  readonly logger = new RecordingLogger();
  readonly metrics = new RecordingMetrics();
  readonly tap = new PortTap();
  readonly cloud: MemoryCloud;
  readonly delivery: EventDelivery;
  readonly policy: PlannerPolicy;
  readonly driver: QueueDriver;
  private lastSchedule: number;
  /** Clock time the scenario skipped on purpose (e.g. a purge lease running out). */
  private forwardedMs = 0;
  /** Real work under way beside the controller (node agents booting). */
  private realWork = 0;

  /**
   * With `machines` (the scenario), the target group drives a real load balancer and the
   * controller checks each new node's real Puppet Server; without (tests of the controller alone,
   * e.g. forged CSRs), both are bookkeeping.
   */
  constructor(
    readonly lab: LabDescription,
    machines?: { balancer: TargetBalancer; health: NodeHealthPort },
    /** How the primary is converged; the orchestrator double unless given (the controller's logger is passed in). */
    primaryRun: (logger: Log) => PrimaryRunPort = () => labOrchestratorRun(lab),
  ) {
    this.delivery = new EventDelivery((body) => this.cloud.queue.enqueue(body));
    this.cloud = new MemoryCloud({ region: REGION, clock: this.clock.now, onEvent: (event) => this.delivery.deliver(event), balancer: machines?.balancer });
    const puppet = labPuppetApis(lab);
    this.policy = {
      region: REGION,
      nlbDnsName: NLB_DNS_NAME,
      extraAltNames: [],
      expectedExtensions: { pp_role: 'compile_master' },
      protectedCertnames: new Set([lab.primary.certname, lab.lifecycleClient.certname]),
      replaceUnhealthyAfterSeconds: 900,
      launchCeilingSeconds: LAUNCH_CEILING_MINUTES.default * 60,
    };
    const context: ControllerContext = {
      ports: this.tap.wrap(this.cloud.ports(puppet, primaryRun(this.logger), machines?.health)),
      policy: this.policy,
      logger: this.logger,
      metrics: this.metrics,
      clock: this.clock.now,
    };
    // The stack's visibility timeout outlasts the function's; the lab shortens it so that each
    // batch failed by a fault costs seconds, not minutes. The order of events is the same.
    this.driver = new QueueDriver(this.cloud, this.clock, (event) => this.invoke(event, context), { visibilityTimeoutSeconds: RETRY_VISIBLE_AFTER_SECONDS });
    this.lastSchedule = this.clock.now().getTime();
  }

  /**
   * Runs the controller on the queue while real work (node agents, the primary's Puppet runs,
   * server restarts) goes on, until `done`. The schedule fires every five minutes of clock time.
   */
  async until(done: () => boolean | Promise<boolean>, what: string, timeoutMs = 240_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.clock.now().getTime() - this.lastSchedule >= SCHEDULE_SECONDS * 1000) this.schedule();
      const ahead = this.realWork > 0 ? 0 : MAX_AHEAD_SECONDS * 1000;
      const room = (Date.now() + ahead + this.forwardedMs - this.clock.now().getTime()) / 1000;
      await this.driver.settle(Math.max(0, Math.min(PUMP_STEP_SECONDS, room)));
      if (await done()) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
      await sleep(1_000);
    }
  }

  /**
   * While `work` runs the clock keeps to real time, so the controller's short delays (the 5 s quiet
   * period before the primary's run) mean what they mean against nodes enrolling for real.
   */
  async inRealTime<T>(work: () => Promise<T>): Promise<T> {
    this.realWork += 1;
    try {
      return await work();
    } finally {
      this.realWork -= 1;
    }
  }

  /** Moves the clock on by `seconds` without waiting for them. */
  fastForward(seconds: number): void {
    this.clock.advance(seconds);
    this.forwardedMs += seconds * 1000;
  }

  /** Waits until real time has caught up with the controller's clock. */
  async catchUp(): Promise<void> {
    await sleep(Math.max(0, this.clock.now().getTime() - Date.now()));
  }

  /** The scheduled reconcile's event, now. */
  schedule(): void {
    this.lastSchedule = this.clock.now().getTime();
    this.cloud.queue.enqueue(scheduledEvent(this.clock.now(), REGION));
  }

  private async invoke(event: SQSEvent, context: ControllerContext): Promise<SQSBatchResponse> {
    const response = await handleBatch(event, { scope: this.cloud, logger: this.logger, metrics: context.metrics, reconcile: (triggers) => reconcile(context, triggers) });
    // A dead runtime answers nothing: Lambda's event source makes the whole batch visible again.
    if (this.tap.endInvocation()) {
      this.logger.error('Controller crashed mid-batch; the whole batch comes back after the visibility timeout', { records: event.Records.length });
      return { batchItemFailures: event.Records.map((record) => ({ itemIdentifier: record.messageId })) };
    }
    return response;
  }
}
