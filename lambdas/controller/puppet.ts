import { isIP } from 'node:net';
import { PuppetApiError } from '../../lib/errors';
import { CaClient } from '../../lib/puppet/ca';
import { probeDuplicateCerts } from '../../lib/puppet/ca-probe';
import { readCertificate, readCsr, type CertificateContents, type CsrFacts } from '../../lib/puppet/csr';
import { PuppetDbClient } from '../../lib/puppet/puppetdb';
import { PuppetServerStatusClient } from '../../lib/puppet/status';
import type { CaHolding, CertState } from './model';
import type { ClientBundle, NodeHealthPort, PuppetPort } from './ports';

export interface PuppetSettings {
  ca: { hostname: string; port: number };
  puppetdb: { hostname: string; port: number };
}

/**
 * How long the answer of an allow-duplicate-certs probe is used: each probe leaves a CSR and its
 * deletion in the CA's log, so a container asks at most this often, and a fixed CA is trusted
 * again within this.
 */
export const DUPLICATE_PROBE_MAX_AGE_MS = 10 * 60_000;

/** The Puppet side through the shared clients: CA and PuppetDB over mTLS with the lifecycle client's certificate. */
export class PuppetApis implements PuppetPort {
  private duplicates: { allowed: boolean; probedAt: number } | undefined;

  constructor(
    private readonly ca: CaClient,
    private readonly puppetdb: PuppetDbClient,
    private readonly now: () => number = Date.now,
  ) {}

  static create(settings: PuppetSettings, bundle: ClientBundle): PuppetApis {
    const tls = { ca: bundle.ca, cert: bundle.cert, key: bundle.key };
    return new PuppetApis(
      new CaClient({ baseUrl: `https://${settings.ca.hostname}:${settings.ca.port}`, tls }),
      new PuppetDbClient({ baseUrl: `https://${settings.puppetdb.hostname}:${settings.puppetdb.port}`, tls }),
    );
  }

  async requestedCertnames(): Promise<Set<string>> {
    return new Set((await this.ca.listStatuses('requested')).map((status) => status.name));
  }

  async certState(certname: string): Promise<CertState> {
    return (await this.ca.getStatus(certname))?.state ?? 'absent';
  }

  async readCsr(certname: string): Promise<CsrFacts | undefined> {
    const pem = await this.ca.getCsr(certname);
    return pem === undefined ? undefined : readCsr(pem);
  }

  async deleteRequest(certname: string): Promise<void> {
    await this.ca.delete(certname);
  }

  /** A failed probe is not remembered: the next pass asks again. */
  async duplicateCertsAllowed(): Promise<boolean> {
    const last = this.duplicates;
    if (last && this.now() - last.probedAt < DUPLICATE_PROBE_MAX_AGE_MS) return last.allowed;
    const allowed = await probeDuplicateCerts(this.ca, 'controller-probe');
    this.duplicates = { allowed, probedAt: this.now() };
    return allowed;
  }

  async sign(certname: string): Promise<void> {
    try {
      await this.ca.sign(certname);
    } catch (error) {
      // 409 also means "already signed": a repeat of this pass, or a racing one, did it.
      if (error instanceof PuppetApiError && error.status === 409 && (await this.certState(certname)) === 'signed') return;
      throw error;
    }
  }

  async issuedCertificate(certname: string): Promise<CertificateContents | undefined> {
    const pem = await this.ca.getCertificate(certname);
    return pem === undefined ? undefined : readCertificate(pem);
  }

  async holding(certname: string): Promise<CaHolding> {
    // The files themselves, not certificate_status: with allow-duplicate-certs a certname can have
    // a certificate and a pending CSR at once, and the fingerprint is computed by the same reader
    // that recorded the issued one.
    const [certificate, csr] = await Promise.all([this.issuedCertificate(certname), this.ca.getCsr(certname)]);
    return { requested: csr !== undefined, certificate };
  }

  async clean(certnames: readonly string[]): Promise<void> {
    await this.ca.clean(certnames);
  }

  async deactivate(certname: string, at: Date): Promise<void> {
    await this.puppetdb.deactivateNode(certname, at);
  }
}

/** Every compile master serves Puppet on this port; only the primary's ports are configurable. */
const NODE_PUPPET_PORT = 8140;
const HEALTH_TIMEOUT_MS = 3_000;

/**
 * Asks a new compile master's Puppet Server for /status/v1/simple by private IP, verifying its
 * certificate against the pinned CA *and* its certname: an answer from anything else is not health.
 */
export class PuppetServerHealth implements NodeHealthPort {
  constructor(private readonly caPem: string) {}

  async isHealthy(node: { certname: string; privateIp: string }): Promise<boolean> {
    const family = isIP(node.privateIp);
    if (family === 0) return false;
    const host = family === 6 ? `[${node.privateIp}]` : node.privateIp;
    const client = new PuppetServerStatusClient({
      baseUrl: `https://${host}:${NODE_PUPPET_PORT}`,
      tls: { ca: this.caPem },
      servername: node.certname,
      timeoutMs: HEALTH_TIMEOUT_MS,
    });
    try {
      return await client.isHealthy();
    } finally {
      await client.close();
    }
  }
}
