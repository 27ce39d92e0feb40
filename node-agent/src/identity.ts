import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { CertificateFacts } from '../../lib/puppet';

/**
 * What the node and the CA know about this node's identity, gathered before deciding anything.
 * Only unauthenticated CA endpoints are involved (certificate, certificate_request, CRL): the node
 * holds no credentials beyond its own certificate.
 */
export interface IdentityObservation {
  certname: string;
  now: Date;
  local: {
    /** The certificate in <ssldir>/certs/<certname>.pem, if any. */
    cert: CertificateFacts | undefined;
    /** Whether <ssldir>/private_keys/<certname>.pem exists and belongs to that certificate. */
    keyMatchesCert: boolean;
  };
  ca: {
    /** The certificate the CA serves for the certname, and whether our private key fits it. */
    cert: (CertificateFacts & { matchesLocalKey: boolean }) | undefined;
    /**
     * The CA's pending CSR compared with the one Puppet saved when it submitted ours; undefined
     * when not looked at (the CA serves a certificate, so there can be no pending CSR to resume).
     */
    csr: 'none' | 'ours' | 'foreign' | undefined;
    revokedSerials: ReadonlySet<bigint>;
  };
}

export type BootPlan =
  /** The certificate is still good: change nothing. */
  | { kind: 'keep'; reason: string }
  /** The CA signed a certificate for our key that we have not installed yet: install it. */
  | { kind: 'install'; reason: string }
  /** Our CSR is pending at the CA: wait for it to be signed. */
  | { kind: 'await'; reason: string }
  /** No usable identity and nothing at the CA: back up, wipe and submit a new CSR. */
  | { kind: 'enroll'; reason: string }
  /**
   * The CA holds something for this certname that we cannot use, and it refuses new CSRs while it
   * does (no allow-duplicate-certs). Only the controller or an operator can clean it.
   */
  | { kind: 'blocked'; reason: string };

const CLEAN_HINT = (certname: string) =>
  `the CA refuses a new CSR until it is cleaned: the controller cleans nodes it purges, or an operator runs 'puppetserver ca clean --certname ${certname}' on the primary`;

/**
 * The boot decision table. A CA that could not be asked never reaches this function: an
 * unreachable CA is not evidence that the certificate is gone.
 */
export function decideBoot(observed: IdentityObservation): BootPlan {
  const { certname, local, ca } = observed;
  if (ca.cert) {
    const serial = ca.cert.serial.toString(16).toUpperCase();
    if (ca.revokedSerials.has(ca.cert.serial)) {
      return { kind: 'blocked', reason: `the CA still holds certificate ${serial} for ${certname} and has revoked it; ${CLEAN_HINT(certname)}` };
    }
    if (ca.cert.notAfter.getTime() <= observed.now.getTime()) {
      return { kind: 'blocked', reason: `the CA's certificate ${serial} for ${certname} expired on ${ca.cert.notAfter.toISOString()}; ${CLEAN_HINT(certname)}` };
    }
    if (!ca.cert.matchesLocalKey) {
      return { kind: 'blocked', reason: `the CA holds certificate ${serial} for ${certname} but this node has no private key for it; ${CLEAN_HINT(certname)}` };
    }
    if (local.cert && local.keyMatchesCert && local.cert.sha256Fingerprint === ca.cert.sha256Fingerprint) {
      return { kind: 'keep', reason: `certificate ${serial} is the one the CA serves and is not revoked` };
    }
    return { kind: 'install', reason: `the CA signed certificate ${serial} for this node's key; it is not installed yet` };
  }
  const previously = local.cert ? `the CA no longer serves certificate ${local.cert.serial.toString(16).toUpperCase()} (purged)` : 'no certificate yet';
  switch (ca.csr) {
    case 'ours':
      return { kind: 'await', reason: `${previously}; our CSR is pending at the CA` };
    case 'foreign':
      return { kind: 'blocked', reason: `${previously}, and the CA holds a pending CSR for ${certname} that this node did not submit; ${CLEAN_HINT(certname)}` };
    default:
      return { kind: 'enroll', reason: previously };
  }
}

/** Whether a PEM private key belongs to a PEM certificate; malformed input is "no". */
export function keyFitsCertificate(certPem: string, keyPem: string | undefined): boolean {
  if (keyPem === undefined) return false;
  try {
    return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

/** PEM documents compared by content, whatever their line wrapping. */
export function samePem(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  const strip = (pem: string) => pem.replace(/\s+/g, '');
  return strip(a) === strip(b);
}
