import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { Attributes, CertificationRequest, CertificationRequestInfo } from '@peculiar/asn1-csr';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  Attribute,
  AttributeTypeAndValue,
  AttributeValue,
  Extension,
  Extensions,
  GeneralName,
  Name,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectPublicKeyInfo,
} from '@peculiar/asn1-x509';
import { PuppetApiError } from '../errors';
import type { CaClient } from './ca';

/*
 * Nothing in Puppet Server's HTTP API reports its settings, so the CA's policy is found out by
 * asking it to do something harmless and reading its answer. Probe CSRs are built here from the
 * ASN.1 schemas the controller bundles anyway (not @peculiar/x509, see csr.ts), for a reserved
 * name (.invalid, RFC 2606) and with a broken signature: Puppet Server verifies signatures before
 * it signs, so not even an operator's `puppetserver ca sign --all` can issue a certificate for one.
 */

const COMMON_NAME_OID = '2.5.4.3';
const EXTENSION_REQUEST_OID = '1.2.840.113549.1.9.14';
const SAN_OID = '2.5.29.17';
const ECDSA_WITH_SHA256_OID = '1.2.840.10045.4.3.2';

/** A throwaway certname no real node can have, e.g. `doctor-probe-0a1b2c3d4e5f.compile-masters.invalid`. */
export function probeCertname(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}.compile-masters.invalid`;
}

/**
 * A well-formed PKCS#10 CSR (PEM) for `certname` with a fresh P-256 key, asking for `dnsAltNames`
 * if any, whose signature does not verify.
 */
export function probeCsr(certname: string, dnsAltNames: readonly string[] = []): string {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const attributes = new Attributes();
  if (dnsAltNames.length > 0) {
    const san = new SubjectAlternativeName(dnsAltNames.map((dNSName) => new GeneralName({ dNSName })));
    const extensions = new Extensions([new Extension({ extnID: SAN_OID, critical: false, extnValue: new OctetString(AsnConvert.serialize(san)) })]);
    attributes.push(new Attribute({ type: EXTENSION_REQUEST_OID, values: [AsnConvert.serialize(extensions)] }));
  }
  const info = new CertificationRequestInfo({
    version: 0,
    subject: new Name([new RelativeDistinguishedName([new AttributeTypeAndValue({ type: COMMON_NAME_OID, value: new AttributeValue({ utf8String: certname }) })])]),
    subjectPKInfo: AsnConvert.parse(publicKey.export({ type: 'spki', format: 'der' }), SubjectPublicKeyInfo),
    attributes,
  });
  const signature = sign('sha256', Buffer.from(AsnConvert.serialize(info)), privateKey);
  // The DER signature's last byte is the end of its `s` INTEGER: flipping it keeps the encoding
  // valid and the signature wrong.
  signature[signature.length - 1]! ^= 0xff;
  const csr = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: new AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA256_OID }),
    signature: new Uint8Array(signature).buffer,
  });
  const base64 = Buffer.from(AsnConvert.serialize(csr)).toString('base64');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${base64.replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE REQUEST-----\n`;
}

/**
 * Puppet Server 7's 400 for a CSR whose certname already has a CSR or certificate while
 * allow-duplicate-certs is false (certificate_authority.clj, validate-duplicate-cert-policy!):
 * "<certname> already has a requested certificate; ignoring certificate request". With it true
 * the CA logs "new certificate will overwrite it" and accepts the CSR (200).
 */
const DUPLICATE_REFUSED = /already has a (requested|signed|revoked) certificate; ignoring certificate request/;

/**
 * Whether the CA accepts a CSR for a certname that already has one (`allow-duplicate-certs`,
 * puppet.conf `[server]` or ca.conf's certificate-authority section). When it does, anyone who can
 * reach port 8140 can replace a pending CSR, or queue a new one for a certname that holds a signed
 * certificate, and whatever signs next issues it. Submits the same probe CSR twice, reads the
 * second answer, and deletes the CSR. Throws when the CA answers anything else: the caller cannot
 * tell, and must assume the worst.
 */
export async function probeDuplicateCerts(ca: CaClient, prefix: string): Promise<boolean> {
  const certname = probeCertname(prefix);
  const csr = probeCsr(certname);
  try {
    await ca.submitCsr(certname, csr);
    try {
      await ca.submitCsr(certname, csr);
      return true;
    } catch (error) {
      if (error instanceof PuppetApiError && error.status === 400 && DUPLICATE_REFUSED.test(error.message)) return false;
      throw error;
    }
  } finally {
    await ca.delete(certname);
  }
}
