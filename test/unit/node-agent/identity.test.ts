import { describe, expect, it } from 'vitest';
import type { CertificateFacts } from '../../../lib/puppet';
import { certificateFacts } from '../../../lib/puppet';
import { publicKeySha256 } from '../../../lib/puppet';
import { decideBoot, keyFitsCertificate, pendingCsr, type IdentityObservation } from '../../../node-agent/src/identity';
import { generateKeyPair, makeCsr } from '../../../lab/csr';
import { makeTestCa } from '../../support/pki';

const NOW = new Date('2026-06-01T00:00:00Z');
const CERTNAME = 'ip-10-0-1-23.eu-west-1.compute.internal';

function facts(serial: bigint, fingerprint = `FP:${serial}`, notAfter = new Date('2031-01-01T00:00:00Z')): CertificateFacts {
  return { serial, sha256Fingerprint: fingerprint, publicKeySha256: `KEY:${serial}`, subjectCommonName: CERTNAME, issuer: 'CN=Puppet CA', notAfter };
}

function observation(overrides: { local?: Partial<IdentityObservation['local']>; ca?: Partial<IdentityObservation['ca']> }): IdentityObservation {
  return {
    certname: CERTNAME,
    now: NOW,
    local: { cert: undefined, keyMatchesCert: false, ...overrides.local },
    ca: { cert: undefined, csr: { state: 'none' }, revokedSerials: new Set(), ...overrides.ca },
  };
}

const ours = { local: { cert: facts(7n), keyMatchesCert: true } };

describe('the boot decision table', () => {
  it('keeps a certificate the CA still serves unchanged and has not revoked', () => {
    const plan = decideBoot(observation({ ...ours, ca: { cert: { ...facts(7n), matchesLocalKey: true }, revokedSerials: new Set([3n]) } }));
    expect(plan).toMatchObject({ kind: 'keep' });
  });

  it('enrolls on first boot (nothing local, nothing at the CA)', () => {
    expect(decideBoot(observation({}))).toEqual({ kind: 'enroll', reason: 'no certificate yet' });
  });

  it('re-enrolls when the CA no longer serves our certificate (cleaned while the node was down)', () => {
    const plan = decideBoot(observation({ ...ours, ca: { revokedSerials: new Set([7n]) } }));
    expect(plan).toMatchObject({ kind: 'enroll', reason: expect.stringContaining('no longer serves certificate 7 (purged)') });
  });

  it('waits, without a new CSR, when our own CSR is pending (restarted while waiting for signing), to report its key again', () => {
    const publicKeySha256 = 'a'.repeat(64);
    expect(decideBoot(observation({ ca: { csr: { state: 'ours', publicKeySha256 } } }))).toMatchObject({ kind: 'await', publicKeySha256 });
  });

  it('enrolls with a new key, not blocked, when the CA holds a pending CSR for another key (anyone on 8140 can submit one)', () => {
    for (const local of [ours.local, { cert: undefined, keyMatchesCert: false }]) {
      const plan = decideBoot(observation({ local, ca: { csr: { state: 'foreign' } } }));
      expect(plan.kind).toBe('enroll');
      expect(plan.reason).toMatch(/pending CSR .* not for this node's key.*controller remove/);
    }
  });

  it('installs a certificate the CA signed for our key while we were not looking', () => {
    expect(decideBoot(observation({ ca: { cert: { ...facts(9n), matchesLocalKey: true } } }))).toMatchObject({ kind: 'install' });
    // Also when an older local certificate is still on disk.
    expect(decideBoot(observation({ ...ours, ca: { cert: { ...facts(9n), matchesLocalKey: true } } }))).toMatchObject({ kind: 'install' });
  });

  it.each([
    ['revoked but not cleaned', { cert: { ...facts(7n), matchesLocalKey: true }, revokedSerials: new Set([7n]) }, /has revoked it/],
    ['expired', { cert: { ...facts(7n, 'FP:7', new Date('2026-05-01T00:00:00Z')), matchesLocalKey: true } }, /expired on 2026-05-01/],
    ['signed for a key this node does not have', { cert: { ...facts(8n), matchesLocalKey: false } }, /no private key for it/],
  ])('is blocked, changing nothing, when the CA holds a certificate %s', (_name, ca, reason) => {
    const plan = decideBoot(observation({ ...ours, ca }));
    expect(plan.kind).toBe('blocked');
    expect(plan.reason).toMatch(reason);
    expect(plan.reason).toContain(`puppetserver ca clean --certname ${CERTNAME}`);
  });

  it('does not keep a local certificate whose private key is gone', () => {
    const plan = decideBoot(observation({ local: { cert: facts(7n), keyMatchesCert: false }, ca: { cert: { ...facts(7n), matchesLocalKey: false } } }));
    expect(plan.kind).toBe('blocked');
  });
});

describe('key and PEM comparisons', () => {
  it('tells whether a private key belongs to a certificate', async () => {
    const ca = await makeTestCa();
    const a = await ca.issue({ commonName: CERTNAME });
    const b = await ca.issue({ commonName: CERTNAME });
    expect(keyFitsCertificate(a.cert, a.key)).toBe(true);
    expect(keyFitsCertificate(a.cert, b.key)).toBe(false);
    expect(keyFitsCertificate(a.cert, undefined)).toBe(false);
    expect(keyFitsCertificate(a.cert, 'not a key')).toBe(false);
    expect((await certificateFacts(a.cert)).sha256Fingerprint).not.toBe((await certificateFacts(b.cert)).sha256Fingerprint);
  });

  it('tells our pending CSR from another by its key, whatever else it says', async () => {
    const mine = await makeCsr({ certname: CERTNAME });
    const impostor = await makeCsr({ certname: CERTNAME, keyPair: await generateKeyPair() });
    expect(pendingCsr(mine.csrPem, mine.privateKeyPem)).toEqual({ state: 'ours', publicKeySha256: publicKeySha256(mine.privateKeyPem) });
    expect(pendingCsr(impostor.csrPem, mine.privateKeyPem)).toEqual({ state: 'foreign' });
    expect(pendingCsr(mine.csrPem, undefined)).toEqual({ state: 'foreign' });
    expect(pendingCsr(mine.csrPem, 'not a key')).toEqual({ state: 'foreign' });
    expect(pendingCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', mine.privateKeyPem)).toEqual({ state: 'foreign' });
    expect(pendingCsr(undefined, mine.privateKeyPem)).toEqual({ state: 'none' });
  });
});
