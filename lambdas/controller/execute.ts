import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { describeUntrusted } from '../../lib/certname';
import { CompileMastersError, PuppetApiError, RefusedInputError, SecretMissingError } from '../../lib/errors';
import type { CertificateContents } from '../../lib/puppet/csr';
import { mapLimit } from '../../lib/concurrency';
import { unhandled } from '../../lib/exhaustive';
import { certificateIdentity, removeFromPuppet, type PurgeSubject } from './puppet-purge';
import type { Action, CheckedRequest, Plan, RegistryEntry, RunJob, RunRecord } from './model';
import { recheckMessage } from './messages';
import { RUN_ID_PATTERN, RUN_ID_RULE, type LifecycleHook, type Ports } from './ports';
import { METRIC, TIMING } from './vocabulary';

/** What the controller needs of Powertools' Logger: a message and structured attributes. */
export interface Log {
  debug(message: string, ...attributes: Array<Record<string, unknown>>): void;
  info(message: string, ...attributes: Array<Record<string, unknown>>): void;
  warn(message: string, ...attributes: Array<Record<string, unknown>>): void;
  error(message: string, ...attributes: Array<Record<string, unknown>>): void;
}

/** What it needs of Powertools' Metrics. */
export interface MetricsSink {
  addMetric(name: string, unit: typeof MetricUnit.Count, value: number): unknown;
}

export interface ExecutionContext {
  ports: Ports;
  logger: Log;
  metrics: MetricsSink;
  now: Date;
}

/**
 * Order matters where one action relies on another: refusals first (they only ever close doors),
 * then signing, purging, convergence and launch completions, and only then the run record, whose
 * job may be ended only once the launches it covered are completed.
 */
const PHASE: Readonly<Record<Action['kind'], number>> = {
  refuse: 0,
  'remove-csr': 0,
  sign: 1,
  verify: 1,
  purge: 2,
  forget: 2,
  'complete-terminate': 2,
  converge: 3,
  launched: 3,
  heartbeat: 3,
  stall: 3,
  'record-health': 3,
  'replace-unhealthy': 3,
  'reset-run': 4,
  'start-run': 4,
  'end-run': 4,
  recheck: 5,
};
/** Phases in order; a record over every kind, so the compiler refuses an action kind without one. */
const PHASES: ReadonlyArray<ReadonlyArray<Action['kind']>> = Object.entries(PHASE).reduce<Action['kind'][][]>((phases, [kind, phase]) => {
  (phases[phase] ??= []).push(kind as Action['kind']);
  return phases;
}, []);
const ACTION_CONCURRENCY = 8;
const RUN_RECORD_ATTEMPTS = 5;

/**
 * Carries a plan out. An action that fails does not stop the others (each is safe to repeat, so
 * whatever succeeds is progress), except that a run is not ended after a failed completion. The
 * first failure is thrown at the end so the queue delivers the trigger again.
 */
export async function execute(plan: Plan, context: ExecutionContext): Promise<void> {
  const executor = new Executor(context);
  return executor.run(plan);
}

class Executor {
  private readonly failures: unknown[] = [];
  /** Launches whose completion failed: the run that covered them must not be ended yet. */
  private readonly failedLaunches = new Set<string>();

  constructor(private readonly context: ExecutionContext) {}

  async run(plan: Plan): Promise<void> {
    const { logger, metrics } = this.context;
    for (const note of plan.notes) logger.debug(note);
    for (const drift of plan.drift) logger.warn('Drift', { ...drift });
    metrics.addMetric(METRIC.drift, MetricUnit.Count, plan.drift.length);
    metrics.addMetric(METRIC.damagedEntries, MetricUnit.Count, plan.damagedEntries);

    for (const phase of PHASES) {
      const actions = plan.actions.filter((action) => phase.includes(action.kind));
      await mapLimit(actions, ACTION_CONCURRENCY, async (action) => {
        // Ending a run forgets which launches it covered; only their own failures hold it open,
        // so one instance that keeps failing never stalls the primary's runs for the others.
        if (action.kind === 'end-run' && this.failedLaunches.size > 0) {
          return logger.warn("Not ending the primary's run: completing a launch it covered failed", { runId: action.runId, instanceIds: [...this.failedLaunches] });
        }
        try {
          await this.action(action);
        } catch (error) {
          if (action.kind === 'launched') this.failedLaunches.add(action.instanceId);
          this.failures.push(error);
          logger.error('Action failed; the trigger will be retried', { action: action.kind, error: error as Error });
        }
      });
    }
    if (this.failures.length > 0) throw this.failures[0];
  }

  private async action(action: Action): Promise<void> {
    switch (action.kind) {
      case 'refuse':
        return this.refuse(action);
      case 'remove-csr':
        return this.removeCsr(action);
      case 'sign':
        return this.sign(action);
      case 'verify':
        return this.verify(action, 'Verified the certificate an earlier pass signed');
      case 'purge':
        return this.purge(action);
      case 'forget':
        await this.ports.registry.transition(action.instanceId, ['signed', 'converging', 'in-service', 'stalled', 'purging'], 'purged', this.now);
        return this.logger.info('Registry entry marked purged without touching Puppet', { instanceId: action.instanceId, reason: action.reason });
      case 'complete-terminate':
        this.logger.info('Completing terminate action without a purge', { instanceId: action.instanceId, reason: action.reason });
        return this.complete(action.instanceId, 'terminate', 'CONTINUE');
      case 'converge':
        await this.requestRun(action.instanceIds);
        await mapLimit(action.instanceIds, ACTION_CONCURRENCY, (id) => this.ports.registry.transition(id, ['signed'], 'converging', this.now));
        return this.logger.info("Puppet Servers healthy; waiting for the primary's run", { instanceIds: action.instanceIds });
      case 'launched':
        if (action.completeLaunch) await this.complete(action.instanceId, 'launch', 'CONTINUE');
        await this.ports.registry.transition(action.instanceId, ['converging', 'in-service'], 'in-service', this.now);
        return this.logger.info('Compile master in service', { instanceId: action.instanceId });
      case 'heartbeat':
        await mapLimit(action.instanceIds, ACTION_CONCURRENCY, (instanceId) => this.ports.group.recordHeartbeat(instanceId, 'launch'));
        return this.logger.debug('Heartbeat recorded for launches waiting on the primary', { instanceIds: action.instanceIds });
      case 'stall':
        await mapLimit(action.instanceIds, ACTION_CONCURRENCY, (id) => this.ports.registry.transition(id, ['converging'], 'stalled', this.now));
        this.context.metrics.addMetric(METRIC.failed, MetricUnit.Count, action.instanceIds.length);
        return this.logger.error("Launches left to the launch hook's default result", { instanceIds: action.instanceIds, reason: action.reason });
      case 'start-run':
        return this.startRun(action);
      case 'end-run':
        return this.endRun(action);
      case 'reset-run':
        await this.mutateRun((run) =>
          run.job && !run.job.name && run.job.claimedAt === action.claimedAt ? { ...run, job: undefined, pending: union(run.pending, run.job.covers) } : undefined,
        );
        return this.logger.warn("Released a claim on the primary's run that was never started", { reason: action.reason });
      case 'recheck': {
        const { delaySeconds, reason, instanceId, runId, attempt } = action;
        await this.ports.queue.sendRecheck(recheckMessage({ reason, attempt, instanceId, runId }), delaySeconds);
        return this.logger.debug('Recheck scheduled', { reason, instanceId, runId, attempt, delaySeconds });
      }
      case 'record-health':
        if (!(await this.ports.registry.recordHealth(action.instanceId, action.unhealthySince, this.now))) return;
        if (action.unhealthySince === undefined) return this.logger.info('Puppet Server of a serving compile master healthy again', { instanceId: action.instanceId });
        return this.logger.warn('Puppet Server of a serving compile master unhealthy; the load balancer keeps agents off it, and it is replaced if it stays so without a reboot', {
          instanceId: action.instanceId,
          since: action.unhealthySince,
        });
      case 'replace-unhealthy':
        await this.ports.group.setUnhealthy(action.instanceId);
        this.context.metrics.addMetric(METRIC.replacedUnhealthy, MetricUnit.Count, 1);
        return this.logger.error('Replacing a compile master: marked unhealthy in its Auto Scaling group, which terminates it through the terminate hook (purged there) and launches another', {
          instanceId: action.instanceId,
          certname: action.certname,
          reason: action.reason,
        });
      default:
        return unhandled(action);
    }
  }

  private async refuse(action: Extract<Action, { kind: 'refuse' }>): Promise<void> {
    this.logger.warn(action.abandon ? 'Refused: abandoning the launch' : 'Refused a certificate request', {
      instanceId: action.instanceId,
      certname: action.certname,
      reasons: action.reasons,
    });
    if (!action.abandon) {
      this.context.metrics.addMetric(METRIC.requestsRefused, MetricUnit.Count, 1);
      return;
    }
    this.context.metrics.addMetric(METRIC.refused, MetricUnit.Count, 1);
    await this.complete(action.instanceId, 'launch', 'ABANDON');
  }

  private async removeCsr(action: Extract<Action, { kind: 'remove-csr' }>): Promise<void> {
    const { instanceId, certname } = action;
    // Only the very CSR the plan judged: if another one replaced it since, the next pass judges that.
    let pending: string | undefined | 'none';
    try {
      pending = (await this.ports.puppet.readCsr(certname))?.publicKeySha256 ?? 'none';
    } catch (error) {
      if (!(error instanceof RefusedInputError)) throw error;
      pending = undefined;
    }
    if (pending !== action.publicKeySha256) return this.logger.info('The pending CSR changed since it was read; leaving it to the next pass', { instanceId, certname });
    // DELETE certificate_status takes a certificate with it, unrevoked: only a CA that accepts
    // duplicate CSRs keeps one beside a pending CSR, and then the CSR stays.
    if ((await this.ports.puppet.holding(certname)).certificate) {
      return this.logger.warn('Not removing a pending CSR: a certificate is on file beside it (the CA accepts duplicate CSRs)', { instanceId, certname });
    }
    await this.ports.puppet.deleteRequest(certname);
    this.context.metrics.addMetric(METRIC.impostorCsrs, MetricUnit.Count, 1);
    this.logger.warn('Removed a certificate request the instance did not make', { instanceId, certname, reason: action.reason });
  }

  private async sign(action: Extract<Action, { kind: 'sign' }>): Promise<void> {
    const { instanceId, certname, checked } = action;
    // Ownership is recorded before the certificate exists, so no signed certificate is ever
    // unknown to the registry (which is what entitles the controller to purge it later), and
    // with it what was checked, so any later pass can still compare the certificate with it.
    if (!(await this.ports.registry.recordSigned(instanceId, certname, checked, this.now))) {
      return this.logger.warn('Not signing: the registry records this instance differently', { instanceId, certname });
    }
    try {
      await this.ports.puppet.sign(certname);
    } catch (error) {
      // The CA's own policy said no (alt names or extensions it disallows): retrying cannot change
      // that, so it is this instance's refusal, not a failed pass for everyone.
      // Only a 409 is the CA's policy: a 401/403 (auth.conf) or a 404 is the tier's problem, and
      // refusing every launch for it would turn it into a launch-and-terminate loop.
      if (!(error instanceof PuppetApiError) || error.status !== 409) throw error;
      await this.ports.registry.transition(instanceId, ['signed'], 'purged', this.now);
      return this.refuse({ kind: 'refuse', instanceId, certname, reasons: [`the CA refused to sign it: ${error.message}`], abandon: !action.reEnrollment });
    }
    await this.verify({ instanceId, certname, checked, launching: !action.reEnrollment }, action.reEnrollment ? 'Signed re-enrollment' : 'Signed');
  }

  /**
   * The CA signs the CSR it holds at that moment, which may not be the one checked: compare what
   * it issued with what was checked, and record the certificate (the entry is verified) or revoke
   * it. A CA that does not answer only delays this (the entry, unverified, goes no further; the
   * next pass asks again); a certificate it serves that cannot be read cannot be trusted.
   */
  private async verify(action: Omit<Extract<Action, { kind: 'verify' }>, 'kind'>, verified: string): Promise<void> {
    const { instanceId, certname, checked } = action;
    // Its key is signed now: a later enrollment must be matched against a report of its own.
    await this.ports.registry.consumeKeyReport(instanceId, checked.publicKeySha256);
    let issued: CertificateContents | undefined;
    try {
      issued = await this.ports.puppet.issuedCertificate(certname);
    } catch (error) {
      if (!(error instanceof RefusedInputError)) throw error;
      return this.revokeUnverified(action, `its certificate could not be read to check it (${error.message})`);
    }
    if (issued === undefined) return this.revokeUnverified(action, 'the CA has no certificate for it after signing');
    const problem = issuedProblem(certname, checked, issued);
    if (problem !== undefined) return this.revokeUnverified(action, problem);
    if (!(await this.ports.registry.recordIssued(instanceId, issued, this.now))) {
      return this.logger.warn('Certificate checked, but the registry entry changed meanwhile: not recorded', { instanceId, certname });
    }
    this.context.metrics.addMetric(METRIC.signed, MetricUnit.Count, 1);
    this.logger.info(verified, { instanceId, certname, serial: issued.serial.toString() });
  }

  /** Until this succeeds the entry stays unverified, so a later pass checks (and revokes) again. */
  private async revokeUnverified(action: Omit<Extract<Action, { kind: 'verify' }>, 'kind'>, problem: string): Promise<void> {
    const { instanceId, certname } = action;
    await this.ports.puppet.clean([certname]);
    await this.ports.registry.transition(instanceId, ['signed', 'converging', 'in-service'], 'purged', this.now);
    return this.refuse({ kind: 'refuse', instanceId, certname, reasons: [`${problem}; it was revoked`], abandon: action.launching });
  }

  /**
   * Claim, then take the claimed entries out of Puppet (each step recorded as it is done, and the
   * CA's certificate cleaned only while it is the entry's own), ask for the primary's run, mark
   * purged, complete terminations. A crash anywhere leaves claims that the next pass re-takes once
   * their lease runs out; it then does only the steps still missing.
   */
  private async purge(action: Extract<Action, { kind: 'purge' }>): Promise<void> {
    const staleBefore = new Date(this.now.getTime() - TIMING.purgeLeaseMs);
    const claimed = (
      await mapLimit(action.targets, ACTION_CONCURRENCY, async (target) => {
        const entry = await this.ports.registry.claimPurge(target.instanceId, this.now, staleBefore);
        return entry && { target, subject: purgeSubject(entry, this.now) };
      })
    ).filter((claim) => claim !== undefined);
    const skipped = action.targets.filter((target) => !claimed.some((claim) => claim.target === target));
    if (skipped.length > 0) this.logger.info('Purge claimed by another pass', { instanceIds: skipped.map((t) => t.instanceId) });
    if (claimed.length === 0) return;

    const certnames = [...new Set(claimed.map(({ subject }) => subject.certname))];
    const terminating = claimed.filter(({ target }) => target.completeTerminate).map(({ target }) => target);
    try {
      await removeFromPuppet(
        this.ports.puppet,
        claimed.map(({ subject }) => subject),
        {
          stepDone: async (subject, step) => {
            if (!(await this.ports.registry.recordPurgeStep(subject.instanceId, subject.startedAt, step, this.now))) {
              this.logger.warn('Purge step done, but the registry entry left that purge meanwhile', { instanceId: subject.instanceId, step });
            }
          },
          leftAlone: (subject, why) =>
            this.logger.warn('Purge left the CA alone: the certificate there is not this instance\'s', { instanceId: subject.instanceId, certname: subject.certname, why }),
        },
      );
      await this.requestRun(claimed.map(({ subject }) => subject.instanceId));
      await mapLimit(claimed, ACTION_CONCURRENCY, ({ subject }) => this.ports.registry.transition(subject.instanceId, ['purging'], 'purged', this.now));
    } catch (error) {
      if (terminating.length > 0) this.context.metrics.addMetric(METRIC.failed, MetricUnit.Count, terminating.length);
      throw error;
    }
    this.context.metrics.addMetric(METRIC.purged, MetricUnit.Count, claimed.length);
    this.logger.info('Purged', { certnames, reason: action.reason });
    await mapLimit(terminating, ACTION_CONCURRENCY, (target) => this.complete(target.instanceId, 'terminate', 'CONTINUE'));
  }

  private async complete(instanceId: string, hook: LifecycleHook, result: 'CONTINUE' | 'ABANDON'): Promise<void> {
    try {
      const outcome = await this.ports.group.completeLifecycleAction(instanceId, hook, result);
      if (outcome === 'completed') this.context.metrics.addMetric(METRIC.completed, MetricUnit.Count, 1);
      this.logger.info('Lifecycle action completed', { instanceId, hook, result, outcome });
    } catch (error) {
      this.context.metrics.addMetric(METRIC.failed, MetricUnit.Count, 1);
      throw error;
    }
  }

  // ---- the run record ------------------------------------------------------------------------

  private async requestRun(instanceIds: readonly string[]): Promise<void> {
    const now = this.now.toISOString();
    await this.mutateRun((run) =>
      instanceIds.every((id) => run.pending.includes(id)) ? undefined : { ...run, pending: union(run.pending, instanceIds), requestedAt: now },
    );
  }

  private async startRun(action: Extract<Action, { kind: 'start-run' }>): Promise<void> {
    const claimedAt = this.now.toISOString();
    const claimed = await this.mutateRun((run) => {
      if (action.retryOf ? run.job?.name !== action.retryOf : run.job) return undefined;
      const covers = union(run.job?.covers ?? [], run.pending);
      if (covers.length === 0) return undefined;
      return { ...run, pending: [], job: { claimedAt, covers, attempt: action.attempt } };
    });
    const job = claimed?.job;
    if (!job) return this.logger.debug("The primary's run already started or nothing left to run");
    let name: string;
    try {
      name = await this.ports.primaryRun.start(`compile-masters: ${job.covers.length} compile master change(s) (attempt ${job.attempt})`);
      // The id is the runner's word: it goes into the registry, the queue and the logs only if it
      // is the harmless shape every runner promises.
      if (!RUN_ID_PATTERN.test(name)) {
        throw new CompileMastersError(`The primary's runner answered a run id that ${RUN_ID_RULE}`, { hint: 'the run may have started; it is not followed, and the changes are offered to the next run' });
      }
    } catch (error) {
      // Not a failed run: the runner could not be asked. Give the changes back so the retry of
      // this trigger starts the run afresh.
      await this.mutateRun((run) =>
        run.job?.claimedAt === claimedAt && !run.job.name ? { ...run, job: undefined, pending: union(run.pending, job.covers) } : undefined,
      );
      if (error instanceof SecretMissingError) {
        // The RBAC token was never put (a first deploy): retrying the batch cannot help and would
        // only carry it toward the DLQ. The changes wait in the registry; the first scheduled
        // pass after the token is put starts the run, and the launches keep their heartbeats.
        this.context.metrics.addMetric(METRIC.secretsMissing, MetricUnit.Count, 1);
        return this.logger.error("The primary's run cannot start: its secret has no value", {
          secretArn: error.secretArn,
          problem: error.summary,
          fix: error.hint,
          waiting: job.covers,
        });
      }
      throw error;
    }
    await this.mutateRun((run) => (run.job?.claimedAt === claimedAt ? { ...run, job: { ...(run.job as RunJob), name } } : undefined));
    this.context.metrics.addMetric(METRIC.runsStarted, MetricUnit.Count, 1);
    this.logger.info("Started the primary's run", { runId: name, covers: job.covers, attempt: job.attempt, reason: action.reason });
    await this.ports.queue.sendRecheck(recheckMessage({ reason: 'follow-run', runId: name, attempt: 1 }), TIMING.followRunSeconds);
  }

  private async endRun(action: Extract<Action, { kind: 'end-run' }>): Promise<void> {
    const endedAt = this.now.toISOString();
    const ended = await this.mutateRun((run) =>
      run.job?.name === action.runId
        ? { ...run, job: undefined, last: { name: action.runId, outcome: action.outcome, covers: run.job.covers, endedAt } }
        : undefined,
    );
    if (!ended) return;
    if (action.outcome === 'finished') return this.logger.info("The primary's run finished", { runId: action.runId });
    this.context.metrics.addMetric(METRIC.runsFailed, MetricUnit.Count, 1);
    this.logger.error("The primary's run failed after retrying", {
      runId: action.runId,
      hint: "look at the run (the job in the PE console, or the command in Systems Manager's Run Command history), fix the primary, and run Puppet on it by hand",
    });
  }

  /**
   * Read-modify-write of the run record with optimistic versioning. `change` answers undefined
   * when there is nothing (left) to do. Answers the record written, or undefined.
   */
  private async mutateRun(change: (run: RunRecord) => Omit<RunRecord, 'version'> | undefined): Promise<Omit<RunRecord, 'version'> | undefined> {
    for (let attempt = 0; attempt < RUN_RECORD_ATTEMPTS; attempt++) {
      const run = await this.ports.registry.getRun();
      const next = change(run);
      if (!next) return undefined;
      if (await this.ports.registry.putRun(next, run.version)) return next;
    }
    throw new CompileMastersError(`The primary's run record kept changing during ${RUN_RECORD_ATTEMPTS} attempts to update it`, {
      hint: 'several passes are racing on it; the trigger will be retried',
    });
  }

  private get ports(): Ports {
    return this.context.ports;
  }

  private get logger(): ExecutionContext['logger'] {
    return this.context.logger;
  }

  private get now(): Date {
    return this.context.now;
  }
}

/** A claimed entry as its purge sees it; `now` only for a claim that has no start recorded. */
function purgeSubject(entry: RegistryEntry, now: Date): PurgeSubject {
  return {
    instanceId: entry.instanceId,
    certname: entry.certname,
    certificate: certificateIdentity(entry),
    startedAt: entry.purge?.startedAt ?? now.toISOString(),
    done: new Set((['ca', 'puppetdb'] as const).filter((step) => entry.purge?.[step] !== undefined)),
  };
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}

/**
 * Why the certificate the CA issued is not what was checked, if it is not: the same key, the
 * certname, DNS names among those checked (the CA may add the certname itself), nothing else, and
 * exactly the Puppet extensions checked.
 */
export function issuedProblem(certname: string, checked: CheckedRequest, issued: CertificateContents): string | undefined {
  if (issued.publicKeySha256 !== checked.publicKeySha256) return 'the certificate the CA issued is not for the key that was checked (the CSR was replaced meanwhile)';
  if (issued.commonName !== certname) return `the certificate the CA issued names ${describeUntrusted(issued.commonName ?? '(no single CN)')}`;
  const allowed = new Set([certname, ...checked.dnsAltNames]);
  const extra = [...issued.dnsAltNames.filter((name) => !allowed.has(name)), ...issued.otherAltNames];
  if (extra.length > 0) return `the certificate the CA issued carries alt names that were not checked: ${describeUntrusted(extra.join(', '))}`;
  const issuedExtensions = JSON.stringify(Object.entries(issued.puppetExtensions).sort());
  if (issuedExtensions !== JSON.stringify(Object.entries(checked.puppetExtensions).sort())) {
    return 'the certificate the CA issued carries other Puppet extensions than the ones checked';
  }
  return undefined;
}
