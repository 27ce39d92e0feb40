import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LIFECYCLE_ACTION } from '../../lambdas/controller/messages';
import { TIMING } from '../../lambdas/controller/vocabulary';
import { toAwsCallError } from '../../lambdas/controller/aws/call';
import { nodeAgentNotice } from '../../lib/node-agent-notice';
import { certificateFacts, readCertificate, readCsr } from '../../lib/puppet';
import { labClients, type LabClients } from '../clients';
import { requestCertificate } from '../csr';
import { labCommand, type LabDescription } from '../running-lab';
import { LAB_ACCOUNT_ID, type Operation } from '../memory-cloud';
import { checkConsistency, observePuppetSide, protectedState, type ConsistencyReport } from './consistency';
import { FaultLog, type FaultRecord } from './faults';
import type { AgentRun, BootAttemptFailure, TierNode } from './node';
import { Timeline, describeLine, type StepRecord } from './timeline';
import { LabWorld, NLB_DNS_NAME, REGION } from './world';
import { enrollAgents, failureKind, realAgentRun, retireAgents, startFleet, type AgentIdentity, type FleetHandle, type RequestRecord } from '../fleet';
import { MachineNode } from './machine-node';
import { MachineTier } from './machine-tier';
import { targetGroupSettings } from '../../cdk/target-groups';
import { CONTEXT_DEFAULTS } from '../../cdk/config';
import type { LabFlavor } from './flavor';
import { labPrimaryRunner, type LabPrimaryRunner } from './primary-runner';
import { holdLabLock } from '../lock';

export interface ScenarioOptions {
  lab: LabDescription;
  faults: boolean;
  /** Which Puppet the tier stands for: the load balancer's listeners follow it. */
  flavor: LabFlavor;
  /** Where the run keeps its machines, share and load balancer (removed afterwards). */
  workDir: string;
  /** Progress lines while the run goes on. */
  progress?: (line: string) => void;
  /** Each controller log line as it is logged. */
  trace?: (line: string) => void;
}

export interface ScenarioResult {
  /** Every controller log line of the run. */
  log: string;
  steps: StepRecord[];
  seconds: number;
  faults: FaultRecord[];
  report: ConsistencyReport;
  timeline: string;
  /** Controller figures over the whole run. */
  primaryRuns: number;
  /** Reconcile passes the controller made. */
  passes: number;
  eventsDropped: number;
  eventsRepeated: number;
  /** Labels of the run's instances, e.g. cm1 → i-… / ip-10-….compute.internal. */
  nodes: Record<string, { instanceId: string; certname: string }>;
  /** What the agents saw (machines only). */
  agents?: AgentFigures;
}

export interface AgentFigures {
  machines: 'systemd-nspawn';
  requests: number;
  failures: number;
  failuresByStep: Record<string, number>;
  failuresByKind: Record<string, number>;
  /** Each failed request: when (s from the scenario's start), during which step, and what answered. */
  failureDetails: FailureDetail[];
  /** Successful catalog latency, ms: steady state and each step after it. */
  catalogP50Ms: Record<string, number | null>;
  catalogP95Ms: Record<string, number | null>;
  /** Per launch: from the launch to the first catalog it served through the load balancer. */
  timeToServingS: Record<string, number | null>;
  rebootIdentityKept: boolean;
  /** Boot steps that failed and were restarted by systemd, each with the node agent's error. */
  bootRestarts: BootRestart[];
  realAgentRuns: Array<{ when: string; exitCode: number | null; seconds: number }>;
  byCompileMaster: Record<string, number>;
}

export interface FailureDetail {
  atS: number;
  /** The step's number, 'steady', or 'between' (a check or the final reconcile). */
  during: string;
  agent: string;
  request: string;
  /** The HTTP status, or `connection-error:<code>`. */
  status: string;
  answeredBy?: string;
  retryAfter?: string;
  detail?: string;
}

type BootRestart = Omit<BootAttemptFailure, 'seconds'> & { node: string };

/** Agent load through the load balancer: runs per minute over the fleet, and how long steady state is watched. */
const FLEET = { agents: 8, runsPerMinute: 24, steadySeconds: 60 };

const STEP_TITLES = [
  'scale out to 3: each CSR validated and signed, one run of the primary, all InService',
  "reboot cm1 (identity kept); purge cm2 while it is down, an attacker squats its certname, reboot it (the squatter's CSR removed, cm2 re-enrolled with its own key)",
  'scale in by 1 (cm3) while agents are mid-compile: drained from the load balancer, then purged, one run of the primary',
  'terminate cm1 outside the group (EC2 state change); the group replaces it with cm4',
  'cm4 leaves with its terminate event lost; cm5 joins with its launch event repeated; reconcile catches up',
  'a forged CSR from an instance that is not a member is refused',
];

const throttling = (operation: string) => toAwsCallError(operation, Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));

/**
 * The whole lifecycle of a compile tier on this machine: the real controller, real Puppet agents
 * as compile masters through the real node agent, the real CA and PuppetDB, the primary's runs
 * through the adapter the flavor deploys (the orchestrator double on PE, SSM Run Command's double
 * on open source), and AWS in memory. With `faults`, the same story while servers stop, AWS throttles, the
 * controller crashes and events go missing; the end state must be the same.
 */
export async function runScenario(options: ScenarioOptions): Promise<ScenarioResult> {
  // The run stops and starts the lab's servers (faults) and its primary reloads PuppetDB.
  const lock = await holdLabLock();
  let runner: LabPrimaryRunner | undefined;
  let scenario: Scenario | undefined;
  try {
    runner = await labPrimaryRunner(options.flavor, options.lab, REGION, LAB_ACCOUNT_ID);
    scenario = new Scenario(options, runner);
    return await scenario.run();
  } finally {
    await scenario?.cleanUp();
    await runner?.close();
    await lock.release();
  }
}

class Scenario {
  private readonly world: LabWorld;
  private readonly clients: LabClients;
  private readonly faults = new FaultLog();
  private readonly timeline: Timeline;
  private readonly nodes: TierNode[] = [];
  /** Certnames the scenario gave the controller a reason to purge; any other purge is wrong. */
  private readonly purgeable = new Set<string>();
  private readonly wrongPurges: string[] = [];
  /** This run's private subnet: its certnames are the tier, whatever earlier runs left on the CA. */
  private readonly subnet = `10.${randomInt(1, 255)}.${randomInt(0, 255)}`;
  private readonly started = Date.now();
  private runsBefore = 0;
  /** A node agent that failed while the controller was being pumped. */
  private backgroundError: unknown;
  private tier: MachineTier | undefined;
  private fleet: FleetHandle | undefined;
  private fleetIdentities: AgentIdentity[] = [];
  private readonly realRuns: Array<{ when: string; exitCode: number | null; seconds: number; record: RequestRecord }> = [];
  /** Windows the agents' figures are cut into: steady state, then each step. */
  private readonly windows: Array<{ name: string; from: number; to?: number }> = [];
  private readonly launchedAt = new Map<string, number>();
  private rebootIdentityKept = false;
  private readonly bootRestarts: BootRestart[] = [];

  constructor(
    private readonly options: ScenarioOptions,
    private readonly runner: LabPrimaryRunner,
  ) {
    // The tier starts in run(); the cloud exists before it, so these look it up late.
    this.world = new LabWorld(
      options.lab,
      {
        balancer: {
          register: (instanceId: string, ip: string) => this.tier?.balancer().register(instanceId, ip),
          deregister: async (instanceId: string) => this.tier?.balancer().deregister(instanceId),
        },
        health: { isHealthy: async (node: { certname: string; privateIp: string }) => (this.tier ? this.tier.health.isHealthy(node) : false) },
      },
      (logger) => runner.port(logger),
    );
    const trace = options.trace;
    if (trace) this.world.logger.onLine = (line) => trace(`${line.level} ${describeLine(line.message, line.attributes)}`);
    this.clients = labClients({ lab: options.lab });
    this.timeline = new Timeline(this.world.logger, (text) => this.label(text));
    this.world.tap.watch(() => this.faults.startReady());
    this.world.tap.watch((operation, args) => {
      if (operation !== 'puppet.clean' && operation !== 'puppet.deactivate') return;
      const certnames = operation === 'puppet.clean' ? (args[0] as string[]) : [args[0] as string];
      for (const certname of certnames) if (!this.purgeable.has(certname)) this.wrongPurges.push(certname);
    });
  }

  get prefix(): string {
    return `ip-${this.subnet.replaceAll('.', '-')}-`;
  }

  async run(): Promise<ScenarioResult> {
    const protectedNames = [...this.world.policy.protectedCertnames];
    const protectedBefore = await this.protectedStates(protectedNames);
    const steps = [() => this.scaleOut(), () => this.reboots(), () => this.scaleIn(), () => this.terminateOutside(), () => this.lostAndRepeated(), () => this.forgedCsr()];
    let failure: string | undefined;
    this.options.progress?.('starting the machine tier (network, IMDS, SQS endpoint, HAProxy, share)');
    this.tier = await MachineTier.start({
      lab: this.options.lab,
      subnet: `${this.subnet}.0/24`,
      dir: this.options.workDir,
      roleId: this.world.cloud.compileMasterRoleId,
      accountId: this.world.cloud.accountId,
      flavor: this.options.flavor,
      deliver: ({ body, senderId }) => this.world.cloud.queue.enqueue(body, 0, senderId),
      progress: this.options.progress,
    });
    this.fleetIdentities = await enrollAgents({ count: FLEET.agents + 1, lab: this.options.lab });
    for (const [index, step] of steps.entries()) {
      const title = STEP_TITLES[index] ?? '';
      this.options.progress?.(`step ${index + 1}: ${title}`);
      this.runsBefore = this.runsStarted();
      if (this.fleet) this.windows.push({ name: String(index + 1), from: Date.now() });
      try {
        await this.timeline.step(index + 1, title, async () => {
          try {
            await step();
            await this.targetsHealthy();
          } finally {
            await this.faults.settle();
          }
        });
      } catch (error) {
        // The check still runs: what a broken step left behind is worth seeing.
        failure = `step ${index + 1} failed: ${error instanceof Error ? error.message : String(error)}`;
        this.timeline.note('lab', failure);
        break;
      } finally {
        const window = this.windows.at(-1);
        if (window && window.to === undefined) window.to = Date.now();
      }
      if (index === 0 && this.fleet) await this.steadyState();
    }
    this.options.progress?.('final reconcile and consistency check');
    this.world.schedule();
    await this.until(() => this.world.cloud.queue.messages.length === 0, 'the final reconcile').catch((error: unknown) => {
      failure ??= `the final reconcile did not settle: ${String(error)}`;
    });
    const agents = await this.agentFigures().catch((error: unknown) => {
      failure ??= `the agents' figures could not be read: ${String(error)}`;
      return undefined;
    });
    const report = await this.check(protectedBefore, failure);
    await this.writeCloudSnapshot();
    const log = join(this.options.lab.logsDir, `scenario-${new Date(this.started).toISOString().replace(/[:.]/g, '-')}.jsonl`);
    await writeFile(log, this.world.logger.lines.map((line) => JSON.stringify({ level: line.level, message: this.label(describeLine(line.message, line.attributes)) })).join('\n'));
    return {
      log,
      steps: this.timeline.steps,
      seconds: (Date.now() - this.started) / 1000,
      faults: this.faults.records,
      report,
      timeline: this.timeline.format(),
      primaryRuns: this.runsStarted(),
      passes: this.world.tap.count('group.members'),
      eventsDropped: this.world.delivery.dropped.length,
      eventsRepeated: this.world.delivery.repeated.length,
      nodes: Object.fromEntries(this.nodes.map((node) => [node.label, { instanceId: node.instanceId, certname: node.certname }])),
      agents,
    };
  }

  async cleanUp(): Promise<void> {
    await this.fleet?.stop().catch(() => undefined);
    await Promise.allSettled([this.faults.settle(), ...this.nodes.map((node) => node.destroy()), this.clients.close()]);
    await this.tier?.close();
    await retireAgents(this.fleetIdentities, this.options.lab).catch(() => undefined);
    await rm(this.options.workDir, { recursive: true, force: true });
  }

  // ---- the agents (machines) -----------------------------------------------------------------

  /** Load starts once the tier first serves: the load balancer has a healthy target. */
  private async startFleetWhenServing(): Promise<void> {
    if (!this.tier || this.fleet) return;
    const health = await this.tier.env.nlb.health();
    if (!health.some((target) => target.state === 'healthy')) return;
    const [, ...agents] = this.fleetIdentities;
    this.fleet = await startFleet({ agents, runsPerMinute: FLEET.runsPerMinute, target: this.tier.agentTarget, durationMs: 4 * 3600_000, lab: this.options.lab });
    this.timeline.note('lab', `agent load starts: ${agents.length} agents, ${FLEET.runsPerMinute} runs/min through ${NLB_DNS_NAME}`);
  }

  /** Until every registered target is healthy at the load balancer (machines only). */
  private async targetsHealthy(): Promise<void> {
    const tier = this.tier;
    if (!tier) return;
    const started = Date.now();
    let healthy = false;
    await this.until(async () => {
      const targets = await tier.env.nlb.health();
      healthy = targets.length > 0 && targets.every((target) => target.state === 'healthy');
      return healthy;
    }, 'every registered compile master to be healthy at the load balancer');
    this.timeline.note('lab', `the load balancer sees every registered compile master healthy (waited ${((Date.now() - started) / 1000).toFixed(1)} s)`);
    // Serving is a catalog answered through the load balancer, not a passed health check.
    const fleet = this.fleet;
    if (!fleet) return;
    const registered = (await tier.env.nlb.health()).map((target) => this.nodes.find((node) => node.instanceId === target.targetId)?.certname);
    const served = () => registered.every((certname) => fleet.records.some((record) => record.step === 'catalog' && record.ok && record.answeredBy === certname));
    await this.until(served, 'every registered compile master to serve a catalog through the load balancer');
  }

  /** A minute of the tier serving with nothing else going on, and one real `puppet agent -t`. */
  private async steadyState(): Promise<void> {
    const window = { name: 'steady', from: Date.now(), to: undefined as number | undefined };
    this.windows.push(window);
    await this.realAgent('steady state');
    await this.until(() => Date.now() - window.from >= FLEET.steadySeconds * 1000, 'steady state');
    window.to = Date.now();
  }

  private async realAgent(when: string): Promise<void> {
    const [identity] = this.fleetIdentities;
    if (!this.tier || !identity) return;
    const { address, port } = this.tier.agentTarget;
    const result = await this.alongside(
      realAgentRun({ identity, serverName: NLB_DNS_NAME, address, port, workDir: join(this.options.workDir, 'real-agent', String(this.realRuns.length)), lab: this.options.lab }),
      `a real puppet agent run (${when})`,
    );
    this.realRuns.push({ when, exitCode: result.exitCode, seconds: result.durationMs / 1000, record: result.record });
    this.timeline.note('agent', `puppet agent --test through ${NLB_DNS_NAME} (${when}): exit ${String(result.exitCode)} after ${(result.durationMs / 1000).toFixed(1)} s`);
  }

  private async agentFigures(): Promise<AgentFigures | undefined> {
    if (!this.tier) return undefined;
    if (this.fleet) await this.realAgent('end');
    await this.fleet?.stop();
    const records = [...(this.fleet?.records ?? []), ...this.realRuns.map((run) => run.record)];
    const whole = this.fleet?.summary();
    const failures = records.filter((record) => !record.ok);
    const during = (at: number) => this.windows.findLast((window) => at >= window.from && (window.to === undefined || at < window.to))?.name ?? 'between';
    const failureDetails: FailureDetail[] = failures.map((record) => ({
      atS: Math.round((record.startedAt - this.started) / 100) / 10,
      during: during(record.startedAt),
      agent: record.agent,
      request: `${record.step}: ${record.request}`,
      status: failureKind(record),
      ...(record.answeredBy !== undefined ? { answeredBy: this.label(record.answeredBy) } : {}),
      ...(record.retryAfter !== undefined ? { retryAfter: record.retryAfter } : {}),
      ...(record.detail !== undefined ? { detail: record.detail } : {}),
    }));
    const byStep: Record<string, number> = {};
    for (const record of failures) byStep[record.step] = (byStep[record.step] ?? 0) + 1;
    const p50: Record<string, number | null> = {};
    const p95: Record<string, number | null> = {};
    for (const window of this.windows) {
      const summary = this.fleet?.summary({ from: window.from, to: window.to });
      p50[window.name] = summary?.catalog.p50Ms ?? null;
      p95[window.name] = summary?.catalog.p95Ms ?? null;
    }
    const timeToServing: Record<string, number | null> = {};
    for (const node of this.nodes) {
      const launched = this.launchedAt.get(node.certname);
      const first = this.fleet?.records.find((record) => record.step === 'catalog' && record.ok && record.answeredBy === node.certname);
      timeToServing[node.label] = launched !== undefined && first ? Math.round((first.startedAt - launched) / 100) / 10 : null;
    }
    return {
      machines: 'systemd-nspawn',
      requests: records.length,
      failures: failures.length,
      failuresByStep: byStep,
      failuresByKind: whole?.failuresByKind ?? {},
      failureDetails,
      catalogP50Ms: p50,
      catalogP95Ms: p95,
      timeToServingS: timeToServing,
      rebootIdentityKept: this.rebootIdentityKept,
      bootRestarts: this.bootRestarts,
      realAgentRuns: this.realRuns.map(({ when, exitCode, seconds }) => ({ when, exitCode, seconds })),
      byCompileMaster: Object.fromEntries(Object.entries(whole?.byCompileMaster ?? {}).map(([certname, count]) => [this.label(certname), count])),
    };
  }

  // ---- the steps -----------------------------------------------------------------------------

  private async scaleOut(): Promise<void> {
    const nodes = [await this.launch(), await this.launch(), await this.launch()];
    if (this.options.faults) {
      this.throttle('group.completeLifecycleAction', 1, 2);
      const deploy = this.faults.injected(`starting the primary's run answers 500 (${this.runner.what})`, 1, 'start-run gave its claim back and failed the batch; SQS redelivered it and the next start succeeded');
      await this.runner.fault('start-error');
      const failed = this.failedActions('start-run');
      this.faults.repairWhen(deploy, () => this.failedActions('start-run') > failed, () => this.runner.fault('normal'));
    }
    const boots = nodes.map((node) => this.background(this.boot(node)));
    await this.until(() => nodes.every((node) => this.stateOf(node) === 'InService'), 'three launches to complete');
    await Promise.all(boots);
    this.countRuns(1);
  }

  private async reboots(): Promise<void> {
    const [kept, purged] = this.nodes as [TierNode, TierNode];
    const before = await kept.localCertificate();
    const [down, up] = await this.alongside(this.world.inRealTime(() => kept.reboot()), 'cm1 to reboot');
    for (const run of [down, up]) if (run) this.agentNote(kept, run);
    if (up?.code !== 0) throw new Error(`cm1's node agent exited ${up?.code} after the reboot: ${JSON.stringify(up?.lines.at(-1))}`);
    await this.until(() => this.world.cloud.queue.messages.length === 0, "the controller to hear cm1's boot");
    if ((await kept.localCertificate()) !== before) throw new Error('cm1 lost its identity on a reboot');
    this.rebootIdentityKept = true;
    this.timeline.note('lab', 'cm1 kept its certificate (same fingerprint, still signed at the CA)');
    // An operator takes the next compile master down once the load balancer sees this one serve.
    await this.targetsHealthy();

    this.agentNote(purged, await purged.stop());
    this.purgeable.add(purged.certname);
    await this.clients.ca.clean([purged.certname]);
    this.timeline.note('operator', `puppetserver ca clean --certname ${purged.certname} while it is down`);
    if (this.options.faults) this.throttle('registry.recordSigned', 2, 1);
    this.world.schedule();
    await this.until(() => this.world.cloud.registry.peek(purged.instanceId)?.state === 'purged', "the controller to purge cm2's lost certificate");
    // Everything rule 2 checks but the key is public: an attacker on 8140 asks first, for cm2's
    // certname, with cm2's instance id, role and alt names, and a key of their own.
    const squat = await requestCertificate(
      { certname: purged.certname, dnsAltNames: [purged.certname, NLB_DNS_NAME], extensions: { pp_instance_id: purged.instanceId, pp_role: 'compile_master', pp_region: REGION } },
      this.options.lab,
    );
    const squatterKey = readCsr(squat.csrPem).publicKeySha256;
    this.timeline.note('attacker', `submits a CSR for ${purged.certname} (cm2's instance id, role and alt names, another key) before cm2 is back`);
    this.world.schedule();
    // PuppetDB keeps a node deactivated against facts older than the deactivation's timestamp.
    await this.world.catchUp();
    const boot = this.background(this.boot(purged));
    await this.until(() => this.registryState(purged) === 'in-service' && this.world.cloud.queue.messages.length === 0, 'cm2 to re-enroll');
    await boot;
    const issued = await this.clients.ca.getCertificate(purged.certname);
    const local = await purged.localCertificate();
    if (!issued || !local || readCertificate(issued).publicKeySha256 === squatterKey || readCertificate(local).sha256Fingerprint !== readCertificate(issued).sha256Fingerprint) {
      throw new Error(`cm2's certificate at the CA is not the one cm2 holds for its own key: the squatter's CSR may have been signed`);
    }
    this.timeline.note('lab', "cm2 holds the certificate the CA signed, for its own key; the squatter's CSR was removed unsigned");
  }

  private async scaleIn(): Promise<void> {
    // With agents on, one compile master must keep serving while step 4 takes cm1 away.
    const leaving = [this.nodes[2]] as TierNode[];
    for (const node of leaving) this.purgeable.add(node.certname);
    if (this.options.faults) {
      const ca = this.faults.injected('CA (Puppet Server) stopped', 3, 'passes failed at observation and their batches came back; the purges ran once the CA answered again');
      await labCommand('stop-ca');
      const failed = this.failedReconciles();
      this.faults.repairWhen(ca, () => this.failedReconciles() > failed, () => labCommand('start-ca'));
      const duplicated = this.faults.injected('the terminate event delivered twice', 3, 'the second copy found the purge done (or claimed) and the action completed: a no-op');
      for (const node of leaving) this.world.delivery.next((event) => event.detail.EC2InstanceId === node.instanceId, 2);
      this.faults.repairWhen(duplicated, () => leaving.every((node) => this.stateOf(node) === undefined));
      this.throttle('group.members', 3, 1);
    }
    await this.alongside(this.world.cloud.scaleIn(leaving.map((node) => node.instanceId)), `${leaving.map((node) => node.label).join(' and ')} to be drained from the load balancer`);
    await this.until(() => leaving.every((node) => this.stateOf(node) === undefined && this.registryState(node) === 'purged') && this.runsIdle(), "the purge and the primary's run");
    // EC2 shuts an instance down once its terminate hook has completed.
    for (const node of leaving) this.agentNote(node, await node.terminate());
    this.countRuns(1);
  }

  private async terminateOutside(): Promise<void> {
    const gone = this.nodes[0] as TierNode;
    this.purgeable.add(gone.certname);
    if (this.options.faults) {
      const puppetdb = this.faults.injected('PuppetDB stopped', 4, 'the purge failed at deactivate and kept its claim; after the purge lease the next scheduled reconcile finished it');
      await labCommand('stop-puppetdb');
      const failed = this.failedActions('purge');
      this.faults.repairWhen(puppetdb, () => this.failedActions('purge') > failed, () => labCommand('start-puppetdb'));
      const lost = this.faults.injected("the 'shutting-down' state change lost", 4, "the 'terminated' one triggered the same purge");
      this.world.delivery.next((event) => event.detail.state === 'shutting-down', 0);
      this.faults.repairWhen(lost, () => this.registryState(gone) === 'purged');
    }
    this.world.cloud.terminateOutside(gone.instanceId);
    this.timeline.note('operator', `aws ec2 terminate-instances --instance-ids ${gone.instanceId}`);
    this.agentNote(gone, await gone.terminate());
    await this.purgeOf(gone);

    const replacement = await this.launch();
    const boot = this.background(this.boot(replacement));
    await this.until(() => this.stateOf(replacement) === 'InService', 'cm4 to launch');
    await boot;
  }

  private async lostAndRepeated(): Promise<void> {
    const leaving = this.nodes[3] as TierNode;
    this.purgeable.add(leaving.certname);
    const lost = this.faults.injected(`terminate event of ${leaving.label} lost`, 5, 'nothing happened until the scheduled reconcile found it in Terminating:Wait and purged it');
    this.world.delivery.next((event) => event.detail.EC2InstanceId === leaving.instanceId, 0);
    if (this.options.faults) {
      const crash = this.faults.injected('controller crashed mid-purge (at PuppetDB deactivate)', 5, 'the whole batch came back; the purge claim blocked a second purge until its lease ran out, then a reconcile finished it');
      this.world.tap.crashOn('puppet.deactivate');
      this.faults.repairWhen(crash, () => this.registryState(leaving) === 'purged');
    }
    await this.alongside(this.world.cloud.scaleIn([leaving.instanceId]), `${leaving.label} to be drained from the load balancer`);
    await this.until(() => this.world.cloud.queue.messages.length === 0, 'the queue to drain');
    if (this.stateOf(leaving) !== 'Terminating:Wait') throw new Error(`${leaving.label} is ${this.stateOf(leaving) ?? 'gone'} although its terminate event was lost`);
    this.timeline.note('lab', `${leaving.label} waits in Terminating:Wait; the reconcile schedule fires`);
    this.world.schedule();
    await this.purgeOf(leaving);
    this.agentNote(leaving, await leaving.terminate());
    this.faults.recovered(lost);

    if (this.options.faults) {
      const hang = this.faults.injected(
        `the primary's run is stuck (${this.runner.what})`,
        5,
        this.options.flavor === 'pe'
          ? "the orchestrator's deploy hung: the client's 15 s timeout ended the attempt; a retry reached the orchestrator once it answered again"
          : 'the SSM command hung in progress: the controller kept following it until the primary ran it',
      );
      await this.runner.fault('stuck');
      const called = this.world.tap.count('primaryRun.start');
      // Back to normal while the hung attempt is still waited on: its retry, or the run itself, gets through.
      this.faults.repairWhen(hang, () => this.world.tap.count('primaryRun.start') > called, () => sleep(5_000).then(() => this.runner.fault('normal')));
    }
    const repeated = this.faults.injected('the next launch event delivered 3 times', 5, 'each copy ran the same reconcile; one signature, one completion');
    const joining = await this.launch(3);
    const boot = this.background(this.boot(joining));
    await this.until(() => this.stateOf(joining) === 'InService' && this.runsIdle(), `${joining.label} to launch`);
    await boot;
    this.faults.recovered(repeated);
  }

  private async forgedCsr(): Promise<void> {
    const ip = `${this.subnet}.200`;
    const certname = `ip-${ip.replaceAll('.', '-')}.${REGION}.compute.internal`;
    // An instance of the account, not of the group, asking to be signed as a compile master.
    const instanceId = `i-0${randomInt(0x1000_0000, 0xffff_ffff).toString(16)}deadbeef`;
    this.world.cloud.instances.put({ instanceId, state: 'running', privateIp: ip, privateDnsName: certname, launchTime: this.world.clock.now() });
    const csr = await requestCertificate(
      { certname, dnsAltNames: [certname, NLB_DNS_NAME], extensions: { pp_instance_id: instanceId, pp_role: 'compile_master', pp_region: REGION } },
      this.options.lab,
    );
    // With the compile masters' instance profile, say: it can prove who it is, not that it belongs.
    this.world.cloud.notifyFrom(nodeAgentNotice(instanceId, 'csr-submitted', readCsr(csr.csrPem).publicKeySha256));
    this.timeline.note('attacker', `${instanceId} (not a member) submits a CSR for ${certname} and asks to be looked at`);
    await this.until(() => this.world.cloud.queue.messages.length === 0, 'the controller to look at the forged CSR');
    const state = (await this.clients.ca.getStatus(certname))?.state;
    if (state !== 'requested') throw new Error(`the forged CSR for ${certname} is ${state ?? 'absent'} at the CA, not left unsigned`);
    if (this.world.cloud.registry.peek(instanceId)) throw new Error('the controller registered a non-member');
    this.timeline.note('lab', `${certname}: still an unsigned request at the CA; nothing registered`);
    await this.clients.ca.clean([certname]);
  }

  // ---- helpers -------------------------------------------------------------------------------

  /** A new member in Pending:Wait with its simulated compile master; `copies` of its launch event. */
  private async launch(copies = 1): Promise<TierNode> {
    const label = `cm${this.nodes.length + 1}`;
    const privateIp = `${this.subnet}.${10 + this.nodes.length}`;
    if (copies !== 1) this.world.delivery.next((event) => event['detail-type'] === LIFECYCLE_ACTION.launch.detailType, copies);
    const instance = this.world.cloud.launch({ privateIp });
    if (!this.tier) throw new Error('the machine tier is not started');
    const node = await MachineNode.create(label, instance, this.tier);
    this.launchedAt.set(node.certname, Date.now());
    this.nodes.push(node);
    this.timeline.note('group', `launches ${label}: Pending:Wait`);
    return node;
  }

  private async boot(node: TierNode): Promise<AgentRun> {
    const run = await this.world.inRealTime(() => node.start());
    this.agentNote(node, run);
    if (run.code !== 0) throw new Error(`${node.label}'s node agent exited ${run.code}: ${JSON.stringify(run.lines.findLast((line) => line.level === 'error') ?? run.lines.at(-1))}`);
    return run;
  }

  private agentNote(node: TierNode, run: AgentRun): void {
    for (const failed of run.restarts ?? []) {
      this.bootRestarts.push({ node: node.label, code: failed.code, error: failed.error });
      this.timeline.note('node-agent', `${node.label}: boot step failed after ${failed.seconds.toFixed(1)} s (exit ${failed.code}: ${failed.error}); systemd restarted it`);
    }
    const decision = run.lines.find((line) => line.message === 'boot decision' || typeof line.verdict === 'string');
    const what = decision?.plan ? `boot: ${String(decision.plan)} (${String(decision.reason)})` : `shutdown: ${String(decision?.verdict ?? 'no verdict')}`;
    this.timeline.note(`node-agent`, `${node.label}: ${what}, exit ${run.code} after ${run.seconds.toFixed(1)} s`);
    if (run.drain?.length) this.timeline.note('readiness', `${node.label}: ${run.drain.join('; ')}`);
  }

  private throttle(operation: Operation, step: number, times: number): void {
    const record = this.faults.injected(`AWS throttling on ${operation} ×${times}`, step, 'the pass failed, its batch came back after the visibility timeout and the repeat succeeded');
    this.world.cloud.failNext(operation, throttling(operation), times);
    const seen = this.world.cloud.callsOf(operation).length;
    this.faults.repairWhen(record, () => this.world.cloud.callsOf(operation).length > seen + times);
  }

  /** The controller keeps running while `work` goes on; its result once it is done. */
  private async alongside<T>(work: Promise<T>, what: string): Promise<T> {
    let done = false;
    const tracked = this.background(work).finally(() => (done = true));
    await this.until(() => done, what);
    return tracked;
  }

  /** Keeps a node agent's run from going unnoticed while the controller is pumped. */
  private background<T>(work: Promise<T>): Promise<T> {
    work.catch((error: unknown) => (this.backgroundError ??= error));
    return work;
  }

  /** The controller keeps running until `done`, while repairs start when their moment comes. */
  private until(done: () => boolean | Promise<boolean>, what: string): Promise<void> {
    return this.world.until(async () => {
      if (this.backgroundError !== undefined) throw this.backgroundError;
      await this.startFleetWhenServing();
      this.faults.tick();
      this.timeline.collect();
      return done();
    }, what, 1_200_000);
  }

  /**
   * Until the node is purged and the primary's run for it is over. A crashed or failed purge keeps
   * its claim for the lease (longer than the function's timeout) and nothing more happens until a
   * reconcile after that: the lab skips the wait on the clock and fires the schedule.
   */
  private async purgeOf(node: TierNode): Promise<void> {
    const purged = () => this.registryState(node) === 'purged';
    for (let attempt = 0; attempt < 5 && !purged(); attempt++) {
      const stuck = () => this.registryState(node) === 'purging' && !this.faults.repairing() && this.world.cloud.queue.messages.length === 0;
      await this.until(() => purged() || stuck(), `${node.label} to be purged`);
      if (purged()) break;
      this.world.fastForward(TIMING.purgeLeaseMs / 1000);
      this.world.schedule();
      this.timeline.note('lab', `${node.label}'s purge claim is held: clock moved ${TIMING.purgeLeaseMs / 1000} s on (the lease runs out), the reconcile schedule fires`);
    }
    await this.until(() => purged() && this.stateOf(node) === undefined && this.runsIdle(), `${node.label} to be purged and the primary's run to end`);
  }

  private failedActions(kind: string): number {
    return this.world.logger.lines.filter((line) => line.message === 'Action failed; the trigger will be retried' && (line.attributes as { action?: string }).action === kind).length;
  }

  private failedReconciles(): number {
    return this.world.logger.messages('error').filter((message) => message === 'Reconcile failed; its messages will be retried').length;
  }

  private runsStarted(): number {
    return this.world.logger.messages().filter((message) => message === "Started the primary's run").length;
  }

  /** No run of the primary pending or in flight. */
  private runsIdle(): boolean {
    const run = this.world.cloud.registry.peekRun();
    return run.pending.length === 0 && run.job === undefined;
  }

  /**
   * Said, not enforced: the controller batches changes that come within its 5 s quiet period, and
   * the lab's one Puppet Server serialises the nodes' agent runs, which can spread a burst wider.
   */
  private countRuns(expected: number): void {
    const runs = this.runsStarted() - this.runsBefore;
    this.timeline.note('lab', `${runs} run(s) of the primary in this step${runs === expected ? '' : ` (expected ${expected})`}`);
  }

  private stateOf(node: TierNode): string | undefined {
    return this.world.cloud.group.stateOf(node.instanceId);
  }

  private registryState(node: TierNode): string | undefined {
    return this.world.cloud.registry.peek(node.instanceId)?.state;
  }

  private label(text: string): string {
    let labelled = text;
    for (const node of this.nodes) labelled = labelled.replaceAll(node.instanceId, node.label).replaceAll(node.certname, node.label);
    return labelled;
  }

  /**
   * The simulated group as the run left it, for `compile-masters status --lab` (cli/lab-snapshot.ts
   * reads it): members, EC2 descriptions, registry and target health on both listener ports.
   */
  private async writeCloudSnapshot(): Promise<void> {
    const cloud = this.world.cloud;
    const [members, { entries: registry }] = await Promise.all([cloud.group.members(), cloud.registry.list()]);
    const instances = await cloud.instances.describe([...new Set([...members.map((m) => m.instanceId), ...registry.map((e) => e.instanceId)])]);
    const snapshot = {
      writtenAt: new Date().toISOString(),
      members,
      instances: [...instances.values()].map((instance) => ({ ...instance, launchTime: instance.launchTime?.toISOString() })),
      targets: cloud.targets.registered().flatMap((instanceId) => targetGroupSettings({ flavor: this.options.flavor, deregistrationDelaySeconds: CONTEXT_DEFAULTS.deregistrationDelaySeconds }).map(({ port }) => ({ instanceId, port, state: 'healthy' }))),
      registry,
    };
    await writeFile(join(this.options.lab.dir, 'scenario', 'cloud.json'), JSON.stringify(snapshot, null, 2));
  }

  private async protectedStates(names: readonly string[]): Promise<Record<string, string>> {
    return Object.fromEntries(await Promise.all(names.map(async (name) => [name, await protectedState(this.clients.ca, name)] as const)));
  }

  private async check(protectedBefore: Record<string, string>, failure: string | undefined): Promise<ConsistencyReport> {
    const cloud = this.world.cloud;
    const memberIds = (await cloud.group.members()).map((member) => member.instanceId);
    const members = this.nodes.filter((node) => memberIds.includes(node.instanceId));
    // PuppetDB applies commands asynchronously: give the last ones a moment.
    await sleep(2_000);
    const puppetSide = await observePuppetSide(this.clients.ca, this.clients.puppetdb, this.prefix);
    const identityMismatches: string[] = [];
    for (const node of members) {
      const served = await this.clients.ca.getCertificate(node.certname);
      const local = await node.localCertificate();
      if (!served || !local || (await certificateFacts(served)).sha256Fingerprint !== (await certificateFacts(local)).sha256Fingerprint) identityMismatches.push(node.certname);
    }
    return checkConsistency({
      members: members.map((node) => node.certname).sort(),
      targets: cloud.targets.registered().sort(),
      inService: memberIds.filter((id) => cloud.group.stateOf(id) === 'InService').sort(),
      ...puppetSide,
      pendingLifecycleActions: cloud.group.pendingActions(),
      protectedBefore,
      protectedAfter: await this.protectedStates(Object.keys(protectedBefore)),
      wrongPurges: [...new Set(this.wrongPurges)],
      identityMismatches,
      scenarioFailure: failure,
    });
  }
}

/** A fresh directory for one run's machines, share and load balancer. */
export async function scenarioWorkDir(lab: LabDescription): Promise<string> {
  const dir = join(lab.dir, 'scenario', `run-${Date.now().toString(36)}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}
