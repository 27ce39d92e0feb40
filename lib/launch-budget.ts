/**
 * The launch budget: how long a new compile master may take from its launch to serving, and how
 * the waits inside that time fit together. One rule, imported by the stack (context validation,
 * agent.json), the controller (when it stops heartbeating a launch) and the node agent (its
 * default waits), so none of them can drift apart.
 *
 * The launch hook holds an instance for heartbeatTimeoutSeconds after its last heartbeat. The
 * controller heartbeats a launch that is making progress until the ceiling, measured from EC2's
 * launch time; after that the hook times out and ABANDONs. The node agent's own waits (CA,
 * certificate, the Puppet run that installs Puppet Server, its health) must end inside the
 * ceiling, leaving the rest for what nobody times: the bootstrap's package installs (dnf, PE's
 * install.bash) and the controller's signing.
 */

/** launchCeilingMinutes: the context key's range and default. */
export const LAUNCH_CEILING_MINUTES = { default: 90, min: 30, max: 2_880 } as const;

/** Heartbeats go out on scheduled passes: a hook must outlive this many missed ones. */
export const MISSED_PASSES_SURVIVED = 2;

/** The share of the ceiling the node agent's waits may add up to; the rest is the margin. */
const AGENT_SHARE = 5 / 6;

/**
 * How the agent's share is split. At the default ceiling these give 300 / 1800 / 1800 / 600 s,
 * the waits measured enough on the lab's and PE's first runs.
 */
const WEIGHTS = { caUnavailableSeconds: 1, certificateSeconds: 6, puppetRunSeconds: 6, serverHealthySeconds: 2 } as const;

/** The node agent's waits during a launch (node-agent/src/config.ts `timeouts`), in seconds. */
export type NodeAgentWaits = { readonly [K in keyof typeof WEIGHTS]: number };

export function nodeAgentWaits(launchCeilingSeconds: number): NodeAgentWaits {
  const totalWeight = Object.values(WEIGHTS).reduce((sum, weight) => sum + weight, 0);
  const unit = (launchCeilingSeconds * AGENT_SHARE) / totalWeight;
  const share = (weight: number) => Math.floor(unit * weight);
  return {
    caUnavailableSeconds: share(WEIGHTS.caUnavailableSeconds),
    certificateSeconds: share(WEIGHTS.certificateSeconds),
    puppetRunSeconds: share(WEIGHTS.puppetRunSeconds),
    serverHealthySeconds: share(WEIGHTS.serverHealthySeconds),
  };
}

export interface LaunchBudget {
  launchCeilingMinutes: number;
  heartbeatTimeoutSeconds: number;
  reconcileIntervalMinutes: number;
}

/** What is inconsistent, keyed by the context key to change, with the fix in the message. */
export function launchBudgetProblems(budget: LaunchBudget): Array<{ key: keyof LaunchBudget; message: string }> {
  const { launchCeilingMinutes, heartbeatTimeoutSeconds, reconcileIntervalMinutes } = budget;
  const problems: Array<{ key: keyof LaunchBudget; message: string }> = [];
  // Last heartbeat at t, passes at t+I and t+2I missed: the next one comes at t+3I.
  const survive = (MISSED_PASSES_SURVIVED + 1) * reconcileIntervalMinutes * 60;
  if (heartbeatTimeoutSeconds <= survive) {
    problems.push({
      key: 'heartbeatTimeoutSeconds',
      message:
        `is ${heartbeatTimeoutSeconds} s, so a launch is abandoned after ${MISSED_PASSES_SURVIVED} missed scheduled passes ` +
        `(every ${reconcileIntervalMinutes} min): raise it above ${survive}${lowerInterval(heartbeatTimeoutSeconds)}`,
    });
  }
  if (launchCeilingMinutes * 60 <= heartbeatTimeoutSeconds) {
    problems.push({
      key: 'launchCeilingMinutes',
      message: `is ${launchCeilingMinutes} min, not longer than one heartbeat timeout (${heartbeatTimeoutSeconds} s), so it never limits a launch: raise it above ${Math.ceil(heartbeatTimeoutSeconds / 60)} or lower heartbeatTimeoutSeconds`,
    });
  }
  return problems;
}

function lowerInterval(heartbeatTimeoutSeconds: number): string {
  const longest = Math.ceil(heartbeatTimeoutSeconds / ((MISSED_PASSES_SURVIVED + 1) * 60)) - 1;
  return longest >= 1 ? ` or lower reconcileIntervalMinutes to at most ${longest}` : '';
}
