// @peculiar/x509 resolves its crypto providers through tsyringe, which needs this polyfill first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';

/**
 * A throwaway in-memory PKI for unit tests that need real TLS without the Puppet lab: a CA and
 * leaf certificates it signs, as PEM.
 */

const CRL_NUMBER_OID = '2.5.29.20';

const ALGORITHM = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };

export interface Pem {
  cert: string;
  key: string;
}

export interface TestCa extends Pem {
  /** A leaf certificate, for a new key or for `keys` (a CSR's, when standing in for signing it). */
  issue(options: { commonName: string; dnsNames?: string[]; ips?: string[]; keys?: webcrypto.CryptoKeyPair }): Promise<Pem>;
  /** A CRL listing the given serials (hex), signed by this CA; Puppet's CA sets a CRL number too. */
  crl(serials: string[], options?: { number?: number; thisUpdate?: Date }): Promise<string>;
}

async function exportKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

export async function makeTestCa(commonName = 'Test CA'): Promise<TestCa> {
  const keys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${commonName}`,
    keys,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: ALGORITHM,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  }, webcrypto);
  return {
    cert: caCert.toString('pem'),
    key: await exportKey(keys.privateKey),
    async crl(serials, options = {}) {
      const extensions = options.number === undefined ? [] : [new x509.Extension(CRL_NUMBER_OID, false, new asn1js.Integer({ value: options.number }).toBER(false))];
      const crl = await x509.X509CrlGenerator.create(
        { issuer: caCert.subject, thisUpdate: options.thisUpdate, extensions, nextUpdate: new Date(Date.now() + 86_400_000), signingKey: keys.privateKey, signingAlgorithm: ALGORITHM, entries: serials.map((serialNumber) => ({ serialNumber, reason: x509.X509CrlReason.cessationOfOperation })) },
        webcrypto,
      );
      return crl.toString('pem');
    },
    async issue({ commonName: cn, dnsNames = [], ips = [], keys: given }) {
      const leafKeys = given ?? ((await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair);
      const names = [...dnsNames.map((value) => ({ type: 'dns' as const, value })), ...ips.map((value) => ({ type: 'ip' as const, value }))];
      const cert = await x509.X509CertificateGenerator.create({
        subject: `CN=${cn}`,
        issuer: caCert.subject,
        publicKey: leafKeys.publicKey,
        signingKey: keys.privateKey,
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 86_400_000),
        signingAlgorithm: ALGORITHM,
        extensions: names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : [],
      }, webcrypto);
      return { cert: cert.toString('pem'), key: await exportKey(leafKeys.privateKey) };
    },
  };
}
