import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { execute, type ExecutionContext } from './execute';
import type { Plan, Trigger } from './model';
import { observe } from './observe';
import { plan, type PlannerPolicy } from './planner';
import { METRIC } from './vocabulary';

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
  if (triggers.length > 0 && triggers.every((trigger) => trigger.kind === 'instance-state')) {
    // Every instance of the account reports its state changes here; only the ones the
    // registry knows are worth a pass.
    const known = await Promise.all(triggers.map((trigger) => ports.registry.get(trigger.instanceId)));
    if (known.every((entry) => entry === undefined)) {
      logger.debug('EC2 state changes of instances the controller never enrolled; nothing to do');
      return undefined;
    }
  }
  // What an instance proved about its key is kept before anything else: the CSR it speaks of may
  // only be read by a later pass.
  for (const trigger of triggers) {
    if (trigger.kind === 'node-agent' && trigger.keyReport) await ports.registry.recordKeyReport(trigger.instanceId, trigger.keyReport);
    // So is its word that it just booted: this pass may already judge how long it has been unhealthy.
    if (trigger.kind === 'node-agent' && trigger.bootedAt) await ports.registry.recordBooted(trigger.instanceId, trigger.bootedAt);
  }
  const now = context.clock();
  const observed = await observe(ports, now);
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
