import { beforeEach, describe, expect, it } from 'vitest';
import type { CheckedRequest, RegistryEntry, RegistryState } from '../../lambdas/controller/model';
import type { RegistryPort } from '../../lambdas/controller/ports';

/** One engine's registry, empty, with a way past the port for items no port call would write. */
export interface RegistryUnderTest {
  registry: RegistryPort;
  /** Stores an item exactly as given: what a bad hand edit or a bug could leave in the table. */
  seedItem(item: Record<string, unknown>): Promise<void>;
}

const id = 'i-0123456789abcdef0';
const certname = 'ip-10-0-0-1.us-west-2.compute.internal';
const keyA = 'ab'.repeat(32);
const keyB = 'cd'.repeat(32);
const now = new Date('2026-11-20T12:00:00Z');
const at = (seconds: number) => new Date(now.getTime() + seconds * 1000);
const iso = (seconds: number) => at(seconds).toISOString();
/** Claims older than this are stale in these cases: five minutes before `now`. */
const staleBefore = at(-300);

function checked(publicKeySha256: string): CheckedRequest {
  return { publicKeySha256, dnsAltNames: [certname, 'compile.example.internal'], puppetExtensions: { pp_instance_id: id, pp_role: 'compile_master' } };
}

const certificate = (publicKeySha256: string) => ({ serial: 0x1fn, sha256Fingerprint: 'AB:CD:EF', publicKeySha256 });

/**
 * The RegistryPort's documented rules (lambdas/controller/ports.ts) as behaviour seen through the
 * port, declared for one engine. Run against the memory registry and against DynamoRegistry on a
 * real DynamoDB engine, the same cases prove the two agree, and that the ownership rules hold
 * because DynamoDB enforces them, not because of the text of the expressions.
 */
export function registryContract(engine: string, fresh: () => Promise<RegistryUnderTest>): void {
  describe(`RegistryPort contract: ${engine}`, () => {
    let registry: RegistryPort;
    let seedItem: RegistryUnderTest['seedItem'];
    beforeEach(async () => {
      ({ registry, seedItem } = await fresh());
    });

    /** An entry brought to `state` through the port alone, as the controller would. */
    async function enrolled(state: RegistryState, instanceId = id): Promise<void> {
      expect(await registry.recordSigned(instanceId, certname, checked(keyA), now)).toBe(true);
      const next: Partial<Record<RegistryState, () => Promise<unknown>>> = {
        converging: () => registry.transition(instanceId, ['signed'], 'converging', now),
        'in-service': () => registry.transition(instanceId, ['signed'], 'in-service', now),
        stalled: () => registry.transition(instanceId, ['signed'], 'stalled', now),
        purging: () => registry.claimPurge(instanceId, now, staleBefore),
        purged: async () => (await registry.claimPurge(instanceId, now, staleBefore)) && registry.transition(instanceId, ['purging'], 'purged', now),
      };
      await next[state]?.();
      expect((await registry.get(instanceId))?.state).toBe(state);
    }

    describe('recordSigned takes ownership', () => {
      it('of an absent instance, recording the checked request', async () => {
        await expect(registry.recordSigned(id, certname, checked(keyA), now)).resolves.toBe(true);
        await expect(registry.get(id)).resolves.toEqual({
          instanceId: id,
          certname,
          state: 'signed',
          createdAt: now.toISOString(),
          updatedAt: now.toISOString(),
          checked: checked(keyA),
        });
      });

      it('again for the same certname while live, keeping createdAt and taking the new request', async () => {
        for (const state of ['signed', 'converging', 'in-service'] as const) {
          ({ registry, seedItem } = await fresh());
          await enrolled(state);
          await expect(registry.recordSigned(id, certname, checked(keyB), at(60))).resolves.toBe(true);
          await expect(registry.get(id)).resolves.toEqual({
            instanceId: id,
            certname,
            state: 'signed',
            createdAt: now.toISOString(),
            updatedAt: iso(60),
            checked: checked(keyB),
          });
        }
      });

      it('after a purge, forgetting the issued certificate, the purge and its claim', async () => {
        await enrolled('signed');
        await registry.recordIssued(id, certificate(keyA), now);
        await registry.claimPurge(id, at(10), staleBefore);
        await registry.recordPurgeStep(id, iso(10), 'ca', at(11));
        await registry.transition(id, ['purging'], 'purged', at(12));
        await expect(registry.recordSigned(id, certname, checked(keyB), at(60))).resolves.toBe(true);
        const entry = await registry.get(id);
        expect(entry).toEqual({ instanceId: id, certname, state: 'signed', createdAt: now.toISOString(), updatedAt: iso(60), checked: checked(keyB) });
      });

      it('never for another certname, nor mid-purge, nor stalled: false, and the entry is unchanged', async () => {
        await enrolled('in-service');
        const before = await registry.get(id);
        await expect(registry.recordSigned(id, 'ip-10-0-0-2.us-west-2.compute.internal', checked(keyB), at(60))).resolves.toBe(false);
        expect(await registry.get(id)).toEqual(before);
        for (const state of ['purging', 'stalled'] as const) {
          ({ registry, seedItem } = await fresh());
          await enrolled(state);
          const held = await registry.get(id);
          await expect(registry.recordSigned(id, certname, checked(keyB), at(60))).resolves.toBe(false);
          expect(await registry.get(id)).toEqual(held);
        }
      });

      it('for exactly one of two passes racing for an absent instance with different certnames', async () => {
        const names = ['ip-10-0-0-1.us-west-2.compute.internal', 'ip-10-0-0-2.us-west-2.compute.internal'];
        const answers = await Promise.all(names.map((name) => registry.recordSigned(id, name, checked(keyA), now)));
        expect(answers.filter(Boolean)).toHaveLength(1);
        expect((await registry.get(id))?.certname).toBe(names[answers.indexOf(true)]);
      });
    });

    describe('recordIssued', () => {
      it('records the certificate on every live state whose checked request is for its key', async () => {
        for (const state of ['signed', 'converging', 'in-service', 'stalled'] as const) {
          ({ registry, seedItem } = await fresh());
          await enrolled(state);
          await expect(registry.recordIssued(id, certificate(keyA), at(5))).resolves.toBe(true);
          expect((await registry.get(id))?.issued).toEqual({ serial: '31', sha256Fingerprint: 'AB:CD:EF', verifiedAt: iso(5) });
          expect((await registry.get(id))?.updatedAt).toBe(iso(5));
        }
      });

      it('refuses a certificate for another key, or for an entry that recorded no checked request, leaving the entry as it was', async () => {
        await enrolled('signed');
        const before = await registry.get(id);
        await expect(registry.recordIssued(id, certificate(keyB), at(5))).resolves.toBe(false);
        expect(await registry.get(id)).toEqual(before);
        const legacy = { instanceId: 'i-0123456789abcdef1', certname, state: 'in-service', createdAt: now.toISOString(), updatedAt: now.toISOString() };
        await seedItem(legacy);
        await expect(registry.recordIssued(legacy.instanceId, certificate(keyA), at(5))).resolves.toBe(false);
        await expect(registry.get(legacy.instanceId)).resolves.toEqual(legacy);
      });

      it('refuses once the entry is being purged or purged, and for an absent instance', async () => {
        for (const state of ['purging', 'purged'] as const) {
          ({ registry, seedItem } = await fresh());
          await enrolled(state);
          await expect(registry.recordIssued(id, certificate(keyA), at(5))).resolves.toBe(false);
          expect((await registry.get(id))?.issued).toBeUndefined();
        }
        await expect(registry.recordIssued('i-0123456789abcdef9', certificate(keyA), at(5))).resolves.toBe(false);
        await expect(registry.get('i-0123456789abcdef9')).resolves.toBeUndefined();
      });
    });

    describe('transition', () => {
      it('moves an entry on only from one of the listed states', async () => {
        await enrolled('signed');
        await expect(registry.transition(id, ['converging', 'in-service'], 'stalled', at(5))).resolves.toBe(false);
        expect((await registry.get(id))?.state).toBe('signed');
        await expect(registry.transition(id, ['converging', 'signed'], 'converging', at(5))).resolves.toBe(true);
        expect(await registry.get(id)).toMatchObject({ state: 'converging', updatedAt: iso(5) });
      });

      it('answers false from no listed state at all, and for an absent instance, creating nothing', async () => {
        await enrolled('signed');
        await expect(registry.transition(id, [], 'in-service', at(5))).resolves.toBe(false);
        expect((await registry.get(id))?.state).toBe('signed');
        await expect(registry.transition('i-0123456789abcdef9', ['signed'], 'in-service', at(5))).resolves.toBe(false);
        await expect(registry.get('i-0123456789abcdef9')).resolves.toBeUndefined();
      });

      it('to purged drops the claim and keeps the purge progress', async () => {
        await enrolled('purging');
        await registry.recordPurgeStep(id, now.toISOString(), 'ca', at(1));
        await expect(registry.transition(id, ['purging'], 'purged', at(2))).resolves.toBe(true);
        const entry = await registry.get(id);
        expect(entry).toMatchObject({ state: 'purged', updatedAt: iso(2), purge: { startedAt: now.toISOString(), ca: iso(1) } });
        expect(entry).not.toHaveProperty('claimedAt');
      });

      it('lets exactly one of two racing moves from the same state through', async () => {
        await enrolled('signed');
        const answers = await Promise.all([
          registry.transition(id, ['signed'], 'converging', at(5)),
          registry.transition(id, ['signed'], 'stalled', at(5)),
        ]);
        expect(answers.filter(Boolean)).toHaveLength(1);
        expect((await registry.get(id))?.state).toBe(answers[0] ? 'converging' : 'stalled');
      });
    });

    describe('claimPurge', () => {
      it('claims a live entry, recording the purge start and answering the claimed entry', async () => {
        for (const state of ['signed', 'converging', 'in-service', 'stalled'] as const) {
          ({ registry, seedItem } = await fresh());
          await enrolled(state);
          const claimed = await registry.claimPurge(id, at(5), staleBefore);
          expect(claimed).toMatchObject({ instanceId: id, certname, state: 'purging', claimedAt: iso(5), updatedAt: iso(5), purge: { startedAt: iso(5) } });
          expect(await registry.get(id)).toEqual(claimed);
        }
      });

      it('refuses a fresh claim, a purged entry and an absent instance', async () => {
        await enrolled('purging');
        const held = await registry.get(id);
        await expect(registry.claimPurge(id, at(5), staleBefore)).resolves.toBeUndefined();
        expect(await registry.get(id)).toEqual(held);
        await registry.transition(id, ['purging'], 'purged', at(6));
        await expect(registry.claimPurge(id, at(600), at(599))).resolves.toBeUndefined();
        expect((await registry.get(id))?.state).toBe('purged');
        await expect(registry.claimPurge('i-0123456789abcdef9', now, staleBefore)).resolves.toBeUndefined();
        await expect(registry.get('i-0123456789abcdef9')).resolves.toBeUndefined();
      });

      it('re-claims a stale claim, keeping the purge start and the steps done', async () => {
        await enrolled('purging');
        await registry.recordPurgeStep(id, now.toISOString(), 'ca', at(10));
        const retaken = await registry.claimPurge(id, at(400), at(300));
        expect(retaken).toMatchObject({ state: 'purging', claimedAt: iso(400), updatedAt: iso(400), purge: { startedAt: now.toISOString(), ca: iso(10) } });
      });

      it('takes a purge whose claim has no time as stale', async () => {
        await seedItem({ instanceId: id, certname, state: 'purging', createdAt: iso(-60), updatedAt: iso(-60), purge: { startedAt: iso(-60) } });
        await expect(registry.claimPurge(id, now, staleBefore)).resolves.toMatchObject({ claimedAt: now.toISOString(), purge: { startedAt: iso(-60) } });
      });

      it('gives the purge to exactly one of two racing claims', async () => {
        await enrolled('in-service');
        const claims = await Promise.all([registry.claimPurge(id, at(5), staleBefore), registry.claimPurge(id, at(6), staleBefore)]);
        expect(claims.filter(Boolean)).toHaveLength(1);
        expect(await registry.get(id)).toEqual(claims.find(Boolean));
      });
    });

    describe('recordPurgeStep', () => {
      it('records a step only within the purge that started at startedAt', async () => {
        await enrolled('purging');
        await expect(registry.recordPurgeStep(id, iso(1), 'ca', at(10))).resolves.toBe(false);
        await expect(registry.recordPurgeStep(id, now.toISOString(), 'puppetdb', at(10))).resolves.toBe(true);
        expect(await registry.get(id)).toMatchObject({ updatedAt: iso(10), purge: { startedAt: now.toISOString(), puppetdb: iso(10) } });
        expect((await registry.get(id))?.purge).not.toHaveProperty('ca');
      });

      it('refuses once the purge is over, before any purge, and for an absent instance', async () => {
        await enrolled('purged');
        await expect(registry.recordPurgeStep(id, now.toISOString(), 'ca', at(10))).resolves.toBe(false);
        expect((await registry.get(id))?.purge).toEqual({ startedAt: now.toISOString() });
        await enrolled('in-service', 'i-0123456789abcdef1');
        await expect(registry.recordPurgeStep('i-0123456789abcdef1', now.toISOString(), 'ca', at(10))).resolves.toBe(false);
        await expect(registry.recordPurgeStep('i-0123456789abcdef9', now.toISOString(), 'ca', at(10))).resolves.toBe(false);
        await expect(registry.get('i-0123456789abcdef9')).resolves.toBeUndefined();
      });
    });

    describe('key reports', () => {
      const report = (publicKeySha256: string, seconds: number) => ({ publicKeySha256, reportedAt: iso(seconds) });

      it('keeps the latest report per instance; an older one arriving late changes nothing; a repeat is safe', async () => {
        await expect(registry.keyReport(id)).resolves.toBeUndefined();
        await registry.recordKeyReport(id, report(keyA, 0));
        await registry.recordKeyReport(id, report(keyA, 0));
        await expect(registry.keyReport(id)).resolves.toEqual(report(keyA, 0));
        await registry.recordKeyReport(id, report(keyB, 10));
        await expect(registry.recordKeyReport(id, report(keyA, 5))).resolves.toBeUndefined();
        await expect(registry.keyReport(id)).resolves.toEqual(report(keyB, 10));
        await expect(registry.keyReport('i-0123456789abcdef1')).resolves.toBeUndefined();
      });

      it('consumes a report only while it is still the same key', async () => {
        await registry.recordKeyReport(id, report(keyB, 10));
        await registry.consumeKeyReport(id, keyA);
        await expect(registry.keyReport(id)).resolves.toEqual(report(keyB, 10));
        await registry.consumeKeyReport(id, keyB);
        await expect(registry.keyReport(id)).resolves.toBeUndefined();
        await expect(registry.consumeKeyReport(id, keyB)).resolves.toBeUndefined();
      });
    });

    describe('health streaks and boots', () => {
      it('starts a streak only on an in-service entry without one, keeping the first time; ends it on any entry that has one', async () => {
        await enrolled('converging');
        await expect(registry.recordHealth(id, iso(0), now)).resolves.toBe(false);
        await registry.transition(id, ['converging'], 'in-service', now);
        await expect(registry.recordHealth(id, iso(0), at(0))).resolves.toBe(true);
        await expect(registry.recordHealth(id, iso(60), at(60))).resolves.toBe(false);
        await expect(registry.get(id)).resolves.toMatchObject({ state: 'in-service', unhealthySince: iso(0) });
        await expect(registry.recordHealth(id, undefined, at(120))).resolves.toBe(true);
        expect((await registry.get(id))?.unhealthySince).toBeUndefined();
        await expect(registry.recordHealth(id, undefined, at(180))).resolves.toBe(false);
        await expect(registry.recordHealth('i-0123456789abcdef1', iso(0), now)).resolves.toBe(false);
        await expect(registry.get('i-0123456789abcdef1')).resolves.toBeUndefined();
      });

      it('keeps the latest boot on the entry, never an older one arriving late, nothing for an instance without one', async () => {
        await enrolled('in-service');
        await registry.recordBooted(id, iso(10));
        await registry.recordBooted(id, iso(5));
        await expect(registry.get(id)).resolves.toMatchObject({ bootedAt: iso(10) });
        await registry.recordBooted(id, iso(20));
        await expect(registry.get(id)).resolves.toMatchObject({ bootedAt: iso(20) });
        await expect(registry.recordBooted('i-0123456789abcdef1', iso(0))).resolves.toBeUndefined();
        await expect(registry.get('i-0123456789abcdef1')).resolves.toBeUndefined();
      });

      it('a new enrollment (recordSigned) ends the streak and keeps the boot', async () => {
        await enrolled('in-service');
        await registry.recordBooted(id, iso(10));
        await registry.recordHealth(id, iso(20), at(20));
        await registry.claimPurge(id, at(30), staleBefore);
        await registry.transition(id, ['purging'], 'purged', at(30));
        await expect(registry.recordSigned(id, certname, checked(keyB), at(40))).resolves.toBe(true);
        const entry = await registry.get(id);
        expect(entry).toMatchObject({ state: 'signed', bootedAt: iso(10) });
        expect(entry?.unhealthySince).toBeUndefined();
      });
    });

    describe('the run record', () => {
      it('starts empty at version 0 and is replaced only at the version it was read at', async () => {
        await expect(registry.getRun()).resolves.toEqual({ version: 0, pending: [] });
        await expect(registry.putRun({ pending: [id], requestedAt: now.toISOString(), job: undefined }, 0)).resolves.toBe(true);
        await expect(registry.getRun()).resolves.toEqual({ version: 1, pending: [id], requestedAt: now.toISOString() });
        await expect(registry.putRun({ pending: [] }, 0)).resolves.toBe(false);
        await expect(registry.putRun({ pending: [] }, 5)).resolves.toBe(false);
        const job = { name: '42', claimedAt: iso(5), covers: [id], attempt: 1 };
        await expect(registry.putRun({ pending: [], job }, 1)).resolves.toBe(true);
        await expect(registry.getRun()).resolves.toEqual({ version: 2, pending: [], job });
      });

      it('takes exactly one of two writes racing from the same version', async () => {
        await registry.putRun({ pending: [] }, 0);
        const answers = await Promise.all([registry.putRun({ pending: ['i-0123456789abcdef1'] }, 1), registry.putRun({ pending: ['i-0123456789abcdef2'] }, 1)]);
        expect(answers.filter(Boolean)).toHaveLength(1);
        await expect(registry.getRun()).resolves.toEqual({ version: 2, pending: [answers[0] ? 'i-0123456789abcdef1' : 'i-0123456789abcdef2'] });
      });
    });

    describe('list and get', () => {
      const item = { certname, state: 'in-service', createdAt: now.toISOString(), updatedAt: now.toISOString() };

      it('lists entries apart from the items that cannot be trusted, and gets none of those', async () => {
        const hostile: Array<[Record<string, unknown> & { instanceId: string }, RegExp]> = [
          [{ ...item, instanceId: 'i-0123456789abcdef1', state: 'haunted' }, /^it does not parse: .*state/s],
          [{ ...item, instanceId: 'i-0123456789abcdef2', certname: '../x' }, /^its certname "\.\.\/x" is not a lowercase DNS-style name/],
          [{ ...item, instanceId: 'i-0123456789abcdef3', certname: 'IP-10-0-0-1.Compute.Internal' }, /^its certname "IP-10-0-0-1\.Compute\.Internal" is not/],
          [{ ...item, instanceId: 'i-0123456789abcdef4', certname: 'a%2Fb c' }, /^its certname .* is not/],
          [{ ...item, instanceId: 'i-0123456789abcdef5', certname: `${'a'.repeat(300)}.internal` }, /^its certname /],
          [{ ...item, instanceId: 'i-0123456789abcdef6', checked: { publicKeySha256: 7 } }, /^it does not parse: .*checked/s],
          [{ ...item, instanceId: 'i-0123456789abcdef7', purge: { ca: 'x' } }, /^it does not parse: .*purge/s],
          [{ instanceId: 'i-0123456789abcdef8', state: 'signed' }, /^it does not parse: /],
        ];
        const badKeys: Array<[Record<string, unknown> & { instanceId: string }, string]> = [
          [{ ...item, instanceId: '../i-0123456789abcdef9' }, 'its key "../i-0123456789abcdef9" is not an instance id'],
          [{ ...item, instanceId: 'I-0123456789ABCDEFA' }, 'its key "I-0123456789ABCDEFA" is not an instance id'],
        ];
        await seedItem({ ...item, instanceId: id });
        for (const [each] of [...hostile, ...badKeys]) await seedItem(each);
        // Neither the run record nor key reports are entries, nor damaged ones.
        await registry.putRun({ pending: [id] }, 0);
        await registry.recordKeyReport(id, { publicKeySha256: keyA, reportedAt: now.toISOString() });

        const { entries, damaged } = await registry.list();
        expect(entries).toEqual([{ ...item, instanceId: id }]);
        const byKey = (left: { key: string }, right: { key: string }) => left.key.localeCompare(right.key);
        expect([...damaged].sort(byKey)).toEqual(
          [
            ...hostile.map(([each, problem]) => ({ key: each.instanceId, instanceId: each.instanceId, problem: expect.stringMatching(problem) })),
            ...badKeys.map(([each, problem]) => ({ key: each.instanceId, problem })),
          ].sort(byKey),
        );
        for (const [each] of hostile) await expect(registry.get(each.instanceId)).resolves.toBeUndefined();
        await expect(registry.get(id)).resolves.toEqual({ ...item, instanceId: id });
      });

      it('lists nothing when nothing was enrolled, and what the port wrote otherwise', async () => {
        await expect(registry.list()).resolves.toEqual({ entries: [], damaged: [] });
        await enrolled('in-service');
        await enrolled('purged', 'i-0123456789abcdef1');
        const { entries, damaged } = await registry.list();
        expect(damaged).toEqual([]);
        expect(entries.map((entry: RegistryEntry) => [entry.instanceId, entry.state]).sort()).toEqual([
          [id, 'in-service'],
          ['i-0123456789abcdef1', 'purged'],
        ]);
      });
    });
  });
}
