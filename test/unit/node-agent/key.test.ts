import { createPrivateKey, createPublicKey } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { publicKeySha256, readCsr } from '../../../lib/puppet';
import { RSA_KEY_BITS, newPrivateKeyPem } from '../../../node-agent/src/key';
import { keyPairFromPem, makeCsr } from '../../../lab/csr';

describe("the node agent's own key", () => {
  // RSA 4096 takes seconds of CPU: two keys for the whole file.
  let pem: string;
  let other: string;
  beforeAll(async () => {
    [pem, other] = await Promise.all([newPrivateKeyPem(), newPrivateKeyPem()]);
  }, 60_000);

  it("is RSA 4096 (Puppet's default keylength), as PKCS#1 PEM like the keys Puppet writes", () => {
    expect(pem).toMatch(/^-----BEGIN RSA PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END RSA PRIVATE KEY-----\n$/);
    expect(createPrivateKey(pem).asymmetricKeyDetails).toMatchObject({ modulusLength: RSA_KEY_BITS, publicExponent: 65537n });
    expect(RSA_KEY_BITS).toBe(4096);
    expect(other).not.toBe(pem);
  });

  it('hashes, in every form the agent holds it, as the controller hashes the CSR made from it', async () => {
    const { csrPem } = await makeCsr({ certname: 'ip-10-0-1-23.eu-west-1.compute.internal', keyPair: await keyPairFromPem(pem) });
    const fromCsr = readCsr(csrPem).publicKeySha256;
    expect(publicKeySha256(pem)).toBe(fromCsr);
    expect(publicKeySha256(createPrivateKey(pem))).toBe(fromCsr);
    expect(publicKeySha256(createPublicKey(pem))).toBe(fromCsr);
    expect(publicKeySha256(createPrivateKey(pem).export({ type: 'pkcs8', format: 'pem' }) as string)).toBe(fromCsr);
    expect(publicKeySha256(other)).not.toBe(fromCsr);
  });
});
