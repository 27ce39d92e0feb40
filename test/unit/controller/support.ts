import { createHash } from 'node:crypto';
import { PuppetApiError, PuppetUnavailableError } from '../../../lib/errors';
import type { CertificateContents, CsrFacts } from '../../../lib/puppet/csr';
import { assertCertname } from '../../../lib/certname';
import type { CaHolding, CertState, CsrObservation, DamagedEntry, Ec2Instance, Member, Observed, RegistryEntry, RegistryState, RunObservation, RunRecord } from '../../../lambdas/controller/model';
import type { PlannerPolicy } from '../../../lambdas/controller/planner';
import type { PrimaryRunPort, PrimaryRunState, PuppetPort } from '../../../lambdas/controller/ports';

/** A complete, valid controller environment, as the stack sets it. */
export const VALID_ENV = {
  AWS_REGION: 'us-west-2',
  GROUP_NAME: 'compile-masters',
  LAUNCH_HOOK_NAME: 'compile-master-launching',
  TERMINATE_HOOK_NAME: 'compile-master-terminating',
  COMPILE_MASTER_ROLE_ID: 'AROAEXAMPLECOMPILEMASTR',
  REGISTRY_TABLE: 'registry',
  QUEUE_URL: 'https://sqs.us-west-2.amazonaws.com/123456789012/lifecycle',
  CLIENT_CERT_SECRET_ARN: 'arn:aws:secretsmanager:us-west-2:123456789012:secret:cert-AbCdEf',
  RBAC_TOKEN_SECRET_ARN: 'arn:aws:secretsmanager:us-west-2:123456789012:secret:token-AbCdEf',
  PRIMARY_HOSTNAME: 'puppet.corp.example.com',
  PRIMARY_CERTNAME: 'puppet.corp.example.com',
  NLB_DNS_NAME: 'Compile-Masters-0123.elb.us-west-2.amazonaws.com',
  EXPECTED_EXTENSIONS: '{"pp_role":"compile_master"}',
  POWERTOOLS_SERVICE_NAME: 'controller',
  POWERTOOLS_METRICS_NAMESPACE: 'CompileMasters',
};

export const REGION = 'us-west-2';
export const NLB = 'compile-masters-0123456789abcdef.elb.us-west-2.amazonaws.com';
export const NOW = new Date('2026-11-20T12:00:00Z');

export const POLICY: PlannerPolicy = {
  region: REGION,
  nlbDnsName: NLB,
  extraAltNames: ['puppet.corp.example.com'],
  expectedExtensions: { pp_role: 'compile_master' },
  protectedCertnames: new Set(['primary.corp.example.com', 'lifecycle-controller.corp.example.com']),
  replaceUnhealthyAfterSeconds: 900,
  launchCeilingSeconds: 90 * 60,
};

/** A simulated compile master number n: instance id, private IP and certname that belong together. */
export function node(n: number): { id: string; ip: string; certname: string } {
  const ip = `10.0.1.${n}`;
  return { id: `i-${n.toString(16).padStart(17, '0')}`, ip, certname: `ip-10-0-1-${n}.${REGION}.compute.internal` };
}

/** The key hash of the key a node's agent made: stands in for a real key's SHA-256. */
export function keyOf(holder: string): string {
  return createHash('sha256').update(`key of ${holder}`).digest('hex');
}

/** What a compile master's agent asks for, as readCsr reports it; override to forge. */
export function csrFacts(n: number, overrides: Partial<CsrFacts> = {}): CsrFacts {
  const { id, certname } = node(n);
  return {
    commonName: certname,
    dnsAltNames: [certname, NLB],
    otherAltNames: [],
    puppetExtensions: { pp_instance_id: id, pp_role: 'compile_master', pp_region: REGION },
    otherExtensionOids: [],
    signatureValid: true,
    publicKeySha256: keyOf(certname),
    ...overrides,
  };
}

export function entry(n: number, state: RegistryState, overrides: Partial<RegistryEntry> = {}): RegistryEntry {
  const { id, certname } = node(n);
  return { instanceId: id, certname, state, createdAt: '2026-11-20T11:00:00.000Z', updatedAt: '2026-11-20T11:00:00.000Z', ...overrides };
}

export interface WorldSpec {
  now?: Date;
  /** [node number, lifecycle state] */
  members?: Array<[number, string]>;
  /** EC2 states of non-members worth describing; members are 'running' unless listed here. */
  ec2?: Record<number, string | undefined>;
  /** For every instance, or by node number (5 unless given). */
  launchedMinutesAgo?: number | Record<number, number>;
  registry?: RegistryEntry[];
  damaged?: DamagedEntry[];
  certs?: Record<number, CertState>;
  csrs?: Record<number, CsrObservation>;
  /** Node numbers that reported their key (the one csrFacts(n) carries), unless a key is given. */
  reported?: Array<number | [number, string]>;
  healthy?: number[];
  /** Nodes whose Puppet Server was asked and did not answer healthy (the rest were not asked). */
  unhealthy?: number[];
  run?: Partial<RunRecord>;
  runState?: RunObservation;
  signingSuspended?: string;
}

/** Observed state for planner tables, by node number. */
export function world(spec: WorldSpec = {}): Observed {
  const now = spec.now ?? NOW;
  const members: Member[] = (spec.members ?? []).map(([n, lifecycleState]) => ({ instanceId: node(n).id, lifecycleState }));
  const instances = new Map<string, Ec2Instance>();
  const numbers = new Set([...(spec.members ?? []).map(([n]) => n), ...Object.keys(spec.ec2 ?? {}).map(Number)]);
  for (const n of numbers) {
    const state = spec.ec2 && n in spec.ec2 ? spec.ec2[n] : 'running';
    if (state === undefined) continue;
    const { id, ip, certname } = node(n);
    instances.set(id, {
      instanceId: id,
      state,
      privateIp: ip,
      privateDnsName: certname,
      launchTime: new Date(now.getTime() - ((typeof spec.launchedMinutesAgo === 'number' ? spec.launchedMinutesAgo : spec.launchedMinutesAgo?.[n]) ?? 5) * 60_000),
    });
  }
  const byNumber = <T>(record: Record<number, T> | undefined, key: (n: number) => string) =>
    new Map(Object.entries(record ?? {}).map(([n, value]) => [key(Number(n)), value]));
  return {
    now,
    members,
    instances,
    registry: spec.registry ?? [],
    damaged: spec.damaged ?? [],
    run: { version: 1, pending: [], ...spec.run },
    certs: byNumber(spec.certs, (n) => node(n).certname),
    csrs: byNumber(spec.csrs, (n) => node(n).certname),
    keyReports: new Map(
      (spec.reported ?? []).map((report) => {
        const [n, key] = Array.isArray(report) ? report : [report, keyOf(node(report).certname)];
        return [node(n).id, { publicKeySha256: key, reportedAt: now.toISOString() }];
      }),
    ),
    health: new Map([...(spec.unhealthy ?? []).map((n) => [node(n).id, false] as const), ...(spec.healthy ?? []).map((n) => [node(n).id, true] as const)]),
    runState: spec.runState,
    signingSuspended: spec.signingSuspended,
  };
}

export function validCsr(n: number): CsrObservation {
  return { ok: true, facts: csrFacts(n) };
}

/**
 * The Puppet side in memory, with the CA's observable behaviour: clean revokes and deletes
 * (missing names are fine), signing needs a pending CSR, a signed certificate carries the key of
 * the CSR the CA held at signing time.
 */
export class FakePuppet implements PuppetPort {
  /** `pendingCsr`: a CSR queued next to a certificate, as a CA with allow-duplicate-certs on accepts. */
  readonly certs = new Map<string, { state: Exclude<CertState, 'absent'>; csr?: CsrFacts; issued?: CertificateContents; pendingCsr?: CsrFacts }>();
  readonly deactivated = new Map<string, Date>();
  readonly cleans: string[][] = [];
  readonly revoked: string[] = [];
  /** Every certificate revoked, as it was issued: what an invariant about whose certificate was revoked compares. */
  readonly revokedCertificates: CertificateContents[] = [];
  /** Every certname a call named, for "nothing was asked about it". */
  readonly named = new Set<string>();
  /** Every call, by operation name. */
  readonly calls: string[] = [];
  down = false;
  /** Operations that fail as if their server went away mid-pass. */
  readonly failing = new Set<string>();
  /** Swaps the pending CSR just before signing, as if replaced after it was checked: another key, or the same key asking for more. */
  replaceCsrBeforeSigning: false | 'other-key' | 'extra-alt-name' | 'extra-extension' = false;
  /** Reading the issued certificate fails, as if the CA went away right after signing. */
  issuedUnreadable = false;
  /** The CA's allow-duplicate-certs, as the probe would find it. */
  allowDuplicateCerts = false;
  /** The CA's last serial: every certificate it issues has its own serial and fingerprint. */
  private serial = 0n;

  request(certname: string, csr: CsrFacts): void {
    this.certs.set(certname, { state: 'requested', csr });
  }

  /** A CSR submitted as Puppet Server takes it: for a certname with a CSR or certificate, only with allow-duplicate-certs on. */
  submit(certname: string, csr: CsrFacts): void {
    const cert = this.certs.get(certname);
    if (!cert) return this.request(certname, csr);
    if (!this.allowDuplicateCerts) throw new Error(`${certname} already has a ${cert.state} certificate; ignoring certificate request`);
    if (cert.state === 'requested') cert.csr = csr;
    else cert.pendingCsr = csr;
  }

  state(certname: string): CertState {
    return this.certs.get(certname)?.state ?? 'absent';
  }

  /** As Puppet Server lists them: every CSR on file, a CSR next to a certificate too. */
  async requestedCertnames(): Promise<Set<string>> {
    this.enter('requestedCertnames');
    return new Set([...this.certs].filter(([, cert]) => cert.state === 'requested' || cert.pendingCsr).map(([name]) => name));
  }

  async certState(certname: string): Promise<CertState> {
    this.enter('certState', certname);
    return this.state(certname);
  }

  async readCsr(certname: string): Promise<CsrFacts | undefined> {
    this.enter('readCsr', certname);
    const cert = this.certs.get(certname);
    return cert?.state === 'requested' ? cert.csr : cert?.pendingCsr;
  }

  async duplicateCertsAllowed(): Promise<boolean> {
    this.enter('duplicateCertsAllowed');
    return this.allowDuplicateCerts;
  }

  /** Removes a pending CSR, as DELETE certificate_status does (and the whole entry with it). */
  async deleteRequest(certname: string): Promise<void> {
    this.enter('deleteRequest');
    if (this.certs.get(certname)?.state === 'requested') this.certs.delete(certname);
  }

  async sign(certname: string): Promise<void> {
    this.enter('sign', certname);
    const cert = this.certs.get(certname);
    if (cert?.state === 'signed') return;
    if (cert?.state !== 'requested' || !cert.csr) throw new PuppetApiError({ server: 'ca', url: 'fake', operation: 'sign', status: 409 });
    const { commonName, dnsAltNames, otherAltNames, puppetExtensions, otherExtensionOids, publicKeySha256 } = cert.csr;
    this.serial += 1n;
    const sha256Fingerprint = `FP:${this.serial.toString(16).toUpperCase()}`;
    const issued = { commonName, dnsAltNames, otherAltNames, puppetExtensions, otherExtensionOids, publicKeySha256, serial: this.serial, sha256Fingerprint };
    if (this.replaceCsrBeforeSigning === 'other-key') issued.publicKeySha256 = 'attacker-key';
    if (this.replaceCsrBeforeSigning === 'extra-alt-name') issued.dnsAltNames = [...dnsAltNames, 'puppet'];
    if (this.replaceCsrBeforeSigning === 'extra-extension') issued.puppetExtensions = { ...puppetExtensions, pp_cli_auth: 'true' };
    this.certs.set(certname, { state: 'signed', issued });
  }

  async issuedCertificate(certname: string): Promise<CertificateContents | undefined> {
    this.enter('issuedCertificate', certname);
    if (this.issuedUnreadable) throw new PuppetUnavailableError({ server: 'ca', url: 'fake', operation: 'get certificate', detail: 'connection reset' });
    return this.certs.get(certname)?.issued;
  }

  async holding(certname: string): Promise<CaHolding> {
    this.enter('holding', certname);
    const cert = this.certs.get(certname);
    return { requested: cert?.state === 'requested', certificate: cert?.issued };
  }

  async clean(certnames: readonly string[]): Promise<void> {
    this.enter('clean', ...certnames);
    this.cleans.push([...certnames]);
    for (const certname of certnames) {
      const cert = this.certs.get(certname);
      if (cert?.state === 'signed') this.revoked.push(certname);
      if (cert?.issued && cert.state !== 'revoked') this.revokedCertificates.push(cert.issued);
      // Puppet Server's clean removes certificates only: a CSR queued next to one stays.
      if (cert?.pendingCsr) this.certs.set(certname, { state: 'requested', csr: cert.pendingCsr });
      else this.certs.delete(certname);
    }
  }

  /** The certificate the CA holds for the certname, if any. */
  certificate(certname: string): CertificateContents | undefined {
    return this.certs.get(certname)?.issued;
  }

  async deactivate(certname: string, at: Date): Promise<void> {
    this.enter('deactivate', certname);
    this.deactivated.set(certname, at);
  }

  /** As the real clients do, a certname that could escape its URL path is refused before any call. */
  private enter(operation: string, ...certnames: string[]): void {
    this.calls.push(operation);
    for (const certname of certnames) {
      this.named.add(certname);
      assertCertname(certname);
    }
    if (this.down || this.failing.has(operation)) {
      throw new PuppetUnavailableError({ server: 'ca', url: 'https://primary.corp.example.com:8140', operation, detail: 'connection refused' });
    }
  }
}

/**
 * A runner of the primary in memory: every run stays running until the test ends it. Run ids are
 * job numbers, as the orchestrator's, unless `runId` makes them something else (an SSM command id).
 */
export class FakePrimaryRun implements PrimaryRunPort {
  /** Descriptions of the runs started, in order. */
  readonly runs: string[] = [];
  readonly states = new Map<string, PrimaryRunState>();
  readonly calls: string[] = [];
  down = false;
  /** Thrown by every call while set (a secret the runner reads that has no value). */
  failure: Error | undefined;

  constructor(private readonly runId: (n: number) => string = String) {}

  async start(description: string): Promise<string> {
    this.enter('start');
    this.runs.push(description);
    const id = this.runId(this.runs.length);
    this.states.set(id, 'running');
    return id;
  }

  async state(runId: string): Promise<PrimaryRunState | undefined> {
    this.enter('state');
    return this.states.get(runId);
  }

  /** Every run still running ends with `state`. */
  end(state: 'finished' | 'failed'): void {
    for (const [id, current] of this.states) if (current === 'running') this.states.set(id, state);
  }

  /** The id of the n-th run started (1-based). */
  id(n: number): string {
    return this.runId(n);
  }

  private enter(operation: string): void {
    this.calls.push(operation);
    if (this.failure) throw this.failure;
    if (this.down) throw new PuppetUnavailableError({ server: 'orchestrator', url: 'https://primary.corp.example.com:8143', operation, detail: 'connection refused' });
  }
}

export { RecordingLogger, RecordingMetrics } from '../../../lab/recorders';
