import { describe, expect, it } from 'vitest';
import type { CertificateContents } from '../../../lib/puppet/csr';
import type { CaHolding, PurgeStep } from '../../../lambdas/controller/model';
import { PUPPETDB_CONCURRENCY, caVerdict, certificateIdentity, removeFromPuppet, type CertificateIdentity, type PurgeSubject } from '../../../lambdas/controller/puppet-purge';
import { entry } from './support';

function certificate(n: number, overrides: Partial<CertificateContents> = {}): CertificateContents {
  return {
    commonName: `node-${n}.lab.test`,
    dnsAltNames: [],
    otherAltNames: [],
    puppetExtensions: { pp_instance_id: `i-${n.toString(16).padStart(17, '0')}` },
    otherExtensionOids: [],
    publicKeySha256: `key-${n}`,
    serial: BigInt(n),
    sha256Fingerprint: `FP:${n}`,
    ...overrides,
  };
}

const STARTED = '2026-11-20T11:58:00.000Z';

function subject(n: number, done: PurgeStep[] = []): PurgeSubject {
  return {
    instanceId: `i-${n.toString(16).padStart(17, '0')}`,
    certname: `node-${n}.lab.test`,
    certificate: { kind: 'fingerprint', sha256Fingerprint: `FP:${n}` },
    startedAt: STARTED,
    done: new Set(done),
  };
}

/** A CA and PuppetDB that record calls; each certname holds the certificate `held` says (the subject's own by default). */
function recordingPuppet(options: { failClean?: boolean; held?: Record<string, CaHolding> } = {}) {
  const calls = { cleaned: [] as string[][], deactivated: [] as Array<[string, string]>, maxInFlight: 0, steps: [] as string[], leftAlone: [] as string[] };
  let inFlight = 0;
  return {
    calls,
    progress: {
      stepDone: async (s: PurgeSubject, step: PurgeStep) => void calls.steps.push(`${s.certname}:${step}`),
      leftAlone: (s: PurgeSubject, why: string) => void calls.leftAlone.push(`${s.certname}: ${why}`),
    },
    puppet: {
      async holding(certname: string): Promise<CaHolding> {
        return options.held?.[certname] ?? { requested: false, certificate: certificate(Number(/node-(\d+)/.exec(certname)?.[1])) };
      },
      async clean(certnames: readonly string[]) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        if (options.failClean) throw new Error('CA down');
        calls.cleaned.push([...certnames]);
      },
      async deactivate(certname: string, at: Date) {
        inFlight++;
        calls.maxInFlight = Math.max(calls.maxInFlight, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 1));
        inFlight--;
        calls.deactivated.push([certname, at.toISOString()]);
      },
    },
  };
}

describe('removeFromPuppet', () => {
  const subjects = Array.from({ length: 20 }, (_, i) => subject(i + 1));
  const certnames = subjects.map((s) => s.certname);

  it("cleans the whole batch in one CA call and deactivates each node at the purge's start, with bounded concurrency", async () => {
    const { puppet, calls, progress } = recordingPuppet();
    await removeFromPuppet(puppet, subjects, progress);
    expect(calls.cleaned).toEqual([certnames]);
    expect(calls.deactivated.map(([certname]) => certname).sort()).toEqual([...certnames].sort());
    expect(new Set(calls.deactivated.map(([, at]) => at))).toEqual(new Set([STARTED]));
    expect(calls.maxInFlight).toBe(PUPPETDB_CONCURRENCY);
    expect(calls.steps).toHaveLength(40);
  });

  it('still deactivates every node when the CA fails, then reports the CA failure; only the PuppetDB steps count as done', async () => {
    const { puppet, calls, progress } = recordingPuppet({ failClean: true });
    await expect(removeFromPuppet(puppet, subjects, progress)).rejects.toThrow('CA down');
    expect(calls.deactivated).toHaveLength(certnames.length);
    expect(calls.steps.every((step) => step.endsWith(':puppetdb'))).toBe(true);
  });

  it('does only the steps an earlier attempt left, and cleans only certnames still holding the subject\'s own certificate', async () => {
    const { puppet, calls, progress } = recordingPuppet({
      held: {
        'node-2.lab.test': { requested: false, certificate: certificate(99) },
        'node-3.lab.test': { requested: true, certificate: undefined },
        'node-4.lab.test': { requested: false, certificate: undefined },
      },
    });
    await removeFromPuppet(puppet, [subject(1, ['ca']), subject(2), subject(3, ['puppetdb']), subject(4), subject(5)], progress);
    expect(calls.cleaned).toEqual([['node-5.lab.test']]);
    expect(calls.deactivated.map(([certname]) => certname).sort()).toEqual(['node-1.lab.test', 'node-2.lab.test', 'node-4.lab.test', 'node-5.lab.test']);
    expect(calls.leftAlone).toEqual([expect.stringMatching(/^node-2.lab.test: .*serial 99\) is not the one issued/), expect.stringMatching(/^node-3.lab.test: .*pending certificate request/)]);
    expect(calls.steps.filter((step) => step.endsWith(':ca')).sort()).toEqual(['node-2.lab.test:ca', 'node-3.lab.test:ca', 'node-4.lab.test:ca', 'node-5.lab.test:ca']);
  });

  it('makes no CA call at all when every CA step is done', async () => {
    const { puppet, calls, progress } = recordingPuppet({ failClean: true });
    await removeFromPuppet(puppet, [subject(1, ['ca'])], progress);
    expect(calls.cleaned).toEqual([]);
    expect(calls.deactivated).toHaveLength(1);
  });
});

describe('caVerdict: a purge revokes only the certificate issued to its instance', () => {
  const ours = certificate(1);
  const theirs = certificate(2);
  const rows: Array<[string, CertificateIdentity, CaHolding, string]> = [
    ['our verified certificate', { kind: 'fingerprint', sha256Fingerprint: 'FP:1' }, { requested: false, certificate: ours }, 'clean'],
    ['another certificate, same certname', { kind: 'fingerprint', sha256Fingerprint: 'FP:1' }, { requested: false, certificate: theirs }, 'leave'],
    ['the same key signed again (another certificate)', { kind: 'fingerprint', sha256Fingerprint: 'FP:1' }, { requested: false, certificate: certificate(3, { publicKeySha256: 'key-1' }) }, 'leave'],
    ['a pending request (someone enrolling)', { kind: 'fingerprint', sha256Fingerprint: 'FP:1' }, { requested: true, certificate: undefined }, 'leave'],
    ['our certificate, and a pending request besides (duplicate certs allowed): ours is still revoked', { kind: 'fingerprint', sha256Fingerprint: 'FP:1' }, { requested: true, certificate: ours }, 'clean'],
    ["another's certificate, and a pending request besides", { kind: 'fingerprint', sha256Fingerprint: 'FP:1' }, { requested: true, certificate: theirs }, 'leave'],
    ['nothing at all', { kind: 'fingerprint', sha256Fingerprint: 'FP:1' }, { requested: false, certificate: undefined }, 'nothing-there'],
    ['signed, never verified: the checked key', { kind: 'key', publicKeySha256: 'key-1' }, { requested: false, certificate: ours }, 'clean'],
    ['signed, never verified: another key', { kind: 'key', publicKeySha256: 'key-1' }, { requested: false, certificate: theirs }, 'leave'],
    ['enrolled before records: its pp_instance_id', { kind: 'instance', instanceId: 'i-00000000000000001' }, { requested: false, certificate: ours }, 'clean'],
    ['enrolled before records: another pp_instance_id', { kind: 'instance', instanceId: 'i-00000000000000001' }, { requested: false, certificate: theirs }, 'leave'],
  ];
  it.each(rows)('%s', (_name, identity, holding, verdict) => {
    expect(caVerdict(identity, holding).kind).toBe(verdict);
  });

  it('identifies an entry by its issued certificate, else by the key it checked, else by its instance id', () => {
    const checked = { publicKeySha256: 'key-1', dnsAltNames: [], puppetExtensions: {} };
    expect(certificateIdentity(entry(1, 'in-service', { checked, issued: { serial: '1', sha256Fingerprint: 'FP:1', verifiedAt: STARTED } }))).toEqual({ kind: 'fingerprint', sha256Fingerprint: 'FP:1' });
    expect(certificateIdentity(entry(1, 'signed', { checked }))).toEqual({ kind: 'key', publicKeySha256: 'key-1' });
    expect(certificateIdentity(entry(1, 'in-service'))).toEqual({ kind: 'instance', instanceId: entry(1, 'signed').instanceId });
  });
});
