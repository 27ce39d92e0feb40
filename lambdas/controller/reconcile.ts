import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { mapLimit } from '../../lib/concurrency';
import { PuppetUnavailableError, SecretMissingError } from '../../lib/errors';
import { execute, type ExecutionContext, type Log, type MetricsSink } from './execute';
import { planWithoutSecrets, type LaunchCeiling } from './launch-heartbeats';
import type { Plan, Trigger } from './model';
import { observe } from './observe';
import { plan, type PlannerPolicy } from './planner';
import type { Ports } from './ports';
import { LAUNCHING, METRIC } from './vocabulary';

export interface ControllerContext extends Omit<ExecutionContext, 'now'> {
  policy: PlannerPolicy;
  clock: () => Date;
}

/**
 * One pass: observe everything, plan, execute. Whatever triggered it, the pass looks at the whole
 * group, so a lost, late, repeated or out-of-order event changes nothing but timing. Answers the
 * plan it carried out (undefined when the triggers were not about this group at all); throws when
 * an action failed, so the triggers are delivered again.
 */
export async function reconcile(context: ControllerContext, triggers: readonly Trigger[]): Promise<Plan | undefined> {
  const { ports, logger } = context;
  if (!(await concernsGroup(ports, logger, triggers))) return undefined;
  await keepInstanceReports(ports, triggers);
  const now = context.clock();
  const observed = await observe(ports, now).catch(async (error: unknown) => {
    // The CA or PuppetDB is down (a primary's upgrade or restart): nothing can be signed or
    // purged, but launches that were converging are not at fault. Without heartbeats the hook
    // would ABANDON them after its timeout and the group would launch again, in a loop, until the
    // primary answers. The batch still fails, so its messages come back.
    if (error instanceof PuppetUnavailableError) {
      await heartbeatWaitingLaunches({ ...context, ceiling: context.policy }, triggers, `the Puppet side (${error.server}) to answer`).catch(
        (heartbeatError: unknown) => logger.error('Heartbeats for waiting launches failed too', { error: heartbeatError }),
      );
    }
    throw error;
  });
  if (observed.signingSuspended) {
    logger.error('Signing suspended: no certificate request is signed this pass', { reason: observed.signingSuspended });
    context.metrics.addMetric(METRIC.signingSuspended, MetricUnit.Count, 1);
  }
  const result = plan(observed, triggers, context.policy);
  logger.info('Reconcile', {
    triggers: triggers.map(describeTrigger),
    members: observed.members.length,
    actions: result.actions.map((action) => action.kind),
    drift: result.drift.length,
  });
  await execute(result, { ports, logger, metrics: context.metrics, now });
  return result;
}

/**
 * The handler's pass: the full reconcile once the client certificate can be read (`connect`),
 * else the pass without secrets. Any other failure to read it (access denied, throttling) throws,
 * so the batch is delivered again.
 */
export async function withClientCertificate<T>(
  connect: () => Promise<ControllerContext>,
  then: { ready: (context: ControllerContext) => Promise<T>; missing: (error: SecretMissingError) => Promise<T> },
): Promise<T> {
  let context: ControllerContext;
  try {
    context = await connect();
  } catch (error) {
    if (error instanceof SecretMissingError) return then.missing(error);
    throw error;
  }
  return then.ready(context);
}

/** What the pass without secrets (and the heartbeats of a pass whose Puppet side is down) may use: AWS only. */
export interface SecretlessContext {
  ports: Pick<Ports, 'group' | 'instances' | 'registry'>;
  ceiling: LaunchCeiling;
  logger: Log;
  metrics: MetricsSink;
  clock: () => Date;
}

/**
 * While the client certificate secret is empty or missing (a first deploy before `secrets put`),
 * nothing can be signed or purged, but the messages are acknowledged rather than retried toward
 * the DLQ: the scheduled pass picks everything up once the secret is put. Launches waiting for it
 * are not at fault, so they keep their heartbeats up to the ceiling; key reports are kept for the
 * signing to come.
 */
export async function reconcileWithoutSecrets(context: SecretlessContext, triggers: readonly Trigger[], missing: SecretMissingError): Promise<Plan | undefined> {
  const { ports, logger, metrics } = context;
  if (!(await concernsGroup(ports, logger, triggers))) return undefined;
  logger.error('The lifecycle client certificate secret has no value: nothing is signed or purged until it is put', {
    secretArn: missing.secretArn,
    problem: missing.summary,
    fix: `npx compile-masters secrets put --stack <stack> --cert … --key … --ca … (fills ${missing.secretArn}); the next scheduled pass picks everything up`,
  });
  metrics.addMetric(METRIC.secretsMissing, MetricUnit.Count, 1);
  await keepInstanceReports(ports, triggers);
  return heartbeatWaitingLaunches(context, triggers, 'the client certificate secret');
}

/**
 * AWS only: heartbeats the launches that show they are alive and are below the launch ceiling
 * (lambdas/controller/launch-heartbeats.ts), and reports as drift those past it.
 */
async function heartbeatWaitingLaunches(context: SecretlessContext, triggers: readonly Trigger[], waitingFor: string): Promise<Plan> {
  const { ports, logger, metrics } = context;
  const [members, { entries: registry, damaged }] = await Promise.all([ports.group.members(), ports.registry.list()]);
  const launching = members.filter((member) => member.lifecycleState === LAUNCHING).map((member) => member.instanceId);
  const [instances, reports] = await Promise.all([
    ports.instances.describe(launching),
    Promise.all(launching.map(async (instanceId) => [instanceId, await ports.registry.keyReport(instanceId)] as const)),
  ]);
  const keyReports = new Map(reports.flatMap(([instanceId, report]) => (report ? [[instanceId, report] as const] : [])));
  const result = planWithoutSecrets({ now: context.clock(), members, instances, registry, damaged, keyReports }, triggers, context.ceiling);
  for (const drift of result.drift) logger.warn('Drift', { ...drift });
  metrics.addMetric(METRIC.drift, MetricUnit.Count, result.drift.length);
  for (const action of result.actions) {
    if (action.kind !== 'heartbeat') continue;
    await mapLimit(action.instanceIds, HEARTBEAT_CONCURRENCY, (instanceId) => ports.group.recordHeartbeat(instanceId, 'launch'));
    logger.info(`Heartbeat recorded for launches waiting for ${waitingFor}`, { instanceIds: action.instanceIds });
  }
  return result;
}

const HEARTBEAT_CONCURRENCY = 8;

/** Every instance of the account reports its state changes here; only the ones the registry knows are worth a pass. */
async function concernsGroup(ports: Pick<Ports, 'registry'>, logger: Log, triggers: readonly Trigger[]): Promise<boolean> {
  if (triggers.length === 0 || !triggers.every((trigger) => trigger.kind === 'instance-state')) return true;
  const known = await Promise.all(triggers.map((trigger) => ports.registry.get(trigger.instanceId)));
  if (known.some((entry) => entry !== undefined)) return true;
  logger.debug('EC2 state changes of instances the controller never enrolled; nothing to do');
  return false;
}

/**
 * What an instance proved about its key is kept before anything else: the CSR it speaks of may only
 * be read by a later pass. So is its word that it just booted: this pass may already judge how
 * long it has been unhealthy.
 */
async function keepInstanceReports(ports: Pick<Ports, 'registry'>, triggers: readonly Trigger[]): Promise<void> {
  for (const trigger of triggers) {
    if (trigger.kind !== 'node-agent') continue;
    if (trigger.keyReport) await ports.registry.recordKeyReport(trigger.instanceId, trigger.keyReport);
    if (trigger.bootedAt) await ports.registry.recordBooted(trigger.instanceId, trigger.bootedAt);
  }
}

function describeTrigger(trigger: Trigger): string {
  switch (trigger.kind) {
    case 'lifecycle':
      return `${trigger.transition} ${trigger.instanceId}`;
    case 'instance-state':
      return `${trigger.state} ${trigger.instanceId}`;
    case 'schedule':
      return 'schedule';
    case 'node-agent':
      return `${trigger.event} ${trigger.instanceId}`;
    case 'recheck':
      return `recheck ${trigger.reason}${trigger.instanceId ? ` ${trigger.instanceId}` : ''}${trigger.runId ? ` run ${trigger.runId}` : ''}`;
  }
}
