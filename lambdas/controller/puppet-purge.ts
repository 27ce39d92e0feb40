import { mapLimit } from '../../lib/concurrency';
import type { CertificateContents } from '../../lib/puppet/csr';
import type { CaHolding, PurgeStep, RegistryEntry } from './model';
import type { PuppetPort } from './ports';

/**
 * PuppetDB takes commands one at a time; four connections keep it busy. Measured on the lab with
 * 50 deactivations: 1–4 connections ~0.28 s, 8 ~0.35 s, 16+ ~0.5 s (only more TLS handshakes).
 */
export const PUPPETDB_CONCURRENCY = 4;
/** Reads of what the CA holds, before the batched clean. */
const CA_READ_CONCURRENCY = 8;

/**
 * Which certificate at the CA is an instance's, and so the only one its purge may revoke:
 * certnames follow private IPs, which EC2 reuses, so the certificate for the certname may by now
 * be another instance's.
 */
export type CertificateIdentity =
  /** Verified after signing: that very certificate. */
  | { kind: 'fingerprint'; sha256Fingerprint: string }
  /** Signed but never verified: the key that was checked in its CSR. */
  | { kind: 'key'; publicKeySha256: string }
  /**
   * Enrolled before the checked request was recorded: the controller only ever signed CSRs whose
   * pp_instance_id is the instance's.
   */
  | { kind: 'instance'; instanceId: string };

export function certificateIdentity(entry: RegistryEntry): CertificateIdentity {
  if (entry.issued) return { kind: 'fingerprint', sha256Fingerprint: entry.issued.sha256Fingerprint };
  if (entry.checked) return { kind: 'key', publicKeySha256: entry.checked.publicKeySha256 };
  return { kind: 'instance', instanceId: entry.instanceId };
}

/** The claimed purge of one registry entry. */
export interface PurgeSubject {
  instanceId: string;
  certname: string;
  certificate: CertificateIdentity;
  /**
   * When the purge was first claimed. PuppetDB deactivates with it as producer_timestamp on every
   * attempt: data the node (or a new holder of the certname) sent since then stays active.
   */
  startedAt: string;
  /** Steps an earlier attempt finished: a retry does only the others. */
  done: ReadonlySet<PurgeStep>;
}

export type CaVerdict = { kind: 'clean' } | { kind: 'nothing-there' } | { kind: 'leave'; why: string };

/**
 * Whether a purge may clean the certname at the CA, given what the CA holds now: only while the
 * certificate there is the subject's own. Otherwise a pending request is someone else's enrollment
 * and another certificate is someone else's: either way the CA step is over for this subject.
 */
export function caVerdict(certificate: CertificateIdentity, holding: CaHolding): CaVerdict {
  // Our own certificate is revoked whatever else is queued beside it (only a CA that accepts
  // duplicate CSRs queues one next to a certificate; `clean` leaves such a CSR where it is).
  if (holding.certificate && isIdentified(certificate, holding.certificate)) return { kind: 'clean' };
  if (holding.requested) return { kind: 'leave', why: 'the CA holds a pending certificate request for the certname: another enrollment, not to be deleted' };
  if (!holding.certificate) return { kind: 'nothing-there' };
  if (!isIdentified(certificate, holding.certificate)) {
    return { kind: 'leave', why: `the CA's certificate for the certname (serial ${holding.certificate.serial}) is not the one issued to this instance` };
  }
  return { kind: 'clean' };
}

function isIdentified(identity: CertificateIdentity, certificate: CertificateContents): boolean {
  switch (identity.kind) {
    case 'fingerprint':
      return certificate.sha256Fingerprint === identity.sha256Fingerprint;
    case 'key':
      return certificate.publicKeySha256 === identity.publicKeySha256;
    case 'instance':
      return certificate.puppetExtensions.pp_instance_id === identity.instanceId;
  }
}

export interface PurgeProgressSink {
  /** A step is done for the subject (the CA step also when there was nothing of the subject's to clean). */
  stepDone(subject: PurgeSubject, step: PurgeStep): Promise<void>;
  /** The CA step found the certname in someone else's hands and left it alone. */
  leftAlone(subject: PurgeSubject, why: string): void;
}

/**
 * Takes the subjects out of Puppet: at the CA one batched `clean` (revoke + delete) of the
 * certnames still holding the subjects' own certificates, while PuppetDB deactivates each node —
 * the two servers are independent, so neither waits for the other. Each step done is reported as
 * it completes, so a retry does only what is missing; all are attempted before the first failure
 * is thrown.
 */
export async function removeFromPuppet(
  puppet: Pick<PuppetPort, 'holding' | 'clean' | 'deactivate'>,
  subjects: readonly PurgeSubject[],
  progress: PurgeProgressSink,
): Promise<void> {
  const outcomes = await Promise.allSettled([cleanAtCa(puppet, subjects, progress), deactivateInPuppetDb(puppet, subjects, progress)]);
  const failure = outcomes.find((outcome) => outcome.status === 'rejected');
  if (failure) throw failure.reason;
}

async function cleanAtCa(puppet: Pick<PuppetPort, 'holding' | 'clean'>, subjects: readonly PurgeSubject[], progress: PurgeProgressSink): Promise<void> {
  const pending = subjects.filter((subject) => !subject.done.has('ca'));
  if (pending.length === 0) return;
  const certnames = [...new Set(pending.map((subject) => subject.certname))];
  const holdings = new Map(await mapLimit(certnames, CA_READ_CONCURRENCY, async (certname) => [certname, await puppet.holding(certname)] as const));
  const toClean = new Set<string>();
  const cleaning: PurgeSubject[] = [];
  const settled: PurgeSubject[] = [];
  for (const subject of pending) {
    const verdict = caVerdict(subject.certificate, holdings.get(subject.certname) as CaHolding);
    if (verdict.kind === 'clean') {
      toClean.add(subject.certname);
      cleaning.push(subject);
    } else {
      if (verdict.kind === 'leave') progress.leftAlone(subject, verdict.why);
      settled.push(subject);
    }
  }
  await mapLimit(settled, CA_READ_CONCURRENCY, (subject) => progress.stepDone(subject, 'ca'));
  if (toClean.size === 0) return;
  await puppet.clean([...toClean]);
  await mapLimit(cleaning, CA_READ_CONCURRENCY, (subject) => progress.stepDone(subject, 'ca'));
}

async function deactivateInPuppetDb(puppet: Pick<PuppetPort, 'deactivate'>, subjects: readonly PurgeSubject[], progress: PurgeProgressSink): Promise<void> {
  const pending = subjects.filter((subject) => !subject.done.has('puppetdb'));
  await mapLimit(pending, PUPPETDB_CONCURRENCY, async (subject) => {
    await puppet.deactivate(subject.certname, new Date(subject.startedAt));
    await progress.stepDone(subject, 'puppetdb');
  });
}
