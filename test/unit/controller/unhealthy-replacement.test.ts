import { describe, expect, it } from 'vitest';
import { METRIC } from '../../../lambdas/controller/vocabulary';
import { Harness } from './harness';
import { POLICY } from './support';

const WINDOW_SECONDS = POLICY.replaceUnhealthyAfterSeconds;

/** A scheduled pass after `seconds`, as the reconcile schedule would run one. */
async function passAfter(h: Harness, seconds: number): Promise<void> {
  h.advance(seconds);
  h.schedule();
  await h.settle();
}

/**
 * The group trusts EC2 health only; the controller replaces a serving node through the group
 * (SetInstanceHealth) when its Puppet Server stays unhealthy past the window without a reboot, and
 * the terminate hook's purge follows.
 */
describe('serving nodes whose Puppet Server stays unhealthy', () => {
  it('a reboot within the window keeps the node; unhealthy a whole window after that boot, it is terminated and purged', async () => {
    const h = new Harness();
    const [sick, well] = (await h.tier(2)) as [string, string];
    const certname = h.cloud.instances.get(sick)?.privateDnsName as string;
    h.puppet.cleans.length = 0;

    h.cloud.health.set(certname, false);
    await passAfter(h, 60);
    const since = h.cloud.registry.peek(sick)?.unhealthySince;
    expect(since).toBe(h.now.toISOString());

    // It reboots ten minutes into the streak; its Puppet Server is still starting when the window since the streak's start ends.
    h.advance(WINDOW_SECONDS - 300);
    h.notify(sick, 'booted');
    await h.settle();
    expect(h.cloud.registry.peek(sick)?.bootedAt).toBe(h.now.toISOString());
    await passAfter(h, 600);
    expect(h.cloud.group.stateOf(sick)).toBe('InService');
    expect(h.cloud.registry.peek(sick)).toMatchObject({ state: 'in-service', unhealthySince: since });
    expect(h.cloud.callsOf('group.setUnhealthy')).toEqual([]);

    // A whole window since that boot, still unhealthy: replaced through the group, purged at its terminate hook.
    await passAfter(h, WINDOW_SECONDS - 600);
    expect(h.cloud.callsOf('group.setUnhealthy')).toEqual([[sick]]);
    expect(h.cloud.group.stateOf(sick)).toBeUndefined();
    expect(h.cloud.instances.get(sick)?.state).toBe('terminated');
    expect(h.cloud.group.completions.filter((c) => c.hook === 'terminate')).toMatchObject([{ instanceId: sick, result: 'CONTINUE' }]);
    expect(h.cloud.registry.peek(sick)?.state).toBe('purged');
    expect(h.puppet.cleans).toEqual([[certname]]);
    expect(h.metrics.get(METRIC.replacedUnhealthy)).toBe(1);
    expect(h.logger.lines).toContainEqual(expect.objectContaining({ level: 'error', message: expect.stringMatching(/^Replacing a compile master/) }));

    expect(h.cloud.group.stateOf(well)).toBe('InService');
    expect(h.cloud.registry.peek(well)).toMatchObject({ state: 'in-service' });
    expect(h.cloud.registry.peek(well)?.unhealthySince).toBeUndefined();
  });

  it('a Puppet Server restart that ends within the window only records and then ends the streak', async () => {
    const h = new Harness();
    const [id] = (await h.tier(1)) as [string];
    const certname = h.cloud.instances.get(id)?.privateDnsName as string;

    h.cloud.health.set(certname, false);
    await passAfter(h, 60);
    expect(h.cloud.registry.peek(id)?.unhealthySince).toBeDefined();
    h.cloud.health.set(certname, true);
    await passAfter(h, WINDOW_SECONDS - 120);
    expect(h.cloud.registry.peek(id)?.unhealthySince).toBeUndefined();

    // A later failure starts a new streak: the old one's time does not count.
    h.cloud.health.set(certname, false);
    await passAfter(h, 300);
    await passAfter(h, WINDOW_SECONDS - 60);
    expect(h.cloud.group.stateOf(id)).toBe('InService');
    expect(h.cloud.callsOf('group.setUnhealthy')).toEqual([]);
    expect(h.metrics.get(METRIC.replacedUnhealthy)).toBe(0);
  });

  it('marks a node unhealthy once, however many passes run before the group replaces it', async () => {
    const h = new Harness();
    const [sick] = (await h.tier(2)) as [string, string];
    const certname = h.cloud.instances.get(sick)?.privateDnsName as string;
    h.cloud.group.replacesUnhealthyAtOnce = false;
    h.cloud.health.set(certname, false);
    await passAfter(h, 60);
    await passAfter(h, WINDOW_SECONDS);
    expect(h.cloud.callsOf('group.setUnhealthy')).toEqual([[sick]]);
    // The group has not acted yet: it is still InService, reported Unhealthy.
    expect(h.cloud.group.stateOf(sick)).toBe('InService');
    await passAfter(h, 60);
    await passAfter(h, 60);
    expect(h.cloud.callsOf('group.setUnhealthy')).toEqual([[sick]]);
    expect(h.metrics.get(METRIC.replacedUnhealthy)).toBe(1);
    expect(h.logger.lines.filter((line) => line.message === 'Drift')).toEqual([]);
    // Ten minutes on and the group still has not acted (its ReplaceUnhealthy suspended): drift says so.
    await passAfter(h, 600);
    expect(h.cloud.callsOf('group.setUnhealthy')).toEqual([[sick]]);
    expect(h.logger.lines.filter((line) => line.message === 'Drift').map((line) => line.attributes)).toContainEqual(
      expect.objectContaining({ instanceId: sick, detail: expect.stringMatching(/^marked unhealthy in its group \d+ min ago and still in service/) }),
    );

    h.cloud.group.replaceUnhealthy();
    await h.settle();
    expect(h.cloud.group.stateOf(sick)).toBeUndefined();
    expect(h.cloud.registry.peek(sick)?.state).toBe('purged');
  });
});
