import type { Drift, Observed, Plan, Trigger } from './model';
import { LAUNCHING } from './vocabulary';

/** What deciding on heartbeats looks at: nothing of it needs the Puppet side or its secrets. */
export type LaunchView = Pick<Observed, 'now' | 'members' | 'instances' | 'registry' | 'damaged' | 'keyReports'>;

export interface LaunchCeiling {
  /** lib/launch-budget.ts: past this age from EC2's launch time, a launch gets no more heartbeats. */
  launchCeilingSeconds: number;
}

/**
 * Heartbeats go out on scheduled passes and on follow-ups of the primary's run, never because a
 * node agent spoke: a burst of its messages must not multiply calls to Auto Scaling.
 */
export function heartbeatsDue(triggers: readonly Trigger[]): boolean {
  return triggers.some((t) => t.kind === 'schedule' || (t.kind === 'recheck' && t.reason === 'follow-run'));
}

/**
 * Every launch still making progress keeps its hook alive, whatever it waits for (its CSR,
 * signing, its first Puppet run, the primary's run): a member in Pending:Wait that has shown it is
 * alive — its node agent reported a key, or the controller enrolled it — whose registry item is
 * sound, that is not stalled, not ended by this very pass (`ending`: refused, completed, stalled),
 * and younger than the ceiling. Past the ceiling it is drift, and the hook's timeout ABANDONs it.
 * A launch that never reports (its bootstrap died: EFS, packages) gets none, so the hook's own
 * timeout (heartbeatTimeoutSeconds, which covers the bootstrap's installs) ABANDONs it and the
 * group launches a replacement without waiting for the ceiling.
 */
export function launchHeartbeats(
  view: LaunchView,
  triggers: readonly Trigger[],
  { launchCeilingSeconds }: LaunchCeiling,
  ending: ReadonlySet<string>,
): { instanceIds: string[]; drift: Drift[] } {
  const quarantined = new Set(view.damaged.flatMap((damaged) => (damaged.instanceId ? [damaged.instanceId] : [])));
  const stalled = new Set(view.registry.filter((entry) => entry.state === 'stalled').map((entry) => entry.instanceId));
  const enrolled = new Set(view.registry.filter((entry) => entry.state !== 'purged').map((entry) => entry.instanceId));
  const due = heartbeatsDue(triggers);
  const instanceIds: string[] = [];
  const drift: Drift[] = [];
  for (const { instanceId, lifecycleState } of view.members) {
    if (lifecycleState !== LAUNCHING || quarantined.has(instanceId) || stalled.has(instanceId) || ending.has(instanceId)) continue;
    // Without EC2's launch time the ceiling cannot be told: wait for a pass that sees it.
    const launchTime = view.instances.get(instanceId)?.launchTime;
    if (!launchTime) continue;
    const ageSeconds = (view.now.getTime() - launchTime.getTime()) / 1000;
    if (ageSeconds >= launchCeilingSeconds) {
      drift.push({
        instanceId,
        detail: `launch exceeded its ceiling (${Math.floor(ageSeconds / 60)} min since launch, ceiling ${Math.floor(launchCeilingSeconds / 60)} min): no more heartbeats, its launch hook times out and abandons it`,
      });
    } else if (due && (enrolled.has(instanceId) || view.keyReports.has(instanceId))) {
      instanceIds.push(instanceId);
    }
  }
  return { instanceIds, drift };
}

/**
 * The pass while the lifecycle client certificate is not there yet: nothing can be signed or
 * purged, but the launches waiting for it are not at fault and keep their hooks.
 */
export function planWithoutSecrets(view: LaunchView, triggers: readonly Trigger[], ceiling: LaunchCeiling): Plan {
  const { instanceIds, drift } = launchHeartbeats(view, triggers, ceiling, new Set());
  return {
    actions: instanceIds.length > 0 ? [{ kind: 'heartbeat', instanceIds }] : [],
    drift,
    damagedEntries: view.damaged.length,
    notes: [],
  };
}
