import { describe, expect, it } from 'vitest';
import type { Action, RegistryEntry, Trigger } from '../../../lambdas/controller/model';
import { plan } from '../../../lambdas/controller/planner';
import { TIMING } from '../../../lambdas/controller/vocabulary';
import { NOW, POLICY, csrFacts, entry, keyOf, node, validCsr, world, type WorldSpec } from './support';

/**
 * Every transition and every refusal as a table row: a world, the triggers of the pass, and the
 * actions the planner must answer (in order; toMatchObject, so rows name only what matters).
 */
interface Row {
  name: string;
  world: WorldSpec;
  triggers?: Trigger[];
  actions: Array<{ kind: Action['kind'] } & Record<string, unknown>>;
  drift?: number;
}

const schedule: Trigger[] = [{ kind: 'schedule' }];
const minutesAgo = (minutes: number) => new Date(NOW.getTime() - minutes * 60_000).toISOString();
const n1 = node(1);
const n2 = node(2);
/** Every launch making progress keeps its hook alive on a scheduled pass. */
const beat = (...instanceIds: string[]) => ({ kind: 'heartbeat' as const, instanceIds });

function run(rows: Row[]) {
  it.each(rows.map((row) => [row.name, row] as const))('%s', (_name, row) => {
    const result = plan(world(row.world), row.triggers ?? schedule, POLICY);
    expect(result.actions).toMatchObject(row.actions);
    if (row.drift !== undefined) expect(result.drift).toHaveLength(row.drift);
  });
}

const refusedLaunch = (reason: RegExp) => [{ kind: 'refuse' as const, instanceId: n1.id, abandon: true, reasons: expect.arrayContaining([expect.stringMatching(reason)]) }];

describe('planner: launches (Pending:Wait)', () => {
  run([
    { name: 'no private DNS name from EC2 yet: wait', world: { members: [[1, 'Pending:Wait']], ec2: { 1: undefined } }, actions: [] },
    // Until its node agent reports a key, the hook's own timeout covers the bootstrap's installs:
    // a launch that never reports (EFS, packages) is abandoned then, not kept until the ceiling.
    { name: 'no CSR yet, nothing reported: wait, no heartbeat', world: { members: [[1, 'Pending:Wait']] }, actions: [], drift: 0 },
    { name: 'no CSR yet, its key reported: wait (heartbeat on the schedule)', world: { members: [[1, 'Pending:Wait']], reported: [1] }, actions: [beat(n1.id)], drift: 0 },
    {
      name: 'no CSR for longer than the stuck threshold: drift, still heartbeated below the ceiling',
      world: { members: [[1, 'Pending:Wait']], launchedMinutesAgo: TIMING.stuckLaunchMs / 60_000 + 5, reported: [1] },
      actions: [beat(n1.id)],
      drift: 1,
    },
    {
      name: 'valid CSR: sign it',
      world: { members: [[1, 'Pending:Wait']], certs: { 1: 'requested' }, csrs: { 1: validCsr(1) }, reported: [1] },
      actions: [{ kind: 'sign', instanceId: n1.id, certname: n1.certname, checked: { publicKeySha256: keyOf(n1.certname), dnsAltNames: csrFacts(1).dnsAltNames, puppetExtensions: csrFacts(1).puppetExtensions }, reEnrollment: false }, beat(n1.id)],
    },
    {
      name: 'valid CSR without pp_region, with the extra alt name: sign it',
      world: {
        members: [[1, 'Pending:Wait']],
        certs: { 1: 'requested' },
        csrs: { 1: { ok: true, facts: csrFacts(1, { dnsAltNames: [n1.certname, 'PUPPET.corp.example.com'], puppetExtensions: { pp_instance_id: n1.id, pp_role: 'compile_master' } }) } },
        reported: [1],
      },
      actions: [{ kind: 'sign', instanceId: n1.id }, beat(n1.id)],
    },
    {
      name: 'valid CSR of a node enrolled before (registry purged): sign as a first enrollment',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'purged')], certs: { 1: 'requested' }, csrs: { 1: validCsr(1) }, reported: [1] },
      actions: [{ kind: 'sign', instanceId: n1.id, reEnrollment: false }, beat(n1.id)],
    },
    {
      name: 'signed by us, Puppet Server not answering yet: wait',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'signed')], certs: { 1: 'signed' } },
      actions: [beat(n1.id)],
    },
    {
      name: 'signed by us, node agent says enrolled but not healthy yet: recheck the node soon',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'signed')], certs: { 1: 'signed' } },
      triggers: [{ kind: 'node-agent', instanceId: n1.id, event: 'enrolled' }],
      actions: [{ kind: 'recheck', reason: 'await-node', instanceId: n1.id, attempt: 1, delaySeconds: TIMING.awaitNodeSeconds }],
    },
    {
      name: 'still unhealthy after the last await-node recheck: stop asking (the hook times out)',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'signed')], certs: { 1: 'signed' } },
      triggers: [{ kind: 'recheck', reason: 'await-node', instanceId: n1.id, attempt: TIMING.awaitNodeAttempts }],
      actions: [],
    },
    {
      name: 'signed by us and healthy: converge (ask for the primary run)',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'signed')], certs: { 1: 'signed' }, healthy: [1] },
      actions: [beat(n1.id), { kind: 'converge', instanceIds: [n1.id] }, { kind: 'recheck', reason: 'start-run', delaySeconds: TIMING.runQuietSeconds }],
    },
    {
      name: 'converging, waiting in the pending run: nothing on an unrelated trigger',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'converging')], certs: { 1: 'signed' }, run: { pending: [n1.id], requestedAt: NOW.toISOString() } },
      triggers: [{ kind: 'lifecycle', transition: 'launch', instanceId: n1.id }],
      actions: [],
    },
    {
      name: 'completed already but AWS still says Pending:Wait: complete again (harmless)',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'in-service')], certs: { 1: 'signed' } },
      actions: [{ kind: 'launched', instanceId: n1.id, completeLaunch: true }],
    },
    {
      name: "stalled after the primary's run failed: left to the hook's default result",
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'stalled')], certs: { 1: 'signed' } },
      actions: [],
    },
    {
      name: 'our certificate vanished from the CA: purge what is left, the node re-enrolls',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'signed')], certs: { 1: 'absent' } },
      actions: [{ kind: 'purge', targets: [{ instanceId: n1.id, completeTerminate: false }] }, beat(n1.id), { kind: 'recheck', reason: 'start-run' }],
      drift: 1,
    },
    {
      name: 'our certificate was revoked outside the controller: purge (clean deletes it, so it can re-enroll)',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'in-service')], certs: { 1: 'revoked' } },
      actions: [{ kind: 'purge', targets: [{ instanceId: n1.id }] }, beat(n1.id), { kind: 'recheck' }],
      drift: 1,
    },
    {
      name: 'purge of it claimed by another pass moments ago: leave it',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'purging', { claimedAt: minutesAgo(1) })], certs: { 1: 'signed' } },
      actions: [beat(n1.id)],
    },
    {
      name: 'purge claimed long ago by a pass that died: take it over',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'purging', { claimedAt: minutesAgo(10) })], certs: { 1: 'signed' } },
      actions: [{ kind: 'purge', targets: [{ instanceId: n1.id }] }, beat(n1.id), { kind: 'recheck' }],
    },
  ]);
});

describe('planner: heartbeats keep every launch making progress alive, up to the launch ceiling', () => {
  const ceilingMinutes = POLICY.launchCeilingSeconds / 60;
  const waiting: WorldSpec = { members: [[1, 'Pending:Wait']], registry: [entry(1, 'signed')], certs: { 1: 'signed' } };
  const ceilingDrift = (result: ReturnType<typeof plan>) => result.drift.filter((d) => d.detail.startsWith('launch exceeded its ceiling'));
  run([
    { name: 'below the ceiling, on the schedule: heartbeat', world: { ...waiting, launchedMinutesAgo: ceilingMinutes - 1 }, actions: [beat(n1.id)] },
    {
      name: "below the ceiling, on a follow-up of the primary's run: heartbeat",
      world: waiting,
      triggers: [{ kind: 'recheck', reason: 'follow-run', runId: 'some-run', attempt: 2 }],
      actions: [beat(n1.id)],
    },
    {
      name: "a node agent's message: no heartbeat (a burst of them must not multiply calls)",
      world: waiting,
      triggers: [{ kind: 'node-agent', instanceId: n1.id, event: 'enrolled' }],
      actions: [{ kind: 'recheck', reason: 'await-node', instanceId: n1.id }],
    },
    {
      name: 'its key reported, before any CSR or registry item: heartbeat',
      world: { members: [[1, 'Pending:Wait']], launchedMinutesAgo: 50, reported: [1] },
      actions: [beat(n1.id)],
    },
    {
      name: 'installing, nothing reported yet: no heartbeat (the hook\'s timeout covers the bootstrap)',
      world: { members: [[1, 'Pending:Wait']], launchedMinutesAgo: 10 },
      actions: [],
    },
    { name: 'at the ceiling: no heartbeat, drift (the hook times out and abandons it)', world: { ...waiting, launchedMinutesAgo: ceilingMinutes }, actions: [] },
    {
      name: 'two launches, one past the ceiling: one heartbeat action for the other',
      world: { members: [[1, 'Pending:Wait'], [2, 'Pending:Wait']], launchedMinutesAgo: { 1: ceilingMinutes + 30, 2: 10 }, reported: [1, 2] },
      actions: [beat(n2.id)],
    },
    { name: 'stalled: no heartbeat', world: { ...waiting, registry: [entry(1, 'stalled')] }, actions: [] },
    {
      name: 'refused this pass: abandoned, no heartbeat',
      world: { members: [[1, 'Pending:Wait']], certs: { 1: 'signed' } },
      actions: refusedLaunch(/signed outside the controller/),
    },
    {
      name: 'its registry item is damaged: left alone, no heartbeat',
      world: { ...waiting, registry: [], damaged: [{ key: node(1).id, instanceId: n1.id, problem: 'not JSON' }] },
      actions: [],
    },
    { name: 'EC2 does not report it yet: no launch time, no heartbeat', world: { ...waiting, ec2: { 1: undefined } }, actions: [] },
    { name: 'serving members get none', world: { members: [[1, 'InService']], registry: [entry(1, 'in-service')], certs: { 1: 'signed' } }, actions: [] },
  ]);

  it('says how long past the launch the ceiling was, and what happens now', () => {
    const result = plan(world({ ...waiting, launchedMinutesAgo: ceilingMinutes + 7 }), schedule, POLICY);
    expect(ceilingDrift(result)).toEqual([
      { instanceId: n1.id, detail: `launch exceeded its ceiling (${ceilingMinutes + 7} min since launch, ceiling ${ceilingMinutes} min): no more heartbeats, its launch hook times out and abandons it` },
    ]);
  });

  it('reports drift from the ceiling on, not before', () => {
    const ceilingDrifts = (minutes: number) => ceilingDrift(plan(world({ ...waiting, launchedMinutesAgo: minutes }), schedule, POLICY)).length;
    expect([ceilingDrifts(ceilingMinutes - 1), ceilingDrifts(ceilingMinutes), ceilingDrifts(ceilingMinutes + 60)]).toEqual([0, 1, 1]);
  });

  it('reports the ceiling on any pass, not only scheduled ones', () => {
    const result = plan(world({ ...waiting, launchedMinutesAgo: ceilingMinutes + 1 }), [{ kind: 'node-agent', instanceId: n1.id, event: 'enrolled' }], POLICY);
    expect(ceilingDrift(result)).toHaveLength(1);
  });
});

describe('planner: signing suspended (the CA accepts duplicate CSRs, or could not say)', () => {
  const suspended = 'the CA accepts duplicate certificate requests (allow-duplicate-certs is on)';
  it('signs nothing, abandons nothing, and reports each CSR left unsigned as drift with the reason', () => {
    const result = plan(
      world({
        members: [[1, 'Pending:Wait'], [2, 'InService']],
        registry: [entry(2, 'purged')],
        certs: { 1: 'requested', 2: 'requested' },
        csrs: { 1: validCsr(1), 2: validCsr(2) },
        reported: [1, 2],
        signingSuspended: suspended,
      }),
      schedule,
      POLICY,
    );
    // The launch is not at fault: it keeps its hook.
    expect(result.actions).toEqual([beat(n1.id)]);
    expect(result.drift).toEqual([
      { instanceId: n1.id, certname: n1.certname, detail: `CSR not signed: ${suspended}` },
      { instanceId: n2.id, certname: n2.certname, detail: `CSR not signed: ${suspended}` },
    ]);
  });

  it('still refuses a forged CSR: refusals only close doors', () => {
    const forged = { ok: true as const, facts: csrFacts(1, { puppetExtensions: { pp_instance_id: node(9).id, pp_role: 'compile_master' } }) };
    const result = plan(world({ members: [[1, 'Pending:Wait']], certs: { 1: 'requested' }, csrs: { 1: forged }, reported: [1], signingSuspended: suspended }), schedule, POLICY);
    expect(result.actions).toMatchObject(refusedLaunch(/pp_instance_id/));
  });
});

describe('planner: refusals (DESIGN rule 2), each ABANDONs the launch and changes nothing else', () => {
  const forged = (overrides: Parameters<typeof csrFacts>[1]): WorldSpec => ({
    members: [[1, 'Pending:Wait']],
    certs: { 1: 'requested' },
    csrs: { 1: { ok: true, facts: csrFacts(1, overrides) } },
    // The instance's own CSR (its reported key), wrong in what it asks for.
    reported: [1],
  });
  run([
    { name: 'wrong pp_instance_id', world: forged({ puppetExtensions: { pp_instance_id: 'i-0ffffffffffffffff', pp_role: 'compile_master' } }), actions: refusedLaunch(/pp_instance_id "i-0ffffffffffffffff" is not/) },
    { name: 'no pp_instance_id', world: forged({ puppetExtensions: { pp_role: 'compile_master' } }), actions: refusedLaunch(/no pp_instance_id/) },
    { name: 'CN is not the instance certname', world: forged({ commonName: 'evil.corp.example.com' }), actions: refusedLaunch(/CN "evil.corp.example.com" is not/) },
    { name: 'signature does not verify', world: forged({ signatureValid: false }), actions: refusedLaunch(/signature/) },
    { name: 'an extra DNS alt name', world: forged({ dnsAltNames: [n1.certname, 'puppet'] }), actions: refusedLaunch(/DNS alt names outside the allowed set: "puppet"/) },
    { name: 'an IP alt name', world: forged({ otherAltNames: ['ip:10.0.0.1'] }), actions: refusedLaunch(/non-DNS alt names/) },
    { name: 'the configured pp_role missing', world: forged({ puppetExtensions: { pp_instance_id: n1.id } }), actions: refusedLaunch(/lacks the configured extension pp_role=compile_master/) },
    { name: 'a different pp_role', world: forged({ puppetExtensions: { pp_instance_id: n1.id, pp_role: 'primary' } }), actions: refusedLaunch(/pp_role "primary" is not/) },
    {
      name: 'an unconfigured Puppet extension (pp_auth_role)',
      world: forged({ puppetExtensions: { pp_instance_id: n1.id, pp_role: 'compile_master', pp_auth_role: 'pe_compiler' } }),
      actions: refusedLaunch(/not configured: "pp_auth_role"/),
    },
    { name: 'a non-Puppet X.509 extension (basicConstraints)', world: forged({ otherExtensionOids: ['2.5.29.19'] }), actions: refusedLaunch(/non-Puppet X.509 extensions/) },
    { name: 'pp_region of another region', world: forged({ puppetExtensions: { pp_instance_id: n1.id, pp_role: 'compile_master', pp_region: 'eu-west-1' } }), actions: refusedLaunch(/pp_region "eu-west-1"/) },
    {
      name: 'a certificate for the certname was signed outside the controller',
      world: { members: [[1, 'Pending:Wait']], certs: { 1: 'signed' } },
      actions: refusedLaunch(/signed outside the controller/),
    },
    {
      name: 'a revoked certificate the controller does not own blocks the certname',
      world: { members: [[1, 'Pending:Wait']], certs: { 1: 'revoked' } },
      actions: refusedLaunch(/revoked but still on file/),
    },
    {
      name: 'the registry holds another certname for the instance',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'signed', { certname: 'ip-10-9-9-9.us-west-2.compute.internal' })], certs: { 1: 'requested' }, csrs: { 1: validCsr(1) } },
      actions: refusedLaunch(/registry holds ip-10-9-9-9/),
    },
    {
      name: 'several problems are all reported',
      world: forged({ signatureValid: false, otherAltNames: ['ip:10.0.0.1'], commonName: 'x.example.com' }),
      actions: [{ kind: 'refuse', reasons: [expect.stringMatching(/signature/), expect.stringMatching(/CN/), expect.stringMatching(/non-DNS/)] }],
    },
  ]);

  it("refuses (ABANDONs) a launch whose EC2 certname is protected or hostile, without looking at the CA", () => {
    const protectedWorld = world({ members: [[1, 'Pending:Wait']] });
    protectedWorld.instances.get(n1.id)!.privateDnsName = 'primary.corp.example.com';
    expect(plan(protectedWorld, schedule, POLICY).actions).toMatchObject([
      { kind: 'refuse', instanceId: n1.id, abandon: true, reasons: ['primary.corp.example.com is a protected certname'] },
    ]);
    const hostile = world({ members: [[1, 'Pending:Wait']] });
    hostile.instances.get(n1.id)!.privateDnsName = '../etc%2Fpasswd';
    expect(plan(hostile, schedule, POLICY).actions).toMatchObject([{ kind: 'refuse', abandon: true, reasons: [expect.stringMatching(/not a lowercase DNS-style name/)] }]);
  });

  it('never signs or abandons for an instance that is not a member, whatever the CA holds; its request is refused in the log only', () => {
    const result = plan(world({ ec2: { 1: 'running' }, certs: { 1: 'requested' }, csrs: { 1: validCsr(1) } }), [{ kind: 'node-agent', instanceId: n1.id, event: 'csr-submitted' }], POLICY);
    expect(result.actions).toEqual([{ kind: 'refuse', instanceId: n1.id, reasons: [`${n1.id} is not a member of the group: its certificate request stays unsigned`], abandon: false }]);
  });
});

describe("planner: the key binding (DESIGN rule 2): only the key the instance reported is signed", () => {
  const impostor = keyOf('an attacker on 8140');
  run([
    {
      name: 'a CSR pending, the instance has not reported its key yet: wait, sign nothing, abandon nothing (and no heartbeat: a CSR anyone could queue is no sign of life)',
      world: { members: [[1, 'Pending:Wait']], certs: { 1: 'requested' }, csrs: { 1: validCsr(1) } },
      actions: [],
      drift: 0,
    },
    {
      name: 'still no key report past the stuck threshold: drift, no heartbeat',
      world: { members: [[1, 'Pending:Wait']], certs: { 1: 'requested' }, csrs: { 1: validCsr(1) }, launchedMinutesAgo: TIMING.stuckLaunchMs / 60_000 + 5 },
      actions: [],
      drift: 1,
    },
    {
      name: "a flawless CSR made with another key than the instance's: removed, not signed, the launch goes on",
      world: { members: [[1, 'Pending:Wait']], certs: { 1: 'requested' }, csrs: { 1: { ok: true, facts: csrFacts(1, { publicKeySha256: impostor }) } }, reported: [1] },
      actions: [{ kind: 'remove-csr', instanceId: n1.id, certname: n1.certname, publicKeySha256: impostor, reason: expect.stringMatching(/not the one the instance reported/) }, beat(n1.id)],
    },
    {
      name: "an impostor's forged CSR (wrong role, other key) does not abandon the launch: it is removed",
      world: { members: [[1, 'Pending:Wait']], certs: { 1: 'requested' }, csrs: { 1: { ok: true, facts: csrFacts(1, { publicKeySha256: impostor, puppetExtensions: { pp_instance_id: n1.id, pp_role: 'primary' } }) } }, reported: [1] },
      actions: [{ kind: 'remove-csr', instanceId: n1.id, publicKeySha256: impostor }, beat(n1.id)],
    },
    {
      name: "an unreadable CSR cannot be the instance's: removed",
      world: { members: [[1, 'Pending:Wait']], certs: { 1: 'requested' }, csrs: { 1: { ok: false, problem: 'Refused CSR: it is not a PEM-encoded PKCS#10 request' } }, reported: [1] },
      actions: [{ kind: 'remove-csr', instanceId: n1.id, publicKeySha256: undefined, reason: expect.stringMatching(/unreadable/) }, beat(n1.id)],
    },
    {
      name: "re-enrollment squatting: a purged member's certname asked for with another key is removed, not signed",
      world: { members: [[1, 'InService']], registry: [entry(1, 'purged')], certs: { 1: 'requested' }, csrs: { 1: { ok: true, facts: csrFacts(1, { publicKeySha256: impostor }) } }, reported: [1] },
      actions: [{ kind: 'remove-csr', instanceId: n1.id, publicKeySha256: impostor }],
    },
    {
      name: 're-enrollment squatting before the node reported: nothing is signed',
      world: { members: [[1, 'InService']], registry: [entry(1, 'purged')], certs: { 1: 'requested' }, csrs: { 1: { ok: true, facts: csrFacts(1, { publicKeySha256: impostor }) } } },
      actions: [],
    },
    {
      name: "an echo of the key signed and verified before (a late csr-submitted) is not a report for the re-enrollment: wait",
      world: {
        members: [[1, 'InService']],
        registry: [entry(1, 'purged', { checked: { publicKeySha256: keyOf(n1.certname), dnsAltNames: [], puppetExtensions: {} }, issued: { serial: '7', sha256Fingerprint: 'AB:CD', verifiedAt: NOW.toISOString() } })],
        certs: { 1: 'requested' },
        csrs: { 1: { ok: true, facts: csrFacts(1, { publicKeySha256: keyOf('its new key') }) } },
        reported: [1],
      },
      actions: [],
    },
    {
      name: 'another instance\'s report does not count for this one',
      world: { members: [[1, 'Pending:Wait'], [2, 'Pending:Wait']], certs: { 1: 'requested' }, csrs: { 1: { ok: true, facts: csrFacts(1, { publicKeySha256: keyOf(n2.certname) }) } }, reported: [2] },
      actions: [beat(n2.id)],
    },
  ]);
});

describe('planner: terminations (Terminating:Wait)', () => {
  run([
    {
      name: 'owned: purge, then complete the terminate action',
      world: { members: [[1, 'Terminating:Wait']], registry: [entry(1, 'in-service')] },
      actions: [{ kind: 'purge', targets: [{ instanceId: n1.id, certname: n1.certname, completeTerminate: true }] }, { kind: 'recheck', reason: 'start-run' }],
    },
    {
      name: 'owned but stalled: purge and complete',
      world: { members: [[1, 'Terminating:Wait']], registry: [entry(1, 'stalled')] },
      actions: [{ kind: 'purge', targets: [{ instanceId: n1.id, completeTerminate: true }] }, { kind: 'recheck' }],
    },
    {
      name: 'not enrolled by the controller: complete without purging',
      world: { members: [[1, 'Terminating:Wait']], certs: { 1: 'signed' } },
      actions: [{ kind: 'complete-terminate', instanceId: n1.id, reason: expect.stringMatching(/not enrolled/) }],
    },
    {
      name: 'already purged (a repeated event): complete again, nothing else',
      world: { members: [[1, 'Terminating:Wait']], registry: [entry(1, 'purged')] },
      actions: [{ kind: 'complete-terminate', instanceId: n1.id, reason: 'already purged' }],
    },
    {
      name: 'its purge is claimed by another pass: leave it to that pass',
      world: { members: [[1, 'Terminating:Wait']], registry: [entry(1, 'purging', { claimedAt: minutesAgo(1) })] },
      actions: [],
    },
    {
      name: 'a registry entry naming a protected certname is never purged (the action still completes)',
      world: { members: [[1, 'Terminating:Wait']], registry: [entry(1, 'in-service', { certname: 'primary.corp.example.com' })] },
      actions: [{ kind: 'complete-terminate', instanceId: n1.id, reason: expect.stringMatching(/protected/) }],
      drift: 1,
    },
    {
      name: 'a registry entry with a hostile certname is never purged',
      world: { members: [[1, 'Terminating:Wait']], registry: [entry(1, 'in-service', { certname: '../x' })] },
      actions: [{ kind: 'complete-terminate', instanceId: n1.id }],
      drift: 1,
    },
    {
      name: 'its certname now belongs to a live instance (EC2 reused the address): forget, do not clean',
      world: {
        members: [[1, 'Terminating:Wait'], [2, 'InService']],
        registry: [entry(1, 'in-service'), entry(2, 'in-service', { certname: n1.certname })],
        certs: { 1: 'signed' },
      },
      actions: [
        { kind: 'forget', instanceId: n1.id, reason: expect.stringMatching(new RegExp(`belongs to live instance ${n2.id}`)) },
        { kind: 'complete-terminate', instanceId: n1.id },
      ],
    },
    {
      // Agents may still be mid-catalog on it until the deregistration delay ends: the purge
      // (certificate revoked, PuppetDB node deactivated) waits for the terminate hook.
      name: 'draining from the load balancer (Terminating): nothing yet, not even a purge',
      world: { members: [[1, 'Terminating']], registry: [entry(1, 'in-service')], certs: { 1: 'signed' } },
      actions: [],
    },
    {
      name: 'leaving without a hook (Terminating:Proceed): purge, nothing to complete',
      world: { members: [[1, 'Terminating:Proceed']], registry: [entry(1, 'in-service')] },
      actions: [{ kind: 'purge', targets: [{ instanceId: n1.id, completeTerminate: false }] }, { kind: 'recheck' }],
    },
  ]);

  it('purges a burst of terminations as one batch and asks for one run', () => {
    const numbers = Array.from({ length: 50 }, (_, index) => index + 1);
    const result = plan(world({ members: numbers.map((n) => [n, 'Terminating:Wait']), registry: numbers.map((n) => entry(n, 'in-service')) }), schedule, POLICY);
    expect(result.actions.map((action) => action.kind)).toEqual(['purge', 'recheck']);
    expect(result.actions[0]).toMatchObject({ kind: 'purge' });
    expect((result.actions[0] as Extract<Action, { kind: 'purge' }>).targets).toHaveLength(50);
  });
});

describe('planner: serving members', () => {
  run([
    { name: 'not enrolled by the controller: drift only', world: { members: [[1, 'InService']], certs: { 1: 'signed' } }, actions: [], drift: 1 },
    { name: 'owned and signed: steady state', world: { members: [[1, 'InService']], registry: [entry(1, 'in-service')], certs: { 1: 'signed' } }, actions: [], drift: 0 },
    {
      name: 'owned, certificate revoked outside the controller: purge so it can re-enroll',
      world: { members: [[1, 'InService']], registry: [entry(1, 'in-service')], certs: { 1: 'revoked' } },
      actions: [{ kind: 'purge', targets: [{ instanceId: n1.id, completeTerminate: false }] }, { kind: 'recheck' }],
      drift: 1,
    },
    {
      name: 'owned, certificate cleaned outside the controller: purge the rest (PuppetDB)',
      world: { members: [[1, 'InService']], registry: [entry(1, 'in-service')], certs: { 1: 'absent' } },
      actions: [{ kind: 'purge' }, { kind: 'recheck' }],
      drift: 1,
    },
    {
      name: 'owned, certificate gone and a new CSR pending: record it as purged first, look again soon',
      world: { members: [[1, 'InService']], registry: [entry(1, 'in-service')], certs: { 1: 'requested' }, csrs: { 1: validCsr(1) } },
      actions: [{ kind: 'forget', instanceId: n1.id }, { kind: 'recheck', reason: 'await-node', instanceId: n1.id }],
      drift: 1,
    },
    {
      name: 'owned, certificate still signed and a CSR for its certname pending next to it: steady state, never forgotten',
      world: { members: [[1, 'InService']], registry: [entry(1, 'in-service')], certs: { 1: 'signed' }, csrs: { 1: validCsr(1) } },
      actions: [],
      drift: 0,
    },
    {
      name: 're-enrolling after a purge the registry knows of, valid CSR: sign as re-enrollment',
      world: { members: [[1, 'InService']], registry: [entry(1, 'purged')], certs: { 1: 'requested' }, csrs: { 1: validCsr(1) }, reported: [1] },
      actions: [{ kind: 'sign', instanceId: n1.id, reEnrollment: true }],
    },
    {
      name: 're-enrolling with a forged CSR: refused, nothing to abandon',
      world: {
        members: [[1, 'InService']],
        registry: [entry(1, 'purged')],
        certs: { 1: 'requested' },
        csrs: { 1: { ok: true, facts: csrFacts(1, { puppetExtensions: { pp_instance_id: node(9).id, pp_role: 'compile_master' } }) } },
        reported: [1],
      },
      actions: [{ kind: 'refuse', instanceId: n1.id, abandon: false }],
    },
    { name: 'purged and no CSR yet: wait', world: { members: [[1, 'InService']], registry: [entry(1, 'purged')] }, actions: [] },
    { name: 'purged but a certificate signed elsewhere: drift, never sign', world: { members: [[1, 'InService']], registry: [entry(1, 'purged')], certs: { 1: 'signed' } }, actions: [], drift: 1 },
    {
      name: 're-enrolled and healthy: converge',
      world: { members: [[1, 'InService']], registry: [entry(1, 'signed')], certs: { 1: 'signed' }, healthy: [1] },
      actions: [{ kind: 'converge', instanceIds: [n1.id] }, { kind: 'recheck', reason: 'start-run' }],
    },
    {
      name: 'in service with an unowned CSR for another certname: never looked at',
      world: { members: [[1, 'InService']], registry: [entry(1, 'in-service')], certs: { 1: 'signed', 2: 'requested' }, csrs: { 2: validCsr(2) } },
      actions: [],
    },
  ]);
});

describe('planner: health of serving nodes (replaced only past the window, never for a reboot)', () => {
  const WINDOW_MIN = POLICY.replaceUnhealthyAfterSeconds / 60;
  const serving = (overrides: Partial<RegistryEntry> = {}, n = 1): NonNullable<WorldSpec['registry']> => [entry(n, 'in-service', overrides)];
  const replace = (n: number, reason: RegExp) => ({ kind: 'replace-unhealthy' as const, instanceId: node(n).id, certname: node(n).certname, reason: expect.stringMatching(reason) });
  run([
    { name: 'healthy, no streak: nothing', world: { members: [[1, 'InService']], registry: serving(), certs: { 1: 'signed' }, healthy: [1] }, actions: [] },
    {
      name: 'first unhealthy answer: the streak starts now',
      world: { members: [[1, 'InService']], registry: serving(), certs: { 1: 'signed' }, unhealthy: [1] },
      actions: [{ kind: 'record-health', instanceId: n1.id, unhealthySince: NOW.toISOString() }],
    },
    {
      name: 'unhealthy for less than the window: wait',
      world: { members: [[1, 'InService']], registry: serving({ unhealthySince: minutesAgo(WINDOW_MIN - 1) }), certs: { 1: 'signed' }, unhealthy: [1] },
      actions: [],
      drift: 0,
    },
    {
      name: 'unhealthy past the window, no boot at all: replace',
      world: { members: [[1, 'InService']], registry: serving({ unhealthySince: minutesAgo(WINDOW_MIN + 1) }), certs: { 1: 'signed' }, unhealthy: [1] },
      actions: [replace(1, /unhealthy for 16 min without a reboot/)],
    },
    {
      name: 'unhealthy past the window, last boot long before the streak: replace',
      world: { members: [[1, 'InService']], registry: serving({ unhealthySince: minutesAgo(WINDOW_MIN), bootedAt: minutesAgo(600) }), certs: { 1: 'signed' }, unhealthy: [1] },
      actions: [replace(1, /without a reboot/)],
    },
    {
      name: 'a reboot within the window: the window counts from the boot, no replace',
      world: { members: [[1, 'InService']], registry: serving({ unhealthySince: minutesAgo(WINDOW_MIN + 10), bootedAt: minutesAgo(WINDOW_MIN - 1) }), certs: { 1: 'signed' }, unhealthy: [1] },
      actions: [],
    },
    {
      name: 'unhealthy the whole window since its boot: replace',
      world: { members: [[1, 'InService']], registry: serving({ unhealthySince: minutesAgo(WINDOW_MIN + 10), bootedAt: minutesAgo(WINDOW_MIN) }), certs: { 1: 'signed' }, unhealthy: [1] },
      actions: [replace(1, /without a reboot/)],
    },
    {
      name: 'crash loop: booting again and again, unhealthy for twice the window: replace all the same',
      world: { members: [[1, 'InService']], registry: serving({ unhealthySince: minutesAgo(2 * WINDOW_MIN), bootedAt: minutesAgo(2) }), certs: { 1: 'signed' }, unhealthy: [1] },
      actions: [replace(1, /unhealthy for 30 min, through reboots/)],
    },
    {
      name: 'healthy again: the streak ends',
      world: { members: [[1, 'InService']], registry: serving({ unhealthySince: minutesAgo(WINDOW_MIN + 5) }), certs: { 1: 'signed' }, healthy: [1] },
      actions: [{ kind: 'record-health', instanceId: n1.id, unhealthySince: undefined }],
    },
    {
      name: 'not asked about (no address, certificate not signed): the streak is left as it is',
      world: { members: [[1, 'InService']], registry: serving({ unhealthySince: minutesAgo(WINDOW_MIN + 5) }), certs: { 1: 'signed' } },
      actions: [],
    },
    {
      name: 'in Standby with a streak: the streak ends, never replaced',
      world: { members: [[1, 'Standby']], registry: serving({ unhealthySince: minutesAgo(WINDOW_MIN + 5) }), certs: { 1: 'signed' }, unhealthy: [1] },
      actions: [{ kind: 'record-health', instanceId: n1.id, unhealthySince: undefined }],
    },
    {
      name: 'not owned: never replaced (drift as any unowned member)',
      world: { members: [[1, 'InService']], certs: { 1: 'signed' }, unhealthy: [1] },
      actions: [],
      drift: 1,
    },
    {
      name: 'launching, signed, unhealthy: waits for its Puppet Server, never replaced (its launch is heartbeated on the schedule)',
      world: { members: [[1, 'Pending:Wait']], registry: [entry(1, 'signed', { unhealthySince: minutesAgo(60) })], certs: { 1: 'signed' }, unhealthy: [1] },
      actions: [beat(n1.id)],
    },
    {
      name: 'launch completed but AWS still says Pending:Wait: complete it again, never replaced',
      world: { members: [[1, 'Pending:Wait']], registry: serving({ unhealthySince: minutesAgo(60) }), certs: { 1: 'signed' }, unhealthy: [1] },
      actions: [{ kind: 'launched', instanceId: n1.id }],
    },
    {
      name: 'draining for termination already: never replaced again',
      world: { members: [[1, 'Terminating']], registry: serving({ unhealthySince: minutesAgo(60) }), certs: { 1: 'signed' }, unhealthy: [1] },
      actions: [],
    },
    {
      name: 'one of two unhealthy past the window, the other healthy: replace that one',
      world: { members: [[1, 'InService'], [2, 'InService']], registry: [...serving({ unhealthySince: minutesAgo(60) }), ...serving({}, 2)], certs: { 1: 'signed', 2: 'signed' }, unhealthy: [1], healthy: [2] },
      actions: [replace(1, /without a reboot/)],
    },
    {
      name: 'none of two healthy (a shared cause): drift, nothing replaced',
      world: {
        members: [[1, 'InService'], [2, 'InService']],
        registry: [...serving({ unhealthySince: minutesAgo(60) }), ...serving({ unhealthySince: minutesAgo(5) }, 2)],
        certs: { 1: 'signed', 2: 'signed' },
        unhealthy: [1, 2],
      },
      actions: [],
      drift: 1,
    },
  ]);

  it('never replaces a node whose certname is protected: drift instead', () => {
    const observed = world({ members: [[1, 'InService']], registry: serving({ certname: 'primary.corp.example.com', unhealthySince: minutesAgo(60) }), unhealthy: [1] });
    (observed.certs as Map<string, string>).set('primary.corp.example.com', 'signed');
    const result = plan(observed, schedule, POLICY);
    expect(result.actions).toEqual([]);
    expect(result.drift).toEqual([expect.objectContaining({ instanceId: n1.id, detail: expect.stringMatching(/not replaced although unhealthy: primary.corp.example.com is a protected certname/) })]);
  });

  it('follows the configured window', () => {
    const observed = world({ members: [[1, 'InService']], registry: serving({ unhealthySince: minutesAgo(6) }), certs: { 1: 'signed' }, unhealthy: [1] });
    expect(plan(observed, schedule, POLICY).actions).toEqual([]);
    expect(plan(observed, schedule, { ...POLICY, replaceUnhealthyAfterSeconds: 300 }).actions).toMatchObject([replace(1, /6 min without a reboot/)]);
  });
});

describe('planner: instances that left the group', () => {
  run([
    {
      name: 'owned and terminated outside the group: purge (no lifecycle action)',
      world: { ec2: { 1: 'terminated' }, registry: [entry(1, 'in-service')] },
      actions: [{ kind: 'purge', targets: [{ instanceId: n1.id, completeTerminate: false }] }, { kind: 'recheck' }],
      drift: 1,
    },
    { name: 'owned and shutting down: purge', world: { ec2: { 1: 'shutting-down' }, registry: [entry(1, 'in-service')] }, actions: [{ kind: 'purge' }, { kind: 'recheck' }] },
    { name: 'owned and unknown to EC2 (long gone): purge', world: { ec2: { 1: undefined }, registry: [entry(1, 'signed')] }, actions: [{ kind: 'purge' }, { kind: 'recheck' }] },
    { name: 'owned, not a member but running (detached): drift, no purge', world: { ec2: { 1: 'running' }, registry: [entry(1, 'in-service')] }, actions: [], drift: 1 },
    { name: 'owned, stopped outside the group (warm pool): drift, no purge', world: { ec2: { 1: 'stopped' }, registry: [entry(1, 'in-service')] }, actions: [], drift: 1 },
    { name: 'already purged: nothing', world: { ec2: { 1: 'terminated' }, registry: [entry(1, 'purged')] }, actions: [], drift: 0 },
    { name: 'an unowned instance terminated: nothing', world: { ec2: { 1: 'terminated' } }, triggers: [{ kind: 'instance-state', instanceId: n1.id, state: 'terminated' }], actions: [] },
  ]);
});

/**
 * Run ids are opaque to the planner: the whole table holds for an orchestrator job number, an SSM
 * command id and the none runner's fixed id alike (start, follow, retry, stall).
 */
describe.each([
  ['an orchestrator job number', '7'],
  ['an SSM command id', '5f0c3a1e-8b9d-4c2a-a7e6-0123456789ab'],
  ["the none runner's id", 'none'],
])("planner: the primary's run, its id %s", (_kind, id) => {
  const converging = (job?: Partial<WorldSpec['run']>) => ({ members: [[1, 'Pending:Wait']] as Array<[number, string]>, registry: [entry(1, 'converging')], certs: { 1: 'signed' as const }, run: job });
  const job = (overrides: Record<string, unknown> = {}) => ({ name: id, claimedAt: minutesAgo(1), covers: [n1.id], attempt: 1, ...overrides });
  const following: Trigger[] = [{ kind: 'recheck', reason: 'follow-run', runId: id, attempt: 3 }];
  run([
    {
      name: 'changes pending and quiet long enough: start one run for all of them',
      world: { run: { pending: [n1.id, n2.id], requestedAt: minutesAgo(1) } },
      actions: [{ kind: 'start-run', attempt: 1 }],
    },
    {
      name: 'start-run recheck while changes keep coming: look again after the quiet period',
      world: { run: { pending: [n1.id], requestedAt: NOW.toISOString() } },
      triggers: [{ kind: 'recheck', reason: 'start-run', attempt: 1 }],
      actions: [{ kind: 'recheck', reason: 'start-run', delaySeconds: TIMING.runQuietSeconds }],
    },
    {
      name: 'changes pending, not quiet yet, another trigger: the recheck already sent will start it',
      world: { run: { pending: [n1.id], requestedAt: NOW.toISOString() } },
      actions: [],
    },
    {
      name: 'run running, a follow-up of another run: that chain ends here',
      world: { ...converging({ job: job() }), runState: { kind: 'state', state: 'running' } },
      triggers: [{ kind: 'recheck', reason: 'follow-run', runId: 'some-other-run', attempt: 3 }],
      actions: [{ kind: 'heartbeat', instanceIds: [n1.id] }],
    },
    {
      name: 'run running, followed: heartbeat the launches it covers and follow again',
      world: { ...converging({ job: job() }), runState: { kind: 'state', state: 'running' } },
      triggers: following,
      actions: [{ kind: 'recheck', reason: 'follow-run', runId: id, attempt: 4 }, { kind: 'heartbeat', instanceIds: [n1.id] }],
    },
    {
      name: 'run running, some other trigger: no second chain of follow-ups',
      world: { ...converging({ job: job() }), runState: { kind: 'state', state: 'running' } },
      triggers: [{ kind: 'lifecycle', transition: 'launch', instanceId: n1.id }],
      actions: [],
    },
    {
      name: 'run running, on the schedule: heartbeat (the follow-up chain may be lost)',
      world: { ...converging({ job: job() }), runState: { kind: 'state', state: 'running' } },
      actions: [{ kind: 'heartbeat', instanceIds: [n1.id] }],
    },
    {
      name: "runner unreachable: the run's fate is unknown, keep waiting",
      world: { ...converging({ job: job() }), runState: { kind: 'unreachable', problem: 'connection refused' } },
      actions: [{ kind: 'heartbeat' }],
    },
    {
      name: 'run finished: complete the launches it covered, then end the run',
      world: { ...converging({ job: job() }), runState: { kind: 'state', state: 'finished' } },
      actions: [{ kind: 'launched', instanceId: n1.id, completeLaunch: true }, { kind: 'end-run', runId: id, outcome: 'finished' }],
    },
    {
      name: 'run finished for a re-enrolled serving node: in service, no lifecycle action',
      world: { members: [[1, 'InService']], registry: [entry(1, 'converging')], certs: { 1: 'signed' }, run: { job: job() }, runState: { kind: 'state', state: 'finished' } },
      actions: [{ kind: 'launched', instanceId: n1.id, completeLaunch: false }, { kind: 'end-run', runId: id }],
    },
    {
      name: 'run finished while more changes piled up: end it and start the next after the quiet period',
      world: { run: { job: job({ covers: [n2.id] }), pending: [n1.id], requestedAt: minutesAgo(1) }, runState: { kind: 'state', state: 'finished' } },
      actions: [{ kind: 'end-run', outcome: 'finished' }, { kind: 'recheck', reason: 'start-run' }],
    },
    {
      name: 'run failed the first time: retry once',
      world: { ...converging({ job: job() }), runState: { kind: 'state', state: 'failed' } },
      actions: [{ kind: 'start-run', attempt: 2, retryOf: id }, { kind: 'heartbeat', instanceIds: [n1.id] }],
    },
    {
      name: 'run the runner no longer knows: counts as failed',
      world: { ...converging({ job: job() }), runState: { kind: 'missing' } },
      actions: [{ kind: 'start-run', attempt: 2, retryOf: id, reason: expect.stringMatching(/is unknown to the runner/) }, { kind: 'heartbeat' }],
    },
    {
      name: 'run still running after the run timeout: counts as failed',
      world: { ...converging({ job: job({ claimedAt: minutesAgo(TIMING.runTimeoutMs / 60_000 + 1) }) }), runState: { kind: 'state', state: 'running' } },
      actions: [{ kind: 'start-run', attempt: 2, reason: expect.stringMatching(/timed out/) }, { kind: 'heartbeat' }],
    },
    {
      name: "run failed again: stall its launches (hook default result applies), end the run as failed",
      world: { ...converging({ job: job({ attempt: 2 }) }), runState: { kind: 'state', state: 'failed' } },
      actions: [{ kind: 'stall', instanceIds: [n1.id], reason: expect.stringContaining(`(run ${id})`) }, { kind: 'end-run', runId: id, outcome: 'failed' }],
    },
    {
      name: 'a pass claimed the run and died before starting it: release the claim',
      world: { ...converging({ job: { claimedAt: minutesAgo(10), covers: [n1.id], attempt: 1 } }) },
      actions: [{ kind: 'reset-run', claimedAt: minutesAgo(10) }, { kind: 'heartbeat' }, { kind: 'recheck', reason: 'start-run' }],
    },
    {
      name: 'a pass claimed the run moments ago: it is starting it (heartbeat on the schedule meanwhile)',
      world: { ...converging({ job: { claimedAt: NOW.toISOString(), covers: [n1.id], attempt: 1 } }) },
      actions: [{ kind: 'heartbeat', instanceIds: [n1.id] }],
    },
    {
      name: 'converging, already covered by the last finished run (completion was lost): complete it',
      world: { ...converging({ last: { name: '6', outcome: 'finished', covers: [n1.id], endedAt: minutesAgo(1) } }) },
      actions: [{ kind: 'launched', instanceId: n1.id, completeLaunch: true }],
    },
    {
      name: 'converging but in no run at all (lost track): ask for a run again',
      world: converging(),
      actions: [beat(n1.id), { kind: 'converge', instanceIds: [n1.id] }, { kind: 'recheck', reason: 'start-run' }],
    },
  ]);
});

describe('planner: properties', () => {
  it('is deterministic and independent of trigger order', () => {
    const spec: WorldSpec = {
      members: [[1, 'Pending:Wait'], [2, 'Terminating:Wait'], [3, 'InService']],
      registry: [entry(2, 'in-service'), entry(3, 'in-service'), entry(4, 'in-service')],
      ec2: { 4: 'terminated' },
      certs: { 1: 'requested', 3: 'signed' },
      csrs: { 1: validCsr(1) },
      reported: [1],
    };
    const triggers: Trigger[] = [
      { kind: 'lifecycle', transition: 'terminate', instanceId: node(2).id },
      { kind: 'instance-state', instanceId: node(4).id, state: 'terminated' },
      { kind: 'node-agent', instanceId: node(1).id, event: 'csr-submitted' },
    ];
    const forward = plan(world(spec), triggers, POLICY);
    const backward = plan(world(spec), [...triggers].reverse(), POLICY);
    const none = plan(world(spec), [], POLICY);
    expect(backward).toEqual(forward);
    expect(none.actions).toEqual(forward.actions);
    expect(forward.actions.map((action) => action.kind)).toEqual(['sign', 'purge', 'recheck']);
  });

  it('asks for at most one start-run recheck per pass', () => {
    const result = plan(
      world({
        members: [[1, 'Pending:Wait'], [2, 'Terminating:Wait']],
        registry: [entry(1, 'signed'), entry(2, 'in-service')],
        certs: { 1: 'signed' },
        healthy: [1],
        run: { pending: [node(3).id], requestedAt: NOW.toISOString() },
      }),
      schedule,
      POLICY,
    );
    expect(result.actions.filter((action) => action.kind === 'recheck')).toHaveLength(1);
  });
});

describe('planner: certificates signed but not yet verified (a pass died after signing)', () => {
  const checked = { publicKeySha256: `key-of-${n1.certname}`, dnsAltNames: csrFacts(1).dnsAltNames, puppetExtensions: csrFacts(1).puppetExtensions };
  const unverified = entry(1, 'signed', { checked });
  const verified = entry(1, 'signed', { checked, issued: { serial: '7', sha256Fingerprint: 'AB:CD', verifiedAt: minutesAgo(1) } });
  run([
    {
      name: 'launching and healthy: verify it (and look again soon), no converge until verified',
      world: { members: [[1, 'Pending:Wait']], registry: [unverified], certs: { 1: 'signed' }, healthy: [1] },
      actions: [
        { kind: 'verify', instanceId: n1.id, certname: n1.certname, checked, launching: true },
        { kind: 'recheck', reason: 'await-node', instanceId: n1.id, attempt: 1 },
        beat(n1.id),
      ],
    },
    {
      name: 'serving (re-enrolled): verify it, nothing to abandon',
      world: { members: [[1, 'InService']], registry: [unverified], certs: { 1: 'signed' }, healthy: [1] },
      actions: [{ kind: 'verify', instanceId: n1.id, launching: false }, { kind: 'recheck', reason: 'await-node' }],
    },
    {
      name: 'the last await-node recheck: verify, stop asking',
      world: { members: [[1, 'Pending:Wait']], registry: [unverified], certs: { 1: 'signed' } },
      triggers: [{ kind: 'recheck', reason: 'await-node', instanceId: n1.id, attempt: TIMING.awaitNodeAttempts }],
      actions: [{ kind: 'verify', instanceId: n1.id }],
    },
    {
      name: 'verified and healthy: converge',
      world: { members: [[1, 'Pending:Wait']], registry: [verified], certs: { 1: 'signed' }, healthy: [1] },
      actions: [beat(n1.id), { kind: 'converge', instanceIds: [n1.id] }, { kind: 'recheck', reason: 'start-run' }],
    },
    {
      name: 'unverified and terminating: purge it (by the checked key), no verification',
      world: { members: [[1, 'Terminating:Wait']], registry: [unverified], certs: { 1: 'signed' } },
      actions: [{ kind: 'purge', targets: [{ instanceId: n1.id, completeTerminate: true }] }, { kind: 'recheck', reason: 'start-run' }],
    },
  ]);
});

describe('planner: damaged registry items (quarantine)', () => {
  const damaged = (n: number, problem = 'its certname "../x" is not a lowercase DNS-style name') => ({ key: node(n).id, instanceId: node(n).id, problem });
  run([
    {
      name: 'launching with a valid CSR but a damaged item: not signed, not refused, drift',
      world: { members: [[1, 'Pending:Wait']], damaged: [damaged(1)], certs: { 1: 'requested' }, csrs: { 1: validCsr(1) } },
      actions: [],
      drift: 1,
    },
    {
      name: 'terminating with a damaged item: neither purged nor completed (the hook default applies), drift',
      world: { members: [[1, 'Terminating:Wait']], damaged: [damaged(1)] },
      actions: [],
      drift: 1,
    },
    {
      name: 'the rest of the pass goes on: another launch is signed, another termination purged',
      world: {
        members: [[1, 'InService'], [2, 'Pending:Wait'], [3, 'Terminating:Wait']],
        damaged: [damaged(1)],
        registry: [entry(3, 'in-service')],
        certs: { 2: 'requested' },
        csrs: { 2: validCsr(2) },
        reported: [2],
      },
      actions: [{ kind: 'sign', instanceId: n2.id }, { kind: 'purge', targets: [{ instanceId: node(3).id }] }, beat(n2.id), { kind: 'recheck' }],
      drift: 1,
    },
    {
      name: 'an item whose key is no instance id: drift only',
      world: { damaged: [{ key: '../etc/passwd', problem: 'its key "../etc/passwd" is not an instance id' }] },
      actions: [],
      drift: 1,
    },
  ]);

  it('counts the damaged items for the metric and says in the drift what to do', () => {
    const result = plan(world({ damaged: [damaged(1), { key: 'x'.repeat(300), problem: 'its key is not an instance id' }] }), schedule, POLICY);
    expect(result.damagedEntries).toBe(2);
    expect(result.drift[0]).toEqual({ instanceId: n1.id, detail: expect.stringMatching(/quarantined: its certname .*; nothing is done for it until it is repaired or deleted$/) });
    expect(result.drift[1]?.detail).toMatch(/^registry item "x{80}…\(300 chars\)" quarantined/);
  });
});
