import { mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DRAIN_MARGIN_SECONDS, IN_FLIGHT_WAIT_MAX_SECONDS, READINESS_CHECK, drainSeconds, inFlightWaitSeconds } from '../../../lib/readiness-check';
import { clearBootMarker, readBootMarker, writeBootMarker, type BootObservation } from '../../../node-agent/src/boot-marker';
import { parseConfig } from '../../../node-agent/src/config';
import { decideReadiness, drainPlan, type DrainInput } from '../../../node-agent/src/readiness';

const marker = { certname: 'ip-10-0-1-23.eu-west-1.compute.internal', instanceId: 'i-0123456789abcdef0', completedAt: '2026-01-01T00:00:00.000Z' };
const complete: BootObservation = { kind: 'complete', marker };

describe('decideReadiness', () => {
  it('is ready only when the boot step completed, Puppet Server runs and the daemon is not stopping', () => {
    expect(decideReadiness({ stopping: false, boot: complete, serverRunning: true })).toEqual({
      ready: true,
      reason: `ready: ${marker.certname} is enrolled and its Puppet Server is running`,
    });
  });

  it.each([
    ['stopping, even with everything else fine', { stopping: true, boot: complete, serverRunning: true }, 'draining: this node is stopping'],
    ['the boot step has not completed', { stopping: false, boot: { kind: 'pending' } as const }, "the node agent's boot step has not completed for this identity"],
    ['the marker is unreadable', { stopping: false, boot: { kind: 'unreadable', detail: 'EACCES' } as const }, "cannot read the boot step's marker: EACCES"],
    ['Puppet Server is not running (a wedged JVM)', { stopping: false, boot: complete, serverRunning: false }, 'the local Puppet Server does not answer /status/v1/simple with "running"'],
    ['Puppet Server was not asked', { stopping: false, boot: complete }, 'the local Puppet Server does not answer /status/v1/simple with "running"'],
  ])('is not ready when %s, saying why in one line', (_, observation, reason) => {
    const verdict = decideReadiness(observation);
    expect(verdict).toEqual({ ready: false, reason });
    expect(verdict.reason).not.toContain('\n');
  });
});

describe('drain timing', () => {
  it('is computed from the health check: unhealthy threshold × interval + timeout + margin', () => {
    expect(drainSeconds()).toBe(READINESS_CHECK.unhealthyThresholdCount * READINESS_CHECK.intervalSeconds + READINESS_CHECK.timeoutSeconds + DRAIN_MARGIN_SECONDS);
    expect(drainSeconds()).toBe(45);
    // Tuning the check moves the drain with it.
    expect(drainSeconds({ ...READINESS_CHECK, intervalSeconds: 30, unhealthyThresholdCount: 2, timeoutSeconds: 10 })).toBe(80);
  });

  it('then waits for connected agents as long as the NLB keeps them (its deregistration delay), never past the bound', () => {
    expect(inFlightWaitSeconds(60)).toBe(60);
    expect(inFlightWaitSeconds(0)).toBe(0);
    expect(inFlightWaitSeconds(3600)).toBe(IN_FLIGHT_WAIT_MAX_SECONDS);
    const minimal = { primaryServer: 'puppet.example.com', queueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/q', region: 'eu-west-1' };
    expect(parseConfig(minimal, 'x').inFlightWaitSeconds).toBe(IN_FLIGHT_WAIT_MAX_SECONDS);
    expect(() => parseConfig({ ...minimal, inFlightWaitSeconds: IN_FLIGHT_WAIT_MAX_SECONDS + 1 }, 'x')).toThrow(/inFlightWaitSeconds/);
  });

  it('is the agent configuration\'s default, which may only be shortened', () => {
    const base = { primaryServer: 'puppet.example.com', queueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/q', region: 'eu-west-1' };
    expect(parseConfig(base, 'x')).toMatchObject({ drainSeconds: 45, readinessPort: 8141, bootMarkerPath: '/run/compile-master-agent/boot-complete.json' });
    expect(parseConfig({ ...base, drainSeconds: 4 }, 'x').drainSeconds).toBe(4);
    expect(() => parseConfig({ ...base, drainSeconds: 46 }, 'x')).toThrow(/drainSeconds/);
  });

  const drainMs = 45_000;
  const at = (seconds: number) => 1_000_000 + seconds * 1000;
  const plan = (input: Partial<DrainInput>) =>
    drainPlan({ startedAt: at(0), lastReadyAt: at(100), now: at(100), drainMs, lifecycle: { kind: 'state', state: 'InService' }, ...input });

  it('waits the whole drain after a "ready" answer at the moment of the stop (a reboot: InService)', () => {
    expect(plan({}).waitMs).toBe(45_000);
    expect(plan({}).reason).toMatch(/^draining 45 s so the load balancer marks this target unhealthy while Puppet Server still serves/);
  });

  it('runs the drain from the last "ready" answer, which is when the NLB may last have seen it healthy', () => {
    expect(plan({ lastReadyAt: at(90) }).waitMs).toBe(35_000);
    expect(plan({ lastReadyAt: at(55) }).waitMs).toBe(0);
    expect(plan({ lastReadyAt: at(20) })).toEqual({ waitMs: 0, reason: 'no drain needed: the last "ready" answer 80 s ago, longer than the 45 s the load balancer needs' });
  });

  it('counts from its own start when it never answered "ready": a predecessor may have', () => {
    expect(plan({ lastReadyAt: undefined, startedAt: at(90) }).waitMs).toBe(35_000);
    expect(plan({ lastReadyAt: undefined, startedAt: at(0) }).waitMs).toBe(0);
  });

  it.each([
    [{ kind: 'not-found' } as const],
    [{ kind: 'unavailable', error: new Error('timed out') } as const],
    [{ kind: 'state', state: 'Standby' } as const],
    [{ kind: 'state', state: 'Warmed:Stopped' } as const],
  ])('drains whenever instance metadata does not say Terminated (%j)', (lifecycle) => {
    expect(plan({ lifecycle }).waitMs).toBe(45_000);
  });

  it('skips the wait when the group is terminating the instance: it deregistered and drained it already', () => {
    const skipped = plan({ lifecycle: { kind: 'state', state: 'Terminated' } });
    expect(skipped.waitMs).toBe(0);
    expect(skipped.reason).toMatch(/^no drain: target lifecycle state is Terminated/);
  });
});

describe('boot marker', () => {
  it('is pending when absent, complete once written, pending again once cleared; no staging file is left', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'boot-marker-'));
    const path = join(dir, 'run', 'boot-complete.json');
    expect(await readBootMarker(path)).toEqual({ kind: 'pending' });
    // The agent's unit runs with UMask=0027.
    const umask = process.umask(0o027);
    try {
      await writeBootMarker(path, marker);
    } finally {
      process.umask(umask);
    }
    expect(await readBootMarker(path)).toEqual(complete);
    // The readiness daemon runs as another, unprivileged user.
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect(await readdir(join(dir, 'run'))).toEqual(['boot-complete.json']);
    await clearBootMarker(path);
    await clearBootMarker(path);
    expect(await readBootMarker(path)).toEqual({ kind: 'pending' });
  });

  it('is unreadable, not complete, when the file is not a marker', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'boot-marker-')), 'boot-complete.json');
    await writeFile(path, '{"certname":"x"');
    expect(await readBootMarker(path)).toMatchObject({ kind: 'unreadable', detail: expect.stringContaining('is not a boot marker') });
    await writeFile(path, JSON.stringify({ ...marker, certname: 'not a name' }));
    expect((await readBootMarker(path)).kind).toBe('unreadable');
  });

  it('refuses to write a marker that would not read back', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'boot-marker-')), 'boot-complete.json');
    await expect(writeBootMarker(path, { ...marker, instanceId: 'vm-1' })).rejects.toThrow();
    await expect(readFile(path)).rejects.toThrow(/ENOENT/);
  });
});
