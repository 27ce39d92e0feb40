// @peculiar/x509 resolves its crypto providers through tsyringe, which needs this polyfill first.
import 'reflect-metadata';
import { X509Certificate, X509Crl } from '@peculiar/x509';
import { readCertificate } from './csr';

/** Serial numbers are compared as integers: the CA API gives decimals, X.509 gives hex. */
export function serialToBigInt(serial: string | number | bigint): bigint {
  if (typeof serial === 'bigint') return serial;
  if (typeof serial === 'number') return BigInt(serial);
  const hex = serial.replace(/[^0-9a-f]/gi, '');
  return BigInt(`0x${hex || '0'}`);
}

/**
 * Revoked serials from a PEM bundle of CRLs. Puppet 7's CA serves its chain's CRLs (the issuing
 * intermediate's and the root's) in one answer; serials are unique only per issuer, so callers
 * compare against the CRL of the certificate's issuer when that matters.
 */
export function crlSerials(crlPem: string, issuer?: string): Set<bigint> {
  const serials = new Set<bigint>();
  for (const block of crlPem.match(/-----BEGIN (?:X509 )?CRL-----[\s\S]+?-----END (?:X509 )?CRL-----/g) ?? []) {
    // asn1js caps a parse at 10,000 nodes (~1,200 revocations): a busy CA's CRL grows past that,
    // since every purged compile master stays listed until its certificate would have expired.
    // The CRL comes from the pinned CA, so the cap follows its size instead (a node is ≥ 2 bytes).
    const crl = new X509Crl(block, { berOptions: { maxNodes: Math.max(10_000, block.length) } });
    if (issuer !== undefined && crl.issuer !== issuer) continue;
    for (const entry of crl.entries) serials.add(serialToBigInt(entry.serialNumber));
  }
  return serials;
}

export function isSerialRevoked(crlPem: string, serial: string | number | bigint, issuer?: string): boolean {
  return crlSerials(crlPem, issuer).has(serialToBigInt(serial));
}

export interface CertificateFacts {
  subjectCommonName: string | undefined;
  issuer: string;
  serial: bigint;
  /** "AB:CD:…", SHA-256, the format Puppet's CA reports as `fingerprint`. */
  sha256Fingerprint: string;
  notAfter: Date;
  /** SHA-256 of the SubjectPublicKeyInfo, hex: compare with CsrFacts.publicKeySha256. */
  publicKeySha256: string;
}

/** Identity (serial, fingerprint, key) from readCertificate, the one reader; issuer and expiry from @peculiar/x509. */
export async function certificateFacts(pem: string): Promise<CertificateFacts> {
  const cert = new X509Certificate(pem);
  const { commonName, publicKeySha256, serial, sha256Fingerprint } = readCertificate(pem);
  return { subjectCommonName: commonName, issuer: cert.issuer, serial, sha256Fingerprint, notAfter: cert.notAfter, publicKeySha256 };
}
