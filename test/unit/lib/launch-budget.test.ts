import { describe, expect, it } from 'vitest';
import { LAUNCH_CEILING_MINUTES, MISSED_PASSES_SURVIVED, launchBudgetProblems, nodeAgentWaits } from '../../../lib/launch-budget';
import { AgentConfigSchema } from '../../../node-agent/src/config';

const sum = (waits: Record<string, number>) => Object.values(waits).reduce((total, value) => total + value, 0);

describe("the launch budget: the node agent's waits", () => {
  it('are the measured waits at the default ceiling, and the node agent defaults to them', () => {
    expect(nodeAgentWaits(LAUNCH_CEILING_MINUTES.default * 60)).toEqual({ caUnavailableSeconds: 300, certificateSeconds: 1800, puppetRunSeconds: 1800, serverHealthySeconds: 600 });
    const agent = AgentConfigSchema.parse({ primaryServer: 'puppet.corp.example.com', queueUrl: 'https://sqs.us-west-2.amazonaws.com/1/q', region: 'us-west-2', dnsAltNames: [] });
    expect(agent.timeouts).toMatchObject(nodeAgentWaits(LAUNCH_CEILING_MINUTES.default * 60));
  });

  it.each([LAUNCH_CEILING_MINUTES.min, 45, LAUNCH_CEILING_MINUTES.default, 240, LAUNCH_CEILING_MINUTES.max])(
    'add up to at most 5/6 of a %i min ceiling: the rest is margin for the package installs and signing',
    (minutes) => {
      const waits = nodeAgentWaits(minutes * 60);
      expect(sum(waits)).toBeLessThanOrEqual((minutes * 60 * 5) / 6);
      expect(sum(waits)).toBeGreaterThan((minutes * 60 * 5) / 6 - 4);
      for (const seconds of Object.values(waits)) expect(Number.isInteger(seconds) && seconds > 0).toBe(true);
    },
  );

  it('grow with the ceiling', () => {
    const short = nodeAgentWaits(60 * 60);
    const long = nodeAgentWaits(120 * 60);
    for (const key of Object.keys(short) as Array<keyof typeof short>) expect(long[key]).toBeGreaterThan(short[key]);
  });
});

describe('the launch budget: consistency of the context keys', () => {
  const defaults = { launchCeilingMinutes: 90, heartbeatTimeoutSeconds: 1800, reconcileIntervalMinutes: 5 };

  it('accepts the defaults', () => {
    expect(launchBudgetProblems(defaults)).toEqual([]);
  });

  it(`refuses a heartbeat timeout that does not outlive ${MISSED_PASSES_SURVIVED} missed scheduled passes, and says both ways out`, () => {
    // Last heartbeat at t, passes at t+5 and t+10 missed, the next at t+15: 900 s is not enough.
    expect(launchBudgetProblems({ ...defaults, heartbeatTimeoutSeconds: 900 })).toEqual([
      { key: 'heartbeatTimeoutSeconds', message: expect.stringMatching(/after 2 missed scheduled passes \(every 5 min\): raise it above 900 or lower reconcileIntervalMinutes to at most 4$/) },
    ]);
    expect(launchBudgetProblems({ ...defaults, heartbeatTimeoutSeconds: 901 })).toEqual([]);
    expect(launchBudgetProblems({ ...defaults, reconcileIntervalMinutes: 10 })).toEqual([
      { key: 'heartbeatTimeoutSeconds', message: expect.stringContaining('raise it above 1800 or lower reconcileIntervalMinutes to at most 9') },
    ]);
  });

  it('offers no shorter interval when none would do', () => {
    const [problem] = launchBudgetProblems({ ...defaults, heartbeatTimeoutSeconds: 120, reconcileIntervalMinutes: 1 });
    expect(problem?.message).toMatch(/raise it above 180$/);
  });

  it('refuses a ceiling no longer than one heartbeat timeout: it would never limit a launch', () => {
    expect(launchBudgetProblems({ ...defaults, launchCeilingMinutes: 30 })).toEqual([
      { key: 'launchCeilingMinutes', message: expect.stringContaining('raise it above 30 or lower heartbeatTimeoutSeconds') },
    ]);
    expect(launchBudgetProblems({ ...defaults, launchCeilingMinutes: 31 })).toEqual([]);
  });
});
