import { describe, expect, it } from 'vitest';
import { decideCrlInstall, inspectCrlBundle, type CrlBundle, type CrlFacts } from '../../../node-agent/src/crl';
import { makeTestCa } from '../../support/pki';

const INTERMEDIATE = 'CN=Puppet CA: primary.example.com';
const ROOT = 'CN=Puppet Root CA: 0123456789';

function crl(issuer: string, number: bigint | undefined, overrides: Partial<CrlFacts> = {}): CrlFacts {
  return { issuer, number, thisUpdate: new Date('2026-11-01T00:00:00Z'), signedByPinnedCa: true, ...overrides };
}

/** A bundle whose PEM differs whenever its facts do, as real CRLs' bytes do. */
function bundle(...crls: CrlFacts[]): CrlBundle {
  return { readable: true, pem: crls.map((c) => `${c.issuer} #${String(c.number)} ${c.thisUpdate.toISOString()}`).join('\n'), crls };
}

describe('decideCrlInstall', () => {
  const installed = bundle(crl(INTERMEDIATE, 7n), crl(ROOT, 1n));

  it('installs a newer CRL and says what moved', () => {
    expect(decideCrlInstall(bundle(crl(INTERMEDIATE, 8n), crl(ROOT, 1n)), installed)).toEqual({
      kind: 'install',
      reason: `newer: "${INTERMEDIATE}" number 7 → number 8`,
    });
  });

  it('never installs an older CRL over a newer one, for any CA of the chain', () => {
    expect(decideCrlInstall(bundle(crl(INTERMEDIATE, 6n), crl(ROOT, 1n)), installed)).toEqual({
      kind: 'refuse',
      reason: `the CA's CRL for "${INTERMEDIATE}" is older than the installed one (number 6 < number 7)`,
    });
    expect(decideCrlInstall(bundle(crl(INTERMEDIATE, 9n), crl(ROOT, 0n)), installed)).toMatchObject({ kind: 'refuse' });
  });

  it('compares by thisUpdate when a CRL has no number', () => {
    const old = bundle(crl(INTERMEDIATE, undefined));
    const later = bundle(crl(INTERMEDIATE, undefined, { thisUpdate: new Date('2026-11-02T00:00:00Z') }));
    expect(decideCrlInstall(later, old)).toMatchObject({ kind: 'install' });
    expect(decideCrlInstall(old, later)).toMatchObject({ kind: 'refuse', reason: expect.stringContaining('thisUpdate 2026-11-01T00:00:00.000Z < thisUpdate 2026-11-02') });
  });

  it('leaves an identical CRL alone', () => {
    expect(decideCrlInstall(bundle(crl(INTERMEDIATE, 7n), crl(ROOT, 1n)), installed)).toEqual({ kind: 'unchanged' });
  });

  it('refuses a CRL that would drop a CA of the chain', () => {
    expect(decideCrlInstall(bundle(crl(INTERMEDIATE, 8n)), installed)).toEqual({
      kind: 'refuse',
      reason: `the CA's CRL has no CRL for "${ROOT}", which the installed one has`,
    });
  });

  it('refuses a CRL the pinned CA did not sign, and an unreadable one', () => {
    expect(decideCrlInstall(bundle(crl(INTERMEDIATE, 99n, { signedByPinnedCa: false }), crl(ROOT, 1n)), installed)).toEqual({
      kind: 'refuse',
      reason: `the CA's CRL for "${INTERMEDIATE}" is not signed by the pinned CA certificate`,
    });
    expect(decideCrlInstall({ readable: false, problem: 'no PEM CRL in it' }, installed)).toEqual({ kind: 'refuse', reason: "the CA's CRL is unreadable: no PEM CRL in it" });
  });

  it('installs over nothing, over an unreadable file, and over CRLs the pinned CA did not sign', () => {
    const fetched = bundle(crl(INTERMEDIATE, 1n), crl(ROOT, 1n));
    expect(decideCrlInstall(fetched, undefined)).toEqual({ kind: 'install', reason: 'no CRL is installed' });
    expect(decideCrlInstall(fetched, { readable: false, problem: 'truncated' })).toEqual({ kind: 'install', reason: 'the installed CRL is unreadable: truncated' });
    expect(decideCrlInstall(fetched, bundle(crl(INTERMEDIATE, 50n, { signedByPinnedCa: false })))).toMatchObject({ kind: 'install' });
  });
});

describe('inspectCrlBundle', () => {
  it("reads each CRL of a chain bundle: issuer, number, thisUpdate, and the pinned CA's signature", async () => {
    const [root, intermediate] = await Promise.all([makeTestCa('Root'), makeTestCa('Intermediate')]);
    const thisUpdate = new Date('2026-11-01T12:00:00Z');
    const pem = `${await intermediate.crl(['0a'], { number: 12, thisUpdate })}\n${await root.crl([], { number: 3, thisUpdate })}`;

    expect(await inspectCrlBundle(pem, `${intermediate.cert}${root.cert}`)).toEqual({
      readable: true,
      pem,
      crls: [
        { issuer: 'CN=Intermediate', number: 12n, thisUpdate, signedByPinnedCa: true },
        { issuer: 'CN=Root', number: 3n, thisUpdate, signedByPinnedCa: true },
      ],
    });
  });

  it('marks a CRL whose issuer has the pinned name but another key, or is not pinned at all', async () => {
    const [pinned, impostor, stranger] = await Promise.all([makeTestCa('Puppet CA'), makeTestCa('Puppet CA'), makeTestCa('Elsewhere')]);
    const result = await inspectCrlBundle(`${await impostor.crl([], { number: 1 })}${await stranger.crl([])}`, pinned.cert);
    expect(result.readable && result.crls.map((c) => [c.issuer, c.signedByPinnedCa, c.number])).toEqual([
      ['CN=Puppet CA', false, 1n],
      ['CN=Elsewhere', false, undefined],
    ]);
  });

  it('calls anything else unreadable', async () => {
    const { cert } = await makeTestCa();
    expect(await inspectCrlBundle('<html>502 Bad Gateway</html>', cert)).toEqual({ readable: false, problem: 'no PEM CRL in it' });
    expect(await inspectCrlBundle('-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n', cert)).toMatchObject({ readable: false, problem: expect.stringMatching(/^it does not parse/) });
  });
});
