import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { Extension, Extensions } from '@peculiar/asn1-x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { RefusedInputError } from '../../../lib/errors';
import { PUPPET_EXTENSION_OIDS, certificateFacts, readCertificate, parseMissing, readCsr } from '../../../lib/puppet';

function toPem(der: Uint8Array): string {
  return `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END CERTIFICATE REQUEST-----\n`;
}

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

  it('refuses garbage and oversized input with a RefusedInputError', () => {
    expect(() => readCsr('-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----')).toThrow(RefusedInputError);
    expect(() => readCsr('x'.repeat(20_000))).toThrow(/too large/);
  });

  it('refuses a PEM with anything but one certificate request in strict base64', async () => {
    const pem = (await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=node.lab.test', keys, signingAlgorithm: ALG }, webcrypto)).toString('pem');
    const body = pem.split('\n').slice(1, -1);
    const mangled = [pem.replace('CERTIFICATE REQUEST', 'CERTIFICATE'), `${pem}\n${pem}`, [body[0], ...body.slice(1).map((line, index) => (index === 2 ? `${line.slice(0, 10)}*${line.slice(10)}` : line))].join('\n')];
    for (const input of mangled) expect(() => readCsr(input), input.slice(0, 60)).toThrow(RefusedInputError);
    expect(readCsr(pem).commonName).toBe('node.lab.test');
  });

  it('refuses a CSR whose extensions are ambiguous or malformed, rather than guess what the CA will read', async () => {
    const twice = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=node.lab.test',
      keys,
      signingAlgorithm: ALG,
      extensions: [puppetExtension(PUPPET_EXTENSION_OIDS.pp_instance_id, 'i-0aaaaaaaaaaaaaaaa'), puppetExtension(PUPPET_EXTENSION_OIDS.pp_instance_id, 'i-0bbbbbbbbbbbbbbbb')],
    }, webcrypto);
    expect(() => readCsr(twice.toString('pem'))).toThrow(/Refused: extension pp_instance_id appears more than once/);

    const extensionRequest = (value: string) =>
      new x509.Attribute('1.2.840.113549.1.9.14', [AsnConvert.serialize(new Extensions([new Extension({ extnID: PUPPET_EXTENSION_OIDS.pp_instance_id, extnValue: new OctetString(new asn1js.Utf8String({ value }).toBER()) })]))]);
    const twoRequests = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=node.lab.test',
      keys,
      signingAlgorithm: ALG,
      attributes: [extensionRequest('i-0aaaaaaaaaaaaaaaa'), extensionRequest('i-0bbbbbbbbbbbbbbbb')],
    }, webcrypto);
    expect(() => readCsr(twoRequests.toString('pem'))).toThrow(/more than one extension request/);
    const oneRequest = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=node.lab.test', keys, signingAlgorithm: ALG, attributes: [extensionRequest('i-0aaaaaaaaaaaaaaaa')] }, webcrypto);
    expect(readCsr(oneRequest.toString('pem')).puppetExtensions).toEqual({ pp_instance_id: 'i-0aaaaaaaaaaaaaaaa' });

    const garbage = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=node.lab.test',
      keys,
      signingAlgorithm: ALG,
      attributes: [new x509.Attribute('1.2.840.113549.1.9.14', [new Uint8Array([0x04, 0x01, 0x00]).buffer])],
    }, webcrypto);
    expect(() => readCsr(garbage.toString('pem'))).toThrow(/Refused CSR: it is not a PEM-encoded PKCS#10 request/);
  });

  it('reads only DER with nothing after it, in plain base64: what it reads is what the CA reads', async () => {
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=node.lab.test', keys, signingAlgorithm: ALG }, webcrypto);
    const der = new Uint8Array(csr.rawData);
    expect(readCsr(toPem(der)).commonName).toBe('node.lab.test');
    expect(() => readCsr(toPem(Uint8Array.from([...der, 0x30, 0x00])))).toThrow(/not a PEM-encoded PKCS#10 request/);
    const base64 = Buffer.from(der).toString('base64');
    // Buffer's decoder stops at the first '=': whatever follows would be read by nobody but the CA.
    const padded = base64.endsWith('=') ? base64 : `${base64}=`;
    const smuggled = `-----BEGIN CERTIFICATE REQUEST-----\n${padded}AAAA\n-----END CERTIFICATE REQUEST-----\n`;
    expect(() => readCsr(smuggled)).toThrow(RefusedInputError);
  });

  it('verifies the signature over the request exactly as sent', async () => {
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=node.lab.test', keys, signingAlgorithm: ALG }, webcrypto);
    const der = new Uint8Array(csr.rawData);
    expect(readCsr(csr.toString('pem')).signatureValid).toBe(true);
    const badSignature = Uint8Array.from(der);
    const last = der.length - 1;
    badSignature[last] = (der[last] as number) ^ 0x01;
    expect(readCsr(toPem(badSignature)).signatureValid).toBe(false);
    // One byte of the signed part changed (inside the CN), the signature left as it was.
    const index = Buffer.from(der).indexOf('node.lab.test');
    const badBody = Uint8Array.from(der);
    badBody[index] = 'm'.charCodeAt(0);
    const forged = readCsr(toPem(badBody));
    expect(forged.commonName).toBe('mode.lab.test');
    expect(forged.signatureValid).toBe(false);
  });

  it.each([
    ['ECDSA P-256', { name: 'ECDSA', namedCurve: 'P-256' }, { name: 'ECDSA', hash: 'SHA-256' }],
    ['Ed25519', { name: 'Ed25519' }, { name: 'Ed25519' }],
  ])('verifies %s requests, the other key types a Puppet agent can use', async (_label, generate, sign) => {
    const pair = (await webcrypto.subtle.generateKey(generate, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=node.lab.test', keys: pair, signingAlgorithm: sign }, webcrypto);
    const facts = readCsr(csr.toString('pem'));
    expect(facts.signatureValid).toBe(true);
    expect(facts.commonName).toBe('node.lab.test');
  });

  it('reads a certificate\'s CN and key the same way, and no CN when there are two', async () => {
    const cert = await x509.X509CertificateGenerator.createSelfSigned({ name: 'CN=controller.lab.test, O=Example', keys, signingAlgorithm: ALG }, webcrypto);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=other.lab.test', keys, signingAlgorithm: ALG }, webcrypto);
    expect(readCertificate(cert.toString('pem'))).toMatchObject({ commonName: 'controller.lab.test', publicKeySha256: readCsr(csr.toString('pem')).publicKeySha256 });
    // A certificate with its chain after it, or openssl's bag attributes before it, is that certificate.
    const other = await x509.X509CertificateGenerator.createSelfSigned({ name: 'CN=Puppet CA: primary', keys, signingAlgorithm: ALG }, webcrypto);
    const withChain = `Bag Attributes\n    localKeyID: 01\nsubject=CN = controller.lab.test\n${cert.toString('pem')}\n${other.toString('pem')}\n`;
    expect(readCertificate(withChain).commonName).toBe('controller.lab.test');
    expect(() => readCertificate('no certificate here')).toThrow(RefusedInputError);
    const twoNames = await x509.X509CertificateGenerator.createSelfSigned({ name: 'CN=a.lab.test, CN=b.lab.test', keys, signingAlgorithm: ALG }, webcrypto);
    expect(readCertificate(twoNames.toString('pem')).commonName).toBeUndefined();
  });

  it('tells two certificates for the same name and key apart by serial and SHA-256 fingerprint, as @peculiar/x509 reads them', async () => {
    const issue = (serialNumber: string) =>
      x509.X509CertificateGenerator.createSelfSigned({ name: 'CN=node.lab.test', keys, signingAlgorithm: ALG, serialNumber }, webcrypto);
    const [first, second] = await Promise.all([issue('00ff01'), issue('0a')]);
    const read = readCertificate(first.toString('pem'));
    const thumbprint = Buffer.from(await first.getThumbprint('SHA-256', webcrypto)).toString('hex').toUpperCase();
    expect(read.serial).toBe(0xff01n);
    expect(read.sha256Fingerprint).toBe(thumbprint.match(/../g)?.join(':'));
    expect(readCertificate(second.toString('pem'))).toMatchObject({ serial: 10n, publicKeySha256: read.publicKeySha256 });
    expect(readCertificate(second.toString('pem')).sha256Fingerprint).not.toBe(read.sha256Fingerprint);
    expect(await certificateFacts(first.toString('pem'))).toMatchObject({ serial: read.serial, sha256Fingerprint: read.sha256Fingerprint });
  });
});

describe('parseMissing', () => {
  it('reads the certnames the CA reports as absent from a clean', () => {
    expect(parseMissing('The following certs do not exist and cannot be revoked: ["a.lab.test", "b.lab.test"]')).toEqual(['a.lab.test', 'b.lab.test']);
    expect(parseMissing('The following certs do not exist and cannot be revoked: [a.lab.test]')).toEqual(['a.lab.test']);
    expect(parseMissing('Successfully cleaned all certs.')).toEqual([]);
  });
});
