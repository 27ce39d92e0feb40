import { describe, expect, it } from 'vitest';
import { SPOT_NOTICE_SECONDS } from '../../../lab/memory-cloud';
import { METRIC } from '../../../lambdas/controller/vocabulary';
import { Harness } from './harness';

/**
 * A spot interruption on the in-memory cloud, with the controller's real planner and executor: the
 * group terminates the instance through the terminate hook and launches a replacement; EC2 ends
 * the instance two minutes after the notice whether or not the hook was completed. Either way the
 * interrupted node is purged once, nobody else is, and the replacement enrolls.
 */
describe('a spot interruption', () => {
  function certnameOf(h: Harness, instanceId: string): string {
    const certname = h.cloud.instances.get(instanceId)?.privateDnsName;
    if (!certname) throw new Error(`no such instance ${instanceId}`);
    return certname;
  }

  /** What the node agent and the primary do for a new member, as Harness.tier does for several. */
  async function enroll(h: Harness, instanceId: string): Promise<void> {
    await h.settle();
    h.nodeSubmitsCsr(instanceId);
    await h.settle();
    h.nodeEnrolled(instanceId);
    await h.deliver(100);
    h.advance(10);
    await h.settle(15);
    h.runsEnd('finished');
    await h.settle();
  }

  /** Instances the controller found gone without their terminate action completed (drift). */
  function goneWithoutHook(h: Harness): unknown[] {
    return h.logger.lines
      .filter((line) => line.message === 'Drift' && (line.attributes as { detail?: string }).detail === 'gone without a completed terminate lifecycle action')
      .map((line) => (line.attributes as { instanceId?: string }).instanceId);
  }

  /** The interrupted node purged exactly once, every other node untouched, the replacement serving. */
  function expectOnlyInterruptedPurged(h: Harness, interrupted: string, others: readonly string[], replacement: string): void {
    const certname = certnameOf(h, interrupted);
    expect(h.puppet.cleans.flat()).toEqual([certname]);
    expect(h.puppet.revoked).toEqual([certname]);
    expect(h.puppet.calls.filter((call) => call === 'deactivate')).toHaveLength(1);
    expect([...h.puppet.deactivated.keys()]).toEqual([certname]);
    expect(h.cloud.registry.peek(interrupted)?.state).toBe('purged');
    expect(h.metrics.get(METRIC.purged)).toBe(1);
    for (const id of [...others, replacement]) {
      expect(h.puppet.state(certnameOf(h, id))).toBe('signed');
      expect(h.cloud.registry.peek(id)?.state).toBe('in-service');
      expect(h.cloud.group.stateOf(id)).toBe('InService');
    }
    expect(h.cloud.group.stateOf(interrupted)).toBeUndefined();
    expect(h.cloud.instances.get(interrupted)?.state).toBe('terminated');
    expect(h.cloud.group.pendingActions()).toEqual([]);
  }

  it('is purged through the terminate hook when the controller completes it within the notice', async () => {
    const h = new Harness();
    const [interrupted, other] = (await h.tier(2)) as [string, string];
    const noticeAt = h.now;

    const { replacement } = await h.cloud.interruptSpot(interrupted);
    expect(h.cloud.group.stateOf(interrupted)).toBe('Terminating:Wait');
    expect(h.cloud.group.stateOf(replacement.instanceId)).toBe('Pending:Wait');
    await h.deliver(100);

    const completion = h.cloud.group.completions.find((c) => c.instanceId === interrupted && c.hook === 'terminate');
    expect(completion).toMatchObject({ hook: 'terminate', result: 'CONTINUE' });
    expect(completion!.at.getTime() - noticeAt.getTime()).toBeLessThan(SPOT_NOTICE_SECONDS * 1000);
    // The purge's run of the primary; then the end of the notice finds the instance already
    // terminated: EC2 has nothing left to do.
    await h.settle(15);
    h.runsEnd('finished');
    await h.settle(SPOT_NOTICE_SECONDS + 1);
    await enroll(h, replacement.instanceId);

    expectOnlyInterruptedPurged(h, interrupted, [other], replacement.instanceId);
    expect(goneWithoutHook(h)).toEqual([]);
  });

  it('is purged from the EC2 state change and the schedule when it dies before the controller completes the hook', async () => {
    const h = new Harness();
    const [interrupted, other] = (await h.tier(2)) as [string, string];

    // The CA is unreachable for the whole notice: every pass fails and is retried, changing nothing.
    h.puppet.down = true;
    const { replacement } = await h.cloud.interruptSpot(interrupted);
    await h.settle(SPOT_NOTICE_SECONDS + 30);
    expect(h.cloud.instances.get(interrupted)?.state).toBe('terminated');
    expect(h.cloud.group.stateOf(interrupted)).toBeUndefined();
    expect(h.cloud.events.filter((e) => e.detail['instance-id'] === interrupted).map((e) => e.detail.state)).toEqual(['shutting-down', 'terminated']);
    expect(h.puppet.cleans).toEqual([]);

    // The CA is back: the retried events and the scheduled reconcile find the instance gone.
    h.puppet.down = false;
    h.schedule();
    await h.settle(15);
    expect(h.cloud.registry.peek(interrupted)?.state).toBe('purged');
    h.runsEnd('finished');
    await h.settle();
    await enroll(h, replacement.instanceId);

    expect(h.cloud.group.completions.filter((c) => c.instanceId === interrupted && c.hook === 'terminate')).toEqual([]);
    expect(goneWithoutHook(h)).toContain(interrupted);
    expectOnlyInterruptedPurged(h, interrupted, [other], replacement.instanceId);
  });
});
