import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import { beforeAll, describe, expect, it } from 'vitest';
import { RefusedInputError } from '../../../lib/errors';
import { PUPPET_EXTENSION_OIDS, certificateFacts, parseMissing, readCsr } from '../../../lib/puppet';

const ALG = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };

/** Encodes an extension value the way Puppet does: a DER UTF8String inside the OCTET STRING. */
function puppetExtension(oid: string, value: string): x509.Extension {
  return new x509.Extension(oid, false, new asn1js.Utf8String({ value }).toBER());
}

describe('readCsr', () => {
  let keys: webcrypto.CryptoKeyPair;
  beforeAll(async () => {
    keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  });

  it('reads certname, DNS alt names and Puppet extensions by short name', async () => {
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=ip-10-0-1-23.lab.test',
      keys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.SubjectAlternativeNameExtension([
          { type: 'dns', value: 'ip-10-0-1-23.lab.test' },
          { type: 'dns', value: 'nlb.example.com' },
        ]),
        puppetExtension(PUPPET_EXTENSION_OIDS.pp_instance_id, 'i-0123456789abcdef0'),
        puppetExtension(PUPPET_EXTENSION_OIDS.pp_role, 'compile_master'),
        new x509.BasicConstraintsExtension(true),
      ],
    }, webcrypto);
    const facts = await readCsr(csr.toString('pem'));
    expect(facts.commonName).toBe('ip-10-0-1-23.lab.test');
    expect(facts.dnsAltNames).toEqual(['ip-10-0-1-23.lab.test', 'nlb.example.com']);
    expect(facts.otherAltNames).toEqual([]);
    expect(facts.puppetExtensions).toEqual({ pp_instance_id: 'i-0123456789abcdef0', pp_role: 'compile_master' });
    expect(facts.otherExtensionOids).toEqual(['2.5.29.19']);
    expect(facts.signatureValid).toBe(true);
  });

  it('reports IP alternative names separately so they can be refused', async () => {
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=node.lab.test',
      keys,
      signingAlgorithm: ALG,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: '10.0.0.1' }])],
    }, webcrypto);
    expect((await readCsr(csr.toString('pem'))).otherAltNames).toEqual(['ip:10.0.0.1']);
  });

  it('fingerprints the public key so a signer can match the issued certificate to the CSR it checked', async () => {
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=node.lab.test', keys, signingAlgorithm: ALG });
    const sameKey = await x509.X509CertificateGenerator.createSelfSigned({ name: 'CN=node.lab.test', keys, signingAlgorithm: ALG });
    const otherKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as unknown as typeof keys;
    const otherKey = await x509.X509CertificateGenerator.createSelfSigned({ name: 'CN=node.lab.test', keys: otherKeys, signingAlgorithm: ALG });
    const { publicKeySha256 } = await readCsr(csr.toString('pem'));
    expect(publicKeySha256).toMatch(/^[0-9a-f]{64}$/);
    expect((await certificateFacts(sameKey.toString('pem'))).publicKeySha256).toBe(publicKeySha256);
    expect((await certificateFacts(otherKey.toString('pem'))).publicKeySha256).not.toBe(publicKeySha256);
  });

  it('refuses garbage and oversized input with a RefusedInputError', async () => {
    await expect(readCsr('-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----')).rejects.toThrow(RefusedInputError);
    await expect(readCsr('x'.repeat(20_000))).rejects.toThrow(/too large/);
  });
});

describe('parseMissing', () => {
  it('reads the certnames the CA reports as absent from a clean', () => {
    expect(parseMissing('The following certs do not exist and cannot be revoked: ["a.lab.test", "b.lab.test"]')).toEqual(['a.lab.test', 'b.lab.test']);
    expect(parseMissing('The following certs do not exist and cannot be revoked: [a.lab.test]')).toEqual(['a.lab.test']);
    expect(parseMissing('Successfully cleaned all certs.')).toEqual([]);
  });
});
