import { certnameProblem, describeUntrusted } from '../../lib/certname';
import { csrProblems, type CsrPolicy } from './csr-policy';
import { launchHeartbeats, type LaunchCeiling } from './launch-heartbeats';
import type { Action, CheckedRequest, Drift, Ec2Instance, Member, Observed, Plan, PurgeTarget, RegistryEntry, RunRecord, Trigger } from './model';
import { DRAINING, IN_SERVICE, isGoneEc2State, LAUNCHING, LEAVING, SERVING, TERMINATING, TIMING } from './vocabulary';

export interface PlannerPolicy extends CsrPolicy, LaunchCeiling {
  protectedCertnames: ReadonlySet<string>;
  /** How long a serving node's Puppet Server may stay unhealthy, counted from its last boot, before it is replaced. */
  replaceUnhealthyAfterSeconds: number;
}


/**
 * The pure core: observed state in, actions out. It never performs I/O and never reads a clock, so
 * every transition and refusal is a table row in its tests. Every trigger gets the same full
 * reconcile; triggers only decide whether a waiting chain of rechecks continues.
 */
export function plan(observed: Observed, triggers: readonly Trigger[], policy: PlannerPolicy): Plan {
  return new Planner(observed, triggers, policy).plan();
}

/**
 * Signed, but the issued certificate was never compared with what was checked (a pass died in
 * between): it goes no further until it is. Entries from before the checked request was recorded
 * were compared by the pass that signed them.
 */
export function awaitsVerification(entry: RegistryEntry): entry is RegistryEntry & { checked: CheckedRequest } {
  return entry.checked !== undefined && entry.issued === undefined;
}

class Planner {
  private readonly actions: Action[] = [];
  private readonly drift: Drift[] = [];
  private readonly notes: string[] = [];
  private readonly purgeTargets: PurgeTarget[] = [];
  /** Owned entries whose node is healthy and waits for (or is covered by) the primary's run. */
  private readonly converging: RegistryEntry[] = [];
  /** Nodes to hand to the primary's next run. */
  private readonly toConverge: string[] = [];
  private readonly entries: Map<string, RegistryEntry>;
  private readonly members: Map<string, Member>;
  /** Instances whose registry item is damaged: nothing is done for them. */
  private readonly quarantined: Set<string>;
  private needsRunStart = false;

  constructor(
    private readonly observed: Observed,
    private readonly triggers: readonly Trigger[],
    private readonly policy: PlannerPolicy,
  ) {
    this.entries = new Map(observed.registry.map((entry) => [entry.instanceId, entry]));
    this.members = new Map(observed.members.map((member) => [member.instanceId, member]));
    this.quarantined = new Set(observed.damaged.flatMap((damaged) => (damaged.instanceId ? [damaged.instanceId] : [])));
  }

  plan(): Plan {
    for (const damaged of this.observed.damaged) {
      const detail = `registry item ${describeUntrusted(damaged.key)} quarantined: ${damaged.problem}; nothing is done for it until it is repaired or deleted`;
      this.addDrift(damaged.instanceId ? { instanceId: damaged.instanceId, detail } : { detail });
    }
    for (const member of this.observed.members) this.member(member);
    for (const entry of this.observed.registry) {
      if (!this.members.has(entry.instanceId)) this.nonMember(entry);
    }
    this.outsiders();
    this.servingHealth();
    this.purges();
    this.run();
    this.heartbeats();
    if (this.toConverge.length > 0) {
      this.act({ kind: 'converge', instanceIds: this.toConverge });
      this.needsRunStart = true;
    }
    if (this.needsRunStart) this.recheck('start-run', TIMING.runQuietSeconds);
    return { actions: this.actions, drift: this.drift, notes: this.notes, damagedEntries: this.observed.damaged.length };
  }

  // ---- members -------------------------------------------------------------------------------

  private member(member: Member): void {
    const { instanceId, lifecycleState } = member;
    // Neither signing nor purging nor completing a lifecycle action can be right when what the
    // controller knows of the instance cannot be read: leave it to the operator (it is drift).
    if (this.quarantined.has(instanceId)) return this.note(`${instanceId}: ${lifecycleState}, its registry item is damaged; left alone`);
    const entry = this.entries.get(instanceId);
    if (lifecycleState === LAUNCHING) return this.launching(instanceId, entry);
    if (lifecycleState === TERMINATING) {
      if (entry && this.purgeable(entry)) return this.purge(entry, true);
      if (entry?.state === 'purging') return this.note(`${instanceId}: terminating, its purge is in progress elsewhere`);
      return this.act({
        kind: 'complete-terminate',
        instanceId,
        reason: entry ? 'already purged' : 'not enrolled by the controller: nothing of it to purge',
      });
    }
    if (lifecycleState === DRAINING) return this.note(`${instanceId}: draining from the load balancer; purged at its terminate hook`);
    if (LEAVING.has(lifecycleState)) {
      if (entry && this.purgeable(entry)) this.purge(entry, false);
      return;
    }
    if (SERVING.has(lifecycleState)) return this.serving(instanceId, entry);
    this.note(`${instanceId}: ${lifecycleState}, nothing to do`);
  }

  private launching(instanceId: string, entry: RegistryEntry | undefined): void {
    const instance = this.observed.instances.get(instanceId);
    const certname = instance?.privateDnsName?.toLowerCase();
    if (!instance || !certname) return this.note(`${instanceId}: launching, EC2 does not report its private DNS name yet`);
    const refusal = this.certnameRefusal(certname);
    if (refusal) return this.refuse(instanceId, certname, [refusal], true);
    if (entry && entry.certname !== certname) {
      return this.refuse(instanceId, certname, [`the registry holds ${entry.certname} for this instance`], true);
    }
    if (entry?.state === 'stalled') return this.note(`${instanceId}: the primary's run failed for good; left to the launch hook's default result`);
    if (entry?.state === 'purging') {
      if (this.purgeable(entry)) this.purge(entry, false);
      return;
    }

    const cert = this.observed.certs.get(certname) ?? 'absent';
    if (cert === 'requested') return this.csr(instanceId, certname, false, true);
    const owned = entry?.state === 'purged' ? undefined : entry;
    if (cert === 'absent') {
      if (owned) return this.certificateLost(owned, 'absent');
      this.stuckCheck(instance, 'its CSR');
      return;
    }
    if (!owned) {
      const why = cert === 'signed' ? 'was signed outside the controller' : 'is revoked but still on file (not owned by the controller: clean it by hand)';
      return this.refuse(instanceId, certname, [`a certificate for ${certname} ${why}`], true);
    }
    if (cert === 'revoked') return this.certificateLost(owned, 'revoked');
    this.ownedWithCertificate(instance, owned, true);
  }

  private serving(instanceId: string, entry: RegistryEntry | undefined): void {
    if (!entry) return this.addDrift({ instanceId, detail: 'serving member not enrolled by the controller' });
    const cert = this.observed.certs.get(entry.certname) ?? 'absent';
    if (entry.state === 'stalled') return this.addDrift({ instanceId, certname: entry.certname, detail: 'serving although its launch stalled' });
    if (entry.state === 'purging') {
      if (this.purgeable(entry)) this.purge(entry, false);
      return;
    }
    if (entry.state === 'purged') {
      if (cert === 'requested') return this.csr(instanceId, entry.certname, true, false);
      if (cert !== 'absent') return this.addDrift({ instanceId, certname: entry.certname, detail: `purged, yet the CA has a ${cert} certificate` });
      return this.note(`${instanceId}: purged and serving; waiting for it to re-enroll`);
    }
    if (cert === 'requested') {
      // The certificate went away behind our back (a certificate still on file, even next to a
      // pending CSR, reads as signed or revoked) and the node asks again: record that it is gone
      // first, so the re-enrollment is signed by the rule for purged nodes.
      this.addDrift({ instanceId, certname: entry.certname, detail: 'certificate removed outside the controller' });
      this.act({ kind: 'forget', instanceId, reason: 'its certificate is gone and it asks for a new one' });
      return this.recheck('await-node', TIMING.awaitNodeSeconds, instanceId);
    }
    if (cert !== 'signed') return this.certificateLost(entry, cert);
    const instance = this.observed.instances.get(instanceId);
    if (instance) this.ownedWithCertificate(instance, entry, false);
  }

  /** An owned, signed node on its way in: wait for its Puppet Server, then for the primary's run. */
  private ownedWithCertificate(instance: Ec2Instance, entry: RegistryEntry, launching: boolean): void {
    const { instanceId } = entry;
    if (awaitsVerification(entry)) {
      this.act({ kind: 'verify', instanceId, certname: entry.certname, checked: entry.checked, launching });
      // The node agent's "enrolled" may have come and gone while it was unverified: look at it
      // again soon (a bounded chain, as for any node being waited for).
      const attempt = this.promptFor(instanceId) ?? 0;
      if (attempt < TIMING.awaitNodeAttempts) this.recheck('await-node', TIMING.awaitNodeSeconds, instanceId, attempt + 1);
      return;
    }
    if (entry.state === 'converging') {
      this.converging.push(entry);
      return;
    }
    if (entry.state === 'in-service') {
      // The launch was completed already; AWS may lag, and repeating the completion is harmless.
      if (launching) this.act({ kind: 'launched', instanceId, completeLaunch: true });
      return;
    }
    if (this.observed.health.get(instanceId) === true) {
      this.toConverge.push(instanceId);
      return;
    }
    this.note(`${instanceId}: signed, waiting for its Puppet Server to answer`);
    if (launching) this.stuckCheck(instance, 'its Puppet Server');
    const attempt = this.promptFor(instanceId);
    if (attempt !== undefined && attempt < TIMING.awaitNodeAttempts) {
      this.recheck('await-node', TIMING.awaitNodeSeconds, instanceId, attempt + 1);
    }
  }

  private certificateLost(entry: RegistryEntry, cert: 'absent' | 'revoked'): void {
    this.addDrift({ instanceId: entry.instanceId, certname: entry.certname, detail: `certificate ${cert} at the CA outside the controller` });
    this.purge(entry, false);
  }

  /**
   * DESIGN rule 2: sign only what this instance should ask for; otherwise refuse, and ABANDON a
   * launch. The key binding comes first: a CSR not made with the key the instance reported is not
   * the instance's, so it can neither be signed nor fail the instance's launch; it is removed so
   * the instance can submit its own.
   */
  private csr(instanceId: string, certname: string, reEnrollment: boolean, abandon: boolean): void {
    const observation = this.observed.csrs.get(certname);
    if (!observation) return this.note(`${instanceId}: its CSR vanished before it could be read`);
    const report = this.observed.keyReports.get(instanceId)?.publicKeySha256;
    // A report of a key already signed and verified for it is an echo of that enrollment (its
    // csr-submitted may arrive after the signing consumed the report), not a new one.
    const signedBefore = this.entries.get(instanceId);
    const reported = signedBefore?.issued && signedBefore.checked?.publicKeySha256 === report ? undefined : report;
    if (reported === undefined) {
      this.note(`${instanceId}: a CSR for ${certname} is pending; waiting for the instance to report its key`);
      const instance = this.observed.instances.get(instanceId);
      if (abandon && instance) this.stuckCheck(instance, 'the report of its key');
      return;
    }
    if (!observation.ok || observation.facts.publicKeySha256 !== reported) {
      const why = observation.ok ? 'its key is not the one the instance reported' : `it is unreadable (${observation.problem}), so not the instance's`;
      return this.act({ kind: 'remove-csr', instanceId, certname, publicKeySha256: observation.ok ? observation.facts.publicKeySha256 : undefined, reason: why });
    }
    const problems = csrProblems(observation.facts, { certname, instanceId }, this.policy);
    if (problems.length > 0) return this.refuse(instanceId, certname, problems, abandon);
    // Refusals above still happen: they only close doors.
    if (this.observed.signingSuspended) return this.addDrift({ instanceId, certname, detail: `CSR not signed: ${this.observed.signingSuspended}` });
    const { publicKeySha256, dnsAltNames, puppetExtensions } = observation.facts;
    this.act({ kind: 'sign', instanceId, certname, checked: { publicKeySha256, dnsAltNames, puppetExtensions }, reEnrollment });
  }

  // ---- instances that left the group ---------------------------------------------------------

  private nonMember(entry: RegistryEntry): void {
    if (entry.state === 'purged') return;
    const instance = this.observed.instances.get(entry.instanceId);
    const gone = !instance || isGoneEc2State(instance.state);
    if (!gone) {
      return this.addDrift({ instanceId: entry.instanceId, certname: entry.certname, detail: `owned but no longer a member (EC2 state ${instance.state})` });
    }
    if (!this.purgeable(entry)) return this.note(`${entry.instanceId}: gone, its purge is in progress elsewhere`);
    if (entry.state !== 'purging') {
      this.addDrift({ instanceId: entry.instanceId, certname: entry.certname, detail: 'gone without a completed terminate lifecycle action' });
    }
    this.purge(entry, false);
  }

  /**
   * DESIGN rule 7: an instance outside the group asking to be signed is refused out loud, so the
   * operator sees who tried; its CSR stays unsigned and nothing else happens.
   */
  private outsiders(): void {
    const asking = new Set(this.triggers.flatMap((t) => (t.kind === 'node-agent' && t.event === 'csr-submitted' && !this.members.has(t.instanceId) ? [t.instanceId] : [])));
    for (const instanceId of asking) {
      this.act({ kind: 'refuse', instanceId, reasons: [`${instanceId} is not a member of the group: its certificate request stays unsigned`], abandon: false });
    }
  }

  // ---- health of serving nodes ---------------------------------------------------------------

  /**
   * The group trusts EC2's status checks only, so a reboot or a Puppet Server restart never costs
   * a node (the load balancer's own checks keep agents off it meanwhile). The controller replaces
   * an owned InService node whose Puppet Server stayed unhealthy for the whole window since the
   * later of the streak's start and its last boot: a node that rebooted within the window is
   * given the window again. A node that keeps rebooting is replaced once its streak (never broken
   * by a healthy answer) reaches twice the window, so a crash loop cannot keep it forever.
   */
  private servingHealth(): void {
    const now = this.observed.now.getTime();
    const windowMs = this.policy.replaceUnhealthyAfterSeconds * 1000;
    const due: Array<{ entry: RegistryEntry; reason: string; overdueMs: number }> = [];
    let probed = 0;
    let healthyNodes = 0;
    for (const entry of this.observed.registry) {
      if (entry.state !== 'in-service') continue;
      const member = this.members.get(entry.instanceId);
      const healthy = this.observed.health.get(entry.instanceId);
      if (member?.lifecycleState !== IN_SERVICE || healthy === undefined) {
        // Standby, say: a streak from before it left service says nothing about its return.
        if (member && entry.unhealthySince !== undefined && member.lifecycleState !== IN_SERVICE && SERVING.has(member.lifecycleState)) {
          this.act({ kind: 'record-health', instanceId: entry.instanceId, unhealthySince: undefined });
        }
        continue;
      }
      probed += 1;
      if (healthy) {
        healthyNodes += 1;
        if (entry.unhealthySince !== undefined) this.act({ kind: 'record-health', instanceId: entry.instanceId, unhealthySince: undefined });
        continue;
      }
      if (entry.unhealthySince === undefined) {
        this.act({ kind: 'record-health', instanceId: entry.instanceId, unhealthySince: this.observed.now.toISOString() });
        this.note(`${entry.instanceId}: serving, its Puppet Server is unhealthy; replaced if it stays so for ${this.policy.replaceUnhealthyAfterSeconds} s`);
        continue;
      }
      const since = Date.parse(entry.unhealthySince);
      const booted = entry.bootedAt === undefined ? Number.NEGATIVE_INFINITY : Date.parse(entry.bootedAt);
      const streakMs = now - Math.max(since, booted);
      const minutes = (ms: number) => Math.round(ms / 60_000);
      if (streakMs >= windowMs) {
        due.push({ entry, reason: `its Puppet Server has been unhealthy for ${minutes(streakMs)} min without a reboot`, overdueMs: streakMs - windowMs });
      } else if (now - since >= 2 * windowMs) {
        due.push({ entry, reason: `its Puppet Server has been unhealthy for ${minutes(now - since)} min, through reboots`, overdueMs: now - since - 2 * windowMs });
      } else {
        this.note(`${entry.instanceId}: serving, its Puppet Server unhealthy since ${entry.unhealthySince}${entry.bootedAt ? `, booted at ${entry.bootedAt}` : ''}`);
      }
    }
    if (due.length === 0) return;
    // Every serving node failing at once is a shared cause (the controller's own path to them, a
    // bad change from the primary): new nodes would fail the same way, so a person must look.
    if (probed > 1 && healthyNodes === 0) {
      return this.addDrift({ detail: `every serving compile master's Puppet Server has been unhealthy past the window (${due.map(({ entry }) => entry.instanceId).join(', ')}); none is replaced while none is healthy` });
    }
    for (const { entry, reason, overdueMs } of due) {
      // Already handed to the group, which has not acted yet: asking again would count it twice.
      // The group acts within a minute or two; far longer means it will not (ReplaceUnhealthy suspended).
      if (this.members.get(entry.instanceId)?.healthStatus === 'Unhealthy') {
        if (overdueMs >= TIMING.groupReplacesUnhealthyMs) {
          this.addDrift({ instanceId: entry.instanceId, detail: `marked unhealthy in its group ${Math.round(overdueMs / 60_000)} min ago and still in service: is the group's ReplaceUnhealthy process suspended?` });
        } else this.note(`${entry.instanceId}: marked unhealthy in its group; waiting for the group to replace it`);
        continue;
      }
      const refusal = this.certnameRefusal(entry.certname);
      if (refusal) {
        this.addDrift({ instanceId: entry.instanceId, detail: `not replaced although unhealthy: ${refusal}` });
        continue;
      }
      this.act({ kind: 'replace-unhealthy', instanceId: entry.instanceId, certname: entry.certname, reason });
    }
  }

  // ---- purges --------------------------------------------------------------------------------

  private purgeable(entry: RegistryEntry): boolean {
    if (entry.state === 'purged') return false;
    if (entry.state !== 'purging') return true;
    const claimedAt = entry.claimedAt ? Date.parse(entry.claimedAt) : 0;
    return this.observed.now.getTime() - claimedAt > TIMING.purgeLeaseMs;
  }

  private purge(entry: RegistryEntry, completeTerminate: boolean): void {
    this.purgeTargets.push({ instanceId: entry.instanceId, certname: entry.certname, completeTerminate });
  }

  /** DESIGN rule 1 again, on the way out: only owned, unprotected certnames no live instance still holds. */
  private purges(): void {
    const targets: PurgeTarget[] = [];
    for (const target of this.purgeTargets) {
      const refusal = this.certnameRefusal(target.certname);
      const holder = this.liveHolder(target);
      if (refusal) {
        this.addDrift({ instanceId: target.instanceId, detail: `registry entry not purged: ${refusal}` });
        if (target.completeTerminate) this.act({ kind: 'complete-terminate', instanceId: target.instanceId, reason: `not purged: ${refusal}` });
      } else if (holder) {
        this.act({ kind: 'forget', instanceId: target.instanceId, reason: `${target.certname} now belongs to live instance ${holder}` });
        if (target.completeTerminate) this.act({ kind: 'complete-terminate', instanceId: target.instanceId, reason: 'its certname is in use by another instance' });
      } else {
        targets.push(target);
      }
    }
    if (targets.length === 0) return;
    this.act({ kind: 'purge', targets, reason: 'owned certificates of instances that are leaving, gone, or lost their certificate' });
    this.needsRunStart = true;
  }

  /** EC2 reuses private addresses, so a certname may already be another live instance's. */
  private liveHolder(target: PurgeTarget): string | undefined {
    for (const other of this.observed.registry) {
      if (other.instanceId === target.instanceId || other.certname !== target.certname || other.state === 'purged') continue;
      const member = this.members.get(other.instanceId);
      if (member && !LEAVING.has(member.lifecycleState) && member.lifecycleState !== TERMINATING && member.lifecycleState !== DRAINING) return other.instanceId;
      const instance = this.observed.instances.get(other.instanceId);
      if (!member && instance && !isGoneEc2State(instance.state)) return other.instanceId;
    }
    return undefined;
  }

  // ---- the primary's run ---------------------------------------------------------------------

  private run(): void {
    const { run, runState } = this.observed;
    const now = this.observed.now.getTime();
    const current = run.job;
    if (current && !current.name) {
      if (now - Date.parse(current.claimedAt) > TIMING.runClaimTimeoutMs) {
        this.act({ kind: 'reset-run', claimedAt: current.claimedAt, reason: 'a pass claimed the run but never started it' });
        this.needsRunStart = true;
      }
      return this.waitingForRun(run, false);
    }
    if (current?.name) {
      // 'missing': the runner no longer knows the run, so it will never finish. Unreachable is
      // only this pass's ignorance: the run goes on being followed until it times out.
      const state = runState?.kind === 'state' ? runState.state : runState?.kind === 'missing' ? 'missing' : 'unknown';
      const timedOut = now - Date.parse(current.claimedAt) > TIMING.runTimeoutMs;
      if (state === 'finished') {
        for (const entry of this.converging) {
          if (current.covers.includes(entry.instanceId)) this.launched(entry);
        }
        this.act({ kind: 'end-run', runId: current.name, outcome: 'finished' });
        if (run.pending.length > 0) this.needsRunStart = true;
        return this.waitingForRun(run, true, current.covers);
      }
      if (state === 'failed' || state === 'missing' || timedOut) {
        if (current.attempt < TIMING.runAttempts) {
          const outcome = state === 'failed' ? 'failed' : state === 'missing' ? 'is unknown to the runner' : 'timed out';
          this.act({ kind: 'start-run', attempt: current.attempt + 1, retryOf: current.name, reason: `run ${current.name} ${outcome}; retrying` });
          return this.waitingForRun(run, false);
        }
        const stalled = this.converging.filter((entry) => current.covers.includes(entry.instanceId)).map((entry) => entry.instanceId);
        if (stalled.length > 0) this.act({ kind: 'stall', instanceIds: stalled, reason: `the primary's run failed ${current.attempt} times (run ${current.name})` });
        this.act({ kind: 'end-run', runId: current.name, outcome: 'failed' });
        if (run.pending.length > 0) this.needsRunStart = true;
        return this.waitingForRun(run, true, current.covers);
      }
      const following = this.triggers.some((t) => t.kind === 'recheck' && t.reason === 'follow-run' && t.runId === current.name);
      if (following) {
        const attempt = Math.max(...this.triggers.map((t) => (t.kind === 'recheck' && t.reason === 'follow-run' ? t.attempt : 0)));
        this.recheck('follow-run', TIMING.followRunSeconds, undefined, attempt + 1, current.name);
      }
      return this.waitingForRun(run, false);
    }
    if (run.pending.length > 0) {
      const quietFor = now - (run.requestedAt ? Date.parse(run.requestedAt) : 0);
      if (quietFor >= TIMING.runQuietSeconds * 1000) {
        this.act({ kind: 'start-run', attempt: 1, reason: `changes waiting for the primary: ${run.pending.join(', ')}` });
      } else if (this.triggers.some((t) => t.kind === 'recheck' && t.reason === 'start-run')) {
        // More changes came in since that recheck was sent: wait out the new quiet period. (Any
        // other pass leaves it to the recheck the pass that added the changes sent.)
        this.needsRunStart = true;
      }
    }
    this.waitingForRun(run, false);
  }

  /**
   * Converging nodes not settled above: covered by a run still to come (their launches keep their
   * heartbeats, see heartbeats()), completed by the last finished run, or lost track of (ask again).
   */
  private waitingForRun(run: RunRecord, settled: boolean, settledCovers: readonly string[] = []): void {
    for (const entry of this.converging) {
      const { instanceId } = entry;
      if (settled && settledCovers.includes(instanceId)) continue;
      const waiting = run.pending.includes(instanceId) || (run.job?.covers.includes(instanceId) ?? false);
      if (waiting) continue;
      if (run.last?.outcome === 'finished' && run.last.covers.includes(instanceId)) {
        this.launched(entry);
      } else {
        this.toConverge.push(instanceId);
      }
    }
  }

  /** One heartbeat action for every launch making progress that this pass does not end. */
  private heartbeats(): void {
    const ending = new Set(
      this.actions.flatMap((action) => {
        if (action.kind === 'refuse' && action.abandon) return [action.instanceId];
        if (action.kind === 'launched' && action.completeLaunch) return [action.instanceId];
        if (action.kind === 'stall') return action.instanceIds;
        return [];
      }),
    );
    const { instanceIds, drift } = launchHeartbeats(this.observed, this.triggers, this.policy, ending);
    for (const item of drift) this.addDrift(item);
    if (instanceIds.length > 0) this.act({ kind: 'heartbeat', instanceIds });
  }

  private launched(entry: RegistryEntry): void {
    const launching = this.members.get(entry.instanceId)?.lifecycleState === LAUNCHING;
    this.act({ kind: 'launched', instanceId: entry.instanceId, completeLaunch: launching });
  }

  // ---- helpers -------------------------------------------------------------------------------

  private certnameRefusal(certname: string): string | undefined {
    const problem = certnameProblem(certname);
    if (problem) return `certname ${describeUntrusted(certname)} ${problem}`;
    if (this.policy.protectedCertnames.has(certname)) return `${certname} is a protected certname`;
    return undefined;
  }

  private refuse(instanceId: string, certname: string, reasons: string[], abandon: boolean): void {
    this.act({ kind: 'refuse', instanceId, certname, reasons, abandon });
  }

  private stuckCheck(instance: Ec2Instance, waitingFor: string): void {
    const age = instance.launchTime ? this.observed.now.getTime() - instance.launchTime.getTime() : 0;
    if (age > TIMING.stuckLaunchMs) {
      this.addDrift({ instanceId: instance.instanceId, detail: `launch waiting for ${waitingFor} for ${Math.round(age / 60_000)} min` });
    }
  }

  /** The attempt number if this pass was prompted about the instance (node agent or a recheck). */
  private promptFor(instanceId: string): number | undefined {
    let attempt: number | undefined;
    for (const trigger of this.triggers) {
      if (trigger.kind === 'node-agent' && trigger.instanceId === instanceId) attempt = Math.max(attempt ?? 0, 0);
      if (trigger.kind === 'recheck' && trigger.reason === 'await-node' && trigger.instanceId === instanceId) attempt = Math.max(attempt ?? 0, trigger.attempt);
    }
    return attempt;
  }

  private recheck(reason: 'start-run' | 'follow-run' | 'await-node', delaySeconds: number, instanceId?: string, attempt = 1, runId?: string): void {
    const duplicate = this.actions.some((a) => a.kind === 'recheck' && a.reason === reason && a.instanceId === instanceId && a.runId === runId);
    if (!duplicate) this.act({ kind: 'recheck', delaySeconds, reason, attempt, ...(instanceId ? { instanceId } : {}), ...(runId ? { runId } : {}) });
  }

  private act(action: Action): void {
    this.actions.push(action);
  }

  private addDrift(drift: Drift): void {
    this.drift.push(drift);
  }

  private note(note: string): void {
    this.notes.push(note);
  }
}
