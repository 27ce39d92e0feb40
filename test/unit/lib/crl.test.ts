import { describe, expect, it } from 'vitest';
import { crlSerials, isSerialRevoked } from '../../../lib/puppet';
import { makeTestCa } from '../../support/pki';

describe('crlSerials', () => {
  it('reads a CRL with thousands of revocations (past asn1js\'s default node cap)', async () => {
    const ca = await makeTestCa();
    const serials = Array.from({ length: 5_000 }, (_, i) => (i + 1).toString(16).padStart(4, '0'));
    const pem = await ca.crl(serials);

    const revoked = crlSerials(pem);

    expect(revoked.size).toBe(5_000);
    expect(revoked.has(4_999n)).toBe(true);
    expect(isSerialRevoked(pem, 5_001)).toBe(false);
  });

  it('reads every CRL of a chain bundle, or only the issuer\'s when asked', async () => {
    const root = await makeTestCa('Root');
    const intermediate = await makeTestCa('Intermediate');
    const bundle = `${await intermediate.crl(['0a'])}\n${await root.crl(['0b'])}`;
    expect([...crlSerials(bundle)].sort()).toEqual([10n, 11n]);
    expect([...crlSerials(bundle, 'CN=Intermediate')]).toEqual([10n]);
  });
});
