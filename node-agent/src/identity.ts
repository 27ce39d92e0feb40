import { X509Certificate, createPrivateKey } from 'node:crypto';
import { publicKeySha256, readCsr, type CertificateFacts } from '../../lib/puppet';

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
     * The CA's pending CSR, told apart by its key: one for this node's private key is ours (with
     * that key's hash, which the controller must hear again); undefined when not looked at (the
     * CA serves a certificate, so there can be no pending CSR to resume).
     */
    csr: PendingCsr | undefined;
    revokedSerials: ReadonlySet<bigint>;
  };
}

export type BootPlan =
  /** The certificate is still good: change nothing. */
  | { kind: 'keep'; reason: string }
  /** The CA signed a certificate for our key that we have not installed yet: install it. */
  | { kind: 'install'; reason: string }
  /** Our CSR is pending at the CA: report its key again, then wait for it to be signed. */
  | { kind: 'await'; reason: string; publicKeySha256: string }
  /**
   * No usable identity and no CSR of ours at the CA: back up, wipe, make a key, report it, wait
   * until the CA holds no other CSR for the certname, submit ours.
   */
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
  if (ca.csr?.state === 'ours') {
    return { kind: 'await', reason: `${previously}; our CSR is pending at the CA`, publicKeySha256: ca.csr.publicKeySha256 };
  }
  if (ca.csr?.state === 'foreign') {
    // Anyone reaching the CA can submit a CSR for our certname. Only this instance can report its
    // key to the controller, which then removes a pending CSR for any other key.
    return { kind: 'enroll', reason: `${previously}; the CA holds a pending CSR for ${certname} that is not for this node's key: enrolling with a new key, whose report lets the controller remove that CSR` };
  }
  return { kind: 'enroll', reason: previously };
}

export type PendingCsr = { state: 'none' | 'foreign' } | { state: 'ours'; publicKeySha256: string };

/**
 * Told apart by key rather than by comparison with the copy Puppet saves after submitting: a
 * crash between the CA taking our CSR and Puppet saving that copy still leaves the CSR ours. A CSR
 * or key that cannot be read is not ours.
 */
export function pendingCsr(csrPem: string | undefined, keyPem: string | undefined): PendingCsr {
  if (csrPem === undefined) return { state: 'none' };
  const ours = keyPem === undefined ? undefined : unlessMalformed(() => publicKeySha256(keyPem));
  const theirs = unlessMalformed(() => readCsr(csrPem).publicKeySha256);
  return ours !== undefined && ours === theirs ? { state: 'ours', publicKeySha256: ours } : { state: 'foreign' };
}

function unlessMalformed<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
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
