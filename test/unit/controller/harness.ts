import type { SQSBatchResponse } from 'aws-lambda';
import { handleBatch } from '../../../lambdas/controller/batch';
import { reconcile, reconcileWithoutSecrets, withClientCertificate, type ControllerContext } from '../../../lambdas/controller/reconcile';
import { nodeAgentNotice, type NodeAgentEvent } from '../../../lib/node-agent-notice';
import { ManualClock, MemoryCloud, QueueDriver, scheduledEvent, type EventBridgeEvent, type QueueRedrive } from '../../../lab/memory-cloud';
import { FakePrimaryRun, FakePuppet, NOW, POLICY, RecordingLogger, RecordingMetrics, csrFacts, keyOf } from './support';

/**
 * The controller on the in-memory cloud with a fake Puppet side and a clock the test moves: the
 * whole loop of events, batches, passes and delayed rechecks, as SQS and Lambda would run it.
 */
export class Harness {
  readonly clock = new ManualClock(NOW);
  readonly puppet = new FakePuppet();
  readonly primaryRun: FakePrimaryRun;
  readonly logger = new RecordingLogger();
  readonly metrics = new RecordingMetrics();
  readonly cloud: MemoryCloud;
  readonly context: ControllerContext;
  readonly driver: QueueDriver;
  /** Events the simulated EventBridge dropped. */
  readonly dropped: EventBridgeEvent[] = [];
  dropEvents = false;
  /** Thrown where the handler reads the client certificate secret (none: it reads fine). */
  clientCertificateError: Error | undefined;
  private readonly enrollments = new Map<string, number>();

  /**
   * With `redrive`, the queue keeps SQS's visibility timeouts and dead-letter queue. `runId` names
   * the runner's runs (job numbers unless given, e.g. UUIDs as SSM's).
   */
  constructor(options: { redrive?: QueueRedrive; runId?: (n: number) => string } = {}) {
    this.primaryRun = new FakePrimaryRun(options.runId);
    this.cloud = new MemoryCloud({
      clock: this.clock.now,
      redrive: options.redrive,
      onEvent: (event) => (this.dropEvents ? this.dropped.push(event) : this.cloud.queue.enqueue(JSON.stringify(event))),
    });
    this.context = { ports: this.cloud.ports(this.puppet, this.primaryRun), policy: POLICY, logger: this.logger, metrics: this.metrics, clock: this.clock.now };
    this.driver = new QueueDriver(this.cloud, this.clock, (event) =>
      handleBatch(event, {
        scope: this.cloud,
        logger: this.logger,
        metrics: this.metrics,
        // The handler's wiring, with the secret read replaced by clientCertificateError.
        reconcile: (triggers) =>
          withClientCertificate(async () => this.readClientCertificate(), {
            ready: (context) => reconcile(context, triggers),
            missing: (error) => reconcileWithoutSecrets({ ...this.context, ceiling: POLICY }, triggers, error),
          }),
      }),
    );
  }

  private readClientCertificate(): ControllerContext {
    if (this.clientCertificateError) throw this.clientCertificateError;
    return this.context;
  }

  get now(): Date {
    return this.clock.now();
  }

  advance(seconds: number): void {
    this.clock.advance(seconds);
  }

  deliver(batchSize?: number): Promise<SQSBatchResponse | undefined> {
    return this.driver.deliver(batchSize);
  }

  settle(maxSeconds?: number): Promise<void> {
    return this.driver.settle(maxSeconds);
  }

  /**
   * What the node agent does on a new instance: report its new key, submit its CSR and say so.
   * `overrides` change the CSR, not the report (the report is always the node's own key).
   */
  nodeSubmitsCsr(instanceId: string, overrides: Parameters<typeof csrFacts>[1] = {}): void {
    const instance = this.cloud.instances.get(instanceId);
    if (!instance?.privateDnsName) throw new Error(`no such instance ${instanceId}`);
    const certname = instance.privateDnsName;
    this.notify(instanceId, 'enrolling');
    const key = this.nodeKey(instanceId);
    this.puppet.request(certname, {
      ...csrFacts(1),
      commonName: certname,
      dnsAltNames: [certname, POLICY.nlbDnsName],
      puppetExtensions: { pp_instance_id: instanceId, pp_role: 'compile_master', pp_region: POLICY.region },
      publicKeySha256: key,
      ...overrides,
    });
    this.notify(instanceId, 'csr-submitted');
  }

  /** The node's Puppet Server is up and the agent says it enrolled. */
  nodeEnrolled(instanceId: string): void {
    const certname = this.cloud.instances.get(instanceId)?.privateDnsName;
    if (!certname) throw new Error(`no such instance ${instanceId}`);
    this.cloud.health.set(certname, true);
    this.notify(instanceId, 'enrolled');
  }

  /**
   * A notice from the instance itself; enrolling and csr-submitted report the node's current key.
   * As the real node agent, each enrollment (`enrolling`) makes a new key.
   */
  notify(instanceId: string, event: NodeAgentEvent): void {
    if (event === 'enrolled' || event === 'booted') return this.cloud.notifyFrom(nodeAgentNotice(instanceId, event));
    if (event === 'enrolling') this.enrollments.set(instanceId, (this.enrollments.get(instanceId) ?? 0) + 1);
    this.cloud.notifyFrom(nodeAgentNotice(instanceId, event, this.nodeKey(instanceId)));
  }

  /** The key of the instance's latest enrollment: its own, also when its certname passes to another. */
  nodeKey(instanceId: string): string {
    return keyOf(`${instanceId} enrollment ${this.enrollments.get(instanceId) ?? 0}`);
  }

  schedule(): void {
    this.cloud.queue.enqueue(scheduledEvent(this.now));
  }

  /** Marks every started run of the primary with `state`. */
  runsEnd(state: 'finished' | 'failed'): void {
    this.primaryRun.end(state);
  }

  /** A scaled-out, in-service tier of `count` compile masters, enrolled through the controller. */
  async tier(count: number): Promise<string[]> {
    const ids = Array.from({ length: count }, () => this.cloud.launch().instanceId);
    await this.settle();
    for (const id of ids) this.nodeSubmitsCsr(id);
    await this.settle();
    for (const id of ids) this.nodeEnrolled(id);
    await this.deliver(100);
    this.advance(10);
    await this.settle(15);
    this.runsEnd('finished');
    await this.settle();
    return ids;
  }
}
