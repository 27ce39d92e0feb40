import { CompileMastersError, PuppetUnavailableError } from '../../lib/errors';
import { nodeAgentNotice, type NodeAgentNotice } from '../../lib/node-agent-notice';
import { certificateFacts, crlSerials, publicKeySha256, type CaClient, type CertificateFacts } from '../../lib/puppet';
import type { AgentConfig } from './config';
import { decideBoot, keyFitsCertificate, pendingCsr, type BootPlan, type IdentityObservation } from './identity';
import type { InstanceIdentity } from './imds';
import type { Logger } from './log';
import type { Notifier } from './notify';
import { pollUntil, type Clock } from './poll';
import type { PuppetCli } from './puppet';
import { backupSslDir, readLocalSsl, resetSslDir, writePrivateKey } from './ssl-dir';

export interface BootDeps {
  config: AgentConfig;
  /** The pinned CA certificate, put into a wiped ssldir so Puppet never fetches it on trust. */
  caPem: string;
  identity: InstanceIdentity;
  /** Only the CA's unauthenticated endpoints: the node has no credentials for anything else. */
  ca: Pick<CaClient, 'getCertificate' | 'getCsr' | 'getCrl'>;
  puppet: Pick<PuppetCli, 'configure' | 'submitCsr' | 'downloadCert' | 'agentRun'>;
  localServer: { isHealthy(): Promise<boolean> };
  /** Restarts the local Puppet Server if it is running, so it loads the new certificate. */
  restartLocalServer(): Promise<void>;
  notifier: Notifier;
  /** A new PEM private key for the next CSR (key.ts; tests pass a cheaper one). */
  newPrivateKey(): Promise<string>;
  clock: Clock;
  log: Logger;
}

/** Backoff between polls of the CA while it is down or while the CSR waits for signing. */
const CA_BACKOFF = { baseDelayMs: 2_000, maxDelayMs: 60_000 };
const SIGNING_BACKOFF = { baseDelayMs: 2_000, maxDelayMs: 30_000 };
const REPORT_BACKOFF = { baseDelayMs: 1_000, maxDelayMs: 30_000 };
/**
 * Short: once the controller removes an impostor's CSR the slot is free for whoever submits first,
 * and someone who reaches 8140 may be polling for it too.
 */
const FREE_SLOT_BACKOFF = { baseDelayMs: 500, maxDelayMs: 2_000 };
const HEALTH_BACKOFF = { baseDelayMs: 1_000, maxDelayMs: 15_000 };

/**
 * The boot step: decide from the node's and the CA's view of its certificate, then do only
 * what that decision needs. Every path that is not 'keep' ends enrolled or throws; none of them
 * touches the CA beyond submitting this node's own CSR.
 */
export async function boot(deps: BootDeps): Promise<BootPlan> {
  const { identity, log } = deps;
  const plan = decideBoot(await observeUntilCaAnswers(deps));
  log.info('boot decision', { certname: identity.certname, instanceId: identity.instanceId, plan: plan.kind, reason: plan.reason });
  if (plan.kind === 'keep') {
    await prompt(deps, nodeAgentNotice(identity.instanceId, 'booted'));
    return plan;
  }
  if (plan.kind === 'blocked') {
    throw new CompileMastersError(`Cannot enroll ${identity.certname}: ${plan.reason}`, {
      hint: 'nothing was changed on this node; compile-master-agent retries after the CA has been cleaned',
    });
  }
  if (plan.kind === 'enroll' || plan.kind === 'await') {
    // One deadline from the key report to the signed certificate, as timeouts.certificateSeconds
    // promises: a deadline per step would let the boot step wait three times as long.
    const deadline = deps.clock.now() + deps.config.timeouts.certificateSeconds * 1000;
    if (plan.kind === 'enroll') await enroll(deps, deadline);
    // After a restart the controller may have missed or dropped our report: make it again.
    else await reportKey(deps, 'csr-submitted', plan.publicKeySha256, deadline);
    await waitForSignedCertificate(deps, deadline);
  }
  await installAndConverge(deps);
  await prompt(deps, nodeAgentNotice(identity.instanceId, 'enrolled'));
  return plan;
}

export async function observe(deps: Pick<BootDeps, 'config' | 'identity' | 'ca' | 'clock' | 'log'>): Promise<IdentityObservation> {
  const { certname } = deps.identity;
  const local = await readLocalSsl(deps.config.ssldir, certname);
  const [caCertPem, crl] = await Promise.all([deps.ca.getCertificate(certname), deps.ca.getCrl()]);
  if (crl === 'not-modified') throw new Error('the CA answered 304 to a CRL request without If-Modified-Since');
  const caCert = caCertPem === undefined ? undefined : { ...(await certificateFacts(caCertPem)), matchesLocalKey: keyFitsCertificate(caCertPem, local.keyPem) };
  return {
    certname,
    now: new Date(deps.clock.now()),
    local: {
      cert: local.certPem === undefined ? undefined : await readableFacts(local.certPem, deps.log),
      keyMatchesCert: local.certPem !== undefined && keyFitsCertificate(local.certPem, local.keyPem),
    },
    ca: {
      cert: caCert,
      csr: caCert ? undefined : pendingCsr(await deps.ca.getCsr(certname), local.keyPem),
      // Serials are unique per issuer only, and Puppet serves its whole chain's CRLs in one answer.
      revokedSerials: caCert ? crlSerials(crl.pem, caCert.issuer) : new Set(),
    },
  };
}

/** A CA that does not answer proves nothing about the certificate: wait for it, never wipe. */
async function observeUntilCaAnswers(deps: BootDeps): Promise<IdentityObservation> {
  let last: unknown;
  return pollUntil(
    async () => {
      try {
        return await observe(deps);
      } catch (error) {
        if (!(error instanceof PuppetUnavailableError)) throw error;
        last = error;
        deps.log.warn('the CA does not answer; retrying', { error });
        return undefined;
      }
    },
    {
      what: `the CA at ${deps.config.primaryServer}:${deps.config.caPort} to answer`,
      timeoutMs: deps.config.timeouts.caUnavailableSeconds * 1000,
      backoff: CA_BACKOFF,
      clock: deps.clock,
      lastReason: () => last,
      hint: 'nothing was changed on this node; compile-master-agent is restarted by systemd and checks again',
    },
  );
}

/**
 * The agent makes the key itself, before any CSR exists, so that the controller holds the key's
 * hash before the CA holds a CSR for it: the controller signs only a CSR for a key the instance
 * reported (over SQS, which records the sending instance), and removes a pending CSR for any other
 * key, such as one submitted for our certname by anyone who can reach the CA.
 */
async function enroll(deps: BootDeps, deadline: number): Promise<void> {
  const { config, identity, log } = deps;
  const backup = await backupSslDir(config.ssldir, config.backupDir, new Date(deps.clock.now()));
  if (backup) log.info('backed up the old SSL directory', { backup });
  await resetSslDir(config.ssldir, deps.caPem);
  await deps.puppet.configure(identity);
  const keyPem = await deps.newPrivateKey();
  await writePrivateKey(config.ssldir, identity.certname, keyPem);
  const keySha256 = publicKeySha256(keyPem);
  await reportKey(deps, 'enrolling', keySha256, deadline);
  await waitUntilNoOtherCsr(deps, deadline);
  await deps.puppet.submitCsr();
  // The controller already holds the key from the report above; this only prompts it to look.
  await prompt(deps, nodeAgentNotice(identity.instanceId, 'csr-submitted', keySha256));
}

/**
 * Without this report the controller signs no CSR of ours, so unlike a prompt it is retried until
 * SQS takes it, and boot fails when it never does.
 */
async function reportKey(deps: BootDeps, event: 'enrolling' | 'csr-submitted', keySha256: string, deadline: number): Promise<void> {
  const notice = nodeAgentNotice(deps.identity.instanceId, event, keySha256);
  let last: unknown;
  await pollUntil(
    async () => {
      try {
        await deps.notifier.send(notice);
        return true;
      } catch (error) {
        last = error;
        deps.log.warn("could not report this node's key to the controller; retrying", { event, error });
        return undefined;
      }
    },
    {
      what: `the controller's queue to take this node's key report (${event})`,
      timeoutMs: remainingMs(deps.clock, deadline),
      backoff: REPORT_BACKOFF,
      clock: deps.clock,
      lastReason: () => last,
      hint: `the controller signs only a CSR whose key the instance itself reported${event === 'enrolling' ? ', so no CSR was submitted' : ''}; check that the instance profile may sqs:SendMessage to ${deps.config.queueUrl} and that SQS is reachable. compile-master-agent is restarted by systemd and reports again`,
    },
  );
}

/**
 * Our key is new, so a CSR pending for our certname is not ours, and the CA would refuse ours
 * beside it. The controller removes it once it has our report.
 */
async function waitUntilNoOtherCsr(deps: BootDeps, deadline: number): Promise<void> {
  const { certname } = deps.identity;
  let last: unknown;
  let seen = false;
  await pollUntil(
    async () => {
      const pem = await whileCaAnswers(() => deps.ca.getCsr(certname), (error) => (last = error));
      if (pem === unavailable) return undefined;
      if (pem === undefined) return true;
      if (!seen) deps.log.warn('the CA holds a pending CSR for this certname that this node did not submit; waiting for the controller to remove it', { certname });
      seen = true;
      return undefined;
    },
    {
      what: `the controller to remove the pending CSR for ${certname} that this node did not submit`,
      timeoutMs: remainingMs(deps.clock, deadline),
      backoff: FREE_SLOT_BACKOFF,
      clock: deps.clock,
      lastReason: () => last,
      hint: `the controller removes a pending CSR whose key the instance did not report; see its logs. Nothing was submitted. After checking who submitted it, 'puppetserver ca clean --certname ${certname}' on the primary removes it; compile-master-agent is restarted by systemd and tries again`,
    },
  );
}

const unavailable = Symbol('the CA did not answer');

/** One CA read inside a poll: an unreachable CA is another round (remembered for the timeout message), anything else throws. */
async function whileCaAnswers<T>(read: () => Promise<T>, onUnavailable: (error: unknown) => void): Promise<T | typeof unavailable> {
  try {
    return await read();
  } catch (error) {
    if (!(error instanceof PuppetUnavailableError)) throw error;
    onUnavailable(error);
    return unavailable;
  }
}

async function waitForSignedCertificate(deps: BootDeps, deadline: number): Promise<void> {
  const { certname } = deps.identity;
  let last: unknown;
  await pollUntil(
    async () => {
      const pem = await whileCaAnswers(() => deps.ca.getCertificate(certname), (error) => (last = error));
      if (pem === unavailable || pem === undefined) return undefined;
      const { keyPem } = await readLocalSsl(deps.config.ssldir, certname);
      if (!keyFitsCertificate(pem, keyPem)) {
        throw new CompileMastersError(`The CA signed a certificate for ${certname} that does not fit this node's private key`, {
          hint: `another CSR for this certname was signed; clean it on the primary ('puppetserver ca clean --certname ${certname}') and restart compile-master-agent`,
        });
      }
      return pem;
    },
    {
      what: `the controller to sign the CSR of ${certname}`,
      timeoutMs: remainingMs(deps.clock, deadline),
      backoff: SIGNING_BACKOFF,
      clock: deps.clock,
      lastReason: () => last,
      hint: 'the controller signs only CSRs that pass its checks (instance in the group, expected certname, extensions and alt names, the key the instance reported); see its logs. compile-master-agent resumes waiting on its next start',
    },
  );
  deps.log.info('the CSR was signed', { certname });
}

/**
 * A prompt to look, best effort: the controller's scheduled reconcile finds the same state without
 * it, only later, whereas failing the boot step would restart enrollment for nothing.
 */
async function prompt(deps: BootDeps, notice: NodeAgentNotice): Promise<void> {
  try {
    await deps.notifier.send(notice);
  } catch (error) {
    deps.log.warn('could not tell the controller; its scheduled reconcile will notice later', { event: notice.event, error });
  }
}

function remainingMs(clock: Clock, deadline: number): number {
  return Math.max(0, deadline - clock.now());
}

async function installAndConverge(deps: BootDeps): Promise<void> {
  await deps.puppet.downloadCert();
  await deps.restartLocalServer();
  await deps.puppet.agentRun();
  await pollUntil(async () => ((await deps.localServer.isHealthy()) ? true : undefined), {
    what: 'the local Puppet Server to answer healthy',
    timeoutMs: deps.config.timeouts.serverHealthySeconds * 1000,
    backoff: HEALTH_BACKOFF,
    clock: deps.clock,
    hint: 'the Puppet run succeeded but the compile master\'s Puppet Server is not running; check its service and logs on this node',
  });
  deps.log.info('the local Puppet Server answers healthy');
}

/** A local certificate Puppet cannot read either is as good as none. */
async function readableFacts(pem: string, log: Logger): Promise<CertificateFacts | undefined> {
  try {
    return await certificateFacts(pem);
  } catch (error) {
    log.warn('the local certificate cannot be parsed; treating it as missing', { error });
    return undefined;
  }
}
