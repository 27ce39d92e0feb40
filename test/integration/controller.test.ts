import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crlSerials } from '../../lib/puppet/x509';
import { handleBatch } from '../../lambdas/controller/batch';
import { METRIC } from '../../lambdas/controller/vocabulary';
import type { PlannerPolicy } from '../../lambdas/controller/planner';
import { PuppetServerHealth } from '../../lambdas/controller/puppet';
import { reconcile, type ControllerContext } from '../../lambdas/controller/reconcile';
import { eventually, labClients, labOrchestratorRun, labPuppetApis, storeFacts, type LabClients } from '../../lab/clients';
import { readCertificate, readCsr } from '../../lib/puppet';
import { makeCsr, submitCsr, type CsrOptions } from '../../lab/csr';
import { loadLab, readPems, setOrchestratorFaults, uniqueCertname, type LabDescription } from '../../lab/running-lab';
import { ManualClock, MemoryCloud, QueueDriver, scheduledEvent, type EventBridgeEvent } from '../../lab/memory-cloud';
import { nodeAgentNotice } from '../../lib/node-agent-notice';
import { RecordingLogger, RecordingMetrics } from '../unit/controller/support';

/**
 * The controller against the real Puppet lab (Puppet Server CA, PuppetDB, the orchestrator
 * double running a real agent on the primary), with AWS in memory. Every claim is checked where
 * it matters: at the CA, in its CRL, and in PuppetDB.
 */
const NLB = 'compile-masters-lab.elb.us-west-2.amazonaws.com';
const REGION = 'us-west-2';

let lab: LabDescription;
let clients: LabClients;
/** A certname on the protected list that nothing has claimed yet, so a CSR for it reaches the controller. */
const protectedSpare = uniqueCertname('replica');

/** The controller wired as in production, but with the lab's Puppet and an in-memory AWS. */
class LabController {
  readonly clock = new ManualClock();
  readonly logger = new RecordingLogger();
  readonly metrics = new RecordingMetrics();
  readonly cloud: MemoryCloud;
  readonly driver: QueueDriver;
  readonly deploys: string[] = [];
  readonly dropped: EventBridgeEvent[] = [];
  dropEvents = false;

  constructor() {
    this.cloud = new MemoryCloud({
      region: REGION,
      clock: this.clock.now,
      onEvent: (event) => (this.dropEvents ? this.dropped.push(event) : this.cloud.queue.enqueue(JSON.stringify(event))),
    });
    const puppet = labPuppetApis(lab);
    const primaryRun = labOrchestratorRun(lab);
    const start = primaryRun.start.bind(primaryRun);
    primaryRun.start = async (description) => {
      const name = await start(description);
      this.deploys.push(name);
      return name;
    };
    const policy: PlannerPolicy = {
      region: REGION,
      nlbDnsName: NLB,
      extraAltNames: [],
      expectedExtensions: { pp_role: 'compile_master' },
      protectedCertnames: new Set([lab.primary.certname, lab.lifecycleClient.certname, protectedSpare]),
      replaceUnhealthyAfterSeconds: 900,
      launchCeilingSeconds: 90 * 60,
    };
    const context: ControllerContext = { ports: this.cloud.ports(puppet, primaryRun), policy, logger: this.logger, metrics: this.metrics, clock: this.clock.now };
    this.driver = new QueueDriver(this.cloud, this.clock, (event) =>
      handleBatch(event, { scope: this.cloud, logger: this.logger, metrics: context.metrics, reconcile: (triggers) => reconcile(context, triggers) }),
    );
  }

  /** A new instance in Pending:Wait whose private DNS name is a fresh lab certname. */
  launch(certname = uniqueCertname('ip-10-20-0')): { instanceId: string; certname: string } {
    const { instanceId } = this.cloud.launch({ privateDnsName: certname });
    return { instanceId, certname };
  }

  /** What the node agent does: report its key, submit a CSR (valid unless overridden) and say so. */
  async submitCsr(instanceId: string, certname: string, overrides: Partial<CsrOptions> = {}): Promise<void> {
    const csr = await makeCsr({ certname, dnsAltNames: [certname, NLB], extensions: { pp_instance_id: instanceId, pp_role: 'compile_master', pp_region: REGION }, ...overrides });
    const key = readCsr(csr.csrPem).publicKeySha256;
    this.cloud.notifyFrom(nodeAgentNotice(instanceId, 'enrolling', key));
    await submitCsr(csr, lab);
    this.cloud.notifyFrom(nodeAgentNotice(instanceId, 'csr-submitted', key));
  }

  /** A compile master enrolled through the controller, known to PuppetDB, with its serial. */
  async enrolled(): Promise<{ instanceId: string; certname: string; serial: bigint }> {
    const { instanceId, certname } = this.launch();
    await this.submitCsr(instanceId, certname);
    await this.settle();
    await storeFacts(clients.puppetdb, certname);
    await eventually(() => clients.puppetdb.getNode(certname), `${certname} in PuppetDB`);
    const status = await clients.ca.getStatus(certname);
    expect(status?.state).toBe('signed');
    return { instanceId, certname, serial: BigInt(status?.serial_number ?? -1) };
  }

  settle(maxSeconds?: number): Promise<void> {
    return this.driver.settle(maxSeconds);
  }

  /**
   * Settles repeatedly while real time passes (the orchestrator's job runs a real agent), until
   * `done`. Clock time advances about ten times faster than real time, well inside the run timeout.
   */
  async until(done: () => boolean | Promise<boolean>, what: string, timeoutMs = 240_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await done())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await this.settle(20);
      await sleep(2_000);
    }
  }
}

async function caState(certname: string): Promise<string> {
  return (await clients.ca.getStatus(certname))?.state ?? 'absent';
}

async function revokedSerials(): Promise<Set<bigint>> {
  const crl = await clients.ca.getCrl();
  if (crl === 'not-modified') throw new Error('asked for the CRL without If-Modified-Since');
  return crlSerials(crl.pem);
}

async function deactivated(certname: string): Promise<string> {
  return eventually(async () => (await clients.puppetdb.getNode(certname))?.deactivated ?? undefined, `${certname} deactivated in PuppetDB`);
}

beforeAll(() => {
  lab = loadLab();
  clients = labClients({ lab });
});
afterAll(() => clients.close());

describe('scale out against the real CA', () => {
  it('validates and signs a simulated instance, runs the primary once, and CONTINUEs the launch when its server is healthy', async () => {
    const c = new LabController();
    const { instanceId, certname } = c.launch();
    await c.settle();
    expect(await caState(certname)).toBe('absent');

    await c.submitCsr(instanceId, certname);
    await c.settle();
    expect(await caState(certname)).toBe('signed');
    const issued = readCertificate((await clients.ca.getCertificate(certname)) as string);
    expect(issued.puppetExtensions).toMatchObject({ pp_instance_id: instanceId, pp_role: 'compile_master' });
    expect(issued.dnsAltNames.sort()).toEqual([certname, NLB].sort());
    expect(c.cloud.registry.peek(instanceId)).toMatchObject({ certname, state: 'signed' });

    c.cloud.health.set(certname, true);
    c.cloud.notifyFrom(nodeAgentNotice(instanceId, 'enrolled'));
    await c.until(() => c.cloud.group.stateOf(instanceId) === 'InService', 'the launch to complete');
    expect(c.deploys).toHaveLength(1);
    expect((await clients.orchestrator.getJob(c.deploys[0] as string))?.state).toBe('finished');
    expect(c.cloud.group.completions).toMatchObject([{ instanceId, hook: 'launch', result: 'CONTINUE' }]);
    expect(c.cloud.registry.peek(instanceId)?.state).toBe('in-service');
  });

  it('refuses forged CSRs: they stay unsigned at the CA, their launches are ABANDONed, nothing is registered', async () => {
    const c = new LabController();
    const forgeries: Array<{ name: string; certname?: string; csr: (instanceId: string, certname: string) => Partial<CsrOptions>; reason: RegExp }> = [
      { name: 'wrong pp_instance_id', csr: () => ({ extensions: { pp_instance_id: 'i-0fedcba9876543210', pp_role: 'compile_master' } }), reason: /pp_instance_id "i-0fedcba9876543210" is not/ },
      { name: 'extra alt name', csr: (_id, certname) => ({ dnsAltNames: [certname, NLB, 'puppet.lab.test'] }), reason: /outside the allowed set: "puppet.lab.test"/ },
      { name: 'IP alt name', csr: (_id, certname) => ({ dnsAltNames: [certname], ipAltNames: ['10.20.0.99'] }), reason: /non-DNS alt names/ },
      { name: 'unconfigured extension', csr: (id) => ({ extensions: { pp_instance_id: id, pp_role: 'compile_master', pp_auth_role: 'pe_compiler' } }), reason: /not configured: "pp_auth_role"/ },
      { name: 'protected certname', certname: protectedSpare, csr: () => ({}), reason: /is a protected certname/ },
    ];
    const launched = [];
    for (const forgery of forgeries) {
      const { instanceId, certname } = c.launch(forgery.certname);
      await c.submitCsr(instanceId, certname, forgery.csr(instanceId, certname));
      launched.push({ ...forgery, instanceId, certname });
    }
    // A real instance that is not a member of the group asks to be looked at.
    const outsider = uniqueCertname('ip-10-30-0');
    c.cloud.instances.put({ instanceId: 'i-0abcdef0123456789', state: 'running', privateDnsName: outsider, privateIp: '10.30.0.5', launchTime: new Date() });
    await c.submitCsr('i-0abcdef0123456789', outsider);
    await c.settle();

    for (const { name, instanceId, certname, reason } of launched) {
      expect(await caState(certname), name).toBe('requested');
      expect(c.cloud.group.completions.find((completion) => completion.instanceId === instanceId && completion.hook === 'launch'), name).toMatchObject({ result: 'ABANDON' });
      expect(c.cloud.registry.peek(instanceId), name).toBeUndefined();
      const refusal = c.logger.lines.find((line) => line.message.startsWith('Refused') && (line.attributes as { instanceId?: string }).instanceId === instanceId);
      expect((refusal?.attributes as { reasons: string[] }).reasons.join('; '), name).toMatch(reason);
    }
    expect(await caState(outsider)).toBe('requested');
    expect(c.cloud.group.completions.map((completion) => completion.instanceId)).not.toContain('i-0abcdef0123456789');
    expect(c.metrics.get(METRIC.refused)).toBe(forgeries.length);
    expect(c.metrics.get(METRIC.signed)).toBe(0);
  });
});

describe('an impostor on 8140, against the real CA', () => {
  /** What an attacker reading the member's public certificate would submit: its fields, their key. */
  async function squat(instanceId: string, certname: string): Promise<string> {
    const csr = await makeCsr({ certname, dnsAltNames: [certname, NLB], extensions: { pp_instance_id: instanceId, pp_role: 'compile_master', pp_region: REGION } });
    await submitCsr(csr, lab);
    return readCsr(csr.csrPem).publicKeySha256;
  }

  it("removes a launch's impostor CSR once the instance reports its key, then signs the instance's own: the launch goes on", async () => {
    const c = new LabController();
    const { instanceId, certname } = c.launch();
    const impostor = await squat(instanceId, certname);
    await c.settle();
    // No report yet: nothing signed, nothing abandoned, the impostor's CSR still there.
    expect(await caState(certname)).toBe('requested');
    expect(c.cloud.group.completions).toEqual([]);

    const own = await makeCsr({ certname, dnsAltNames: [certname, NLB], extensions: { pp_instance_id: instanceId, pp_role: 'compile_master', pp_region: REGION } });
    const key = readCsr(own.csrPem).publicKeySha256;
    c.cloud.notifyFrom(nodeAgentNotice(instanceId, 'enrolling', key));
    await c.settle();
    expect(await clients.ca.getCsr(certname)).toBeUndefined();
    expect(c.metrics.get(METRIC.impostorCsrs)).toBe(1);

    await submitCsr(own, lab);
    c.cloud.notifyFrom(nodeAgentNotice(instanceId, 'csr-submitted', key));
    await c.settle();
    const issued = readCertificate((await clients.ca.getCertificate(certname)) as string);
    expect(issued.publicKeySha256).toBe(key);
    expect(issued.publicKeySha256).not.toBe(impostor);
    expect(c.cloud.group.stateOf(instanceId)).toBe('Pending:Wait');
  });

  it("never signs a squatter's CSR for a member whose certificate was cleaned, and signs the member's own re-enrollment", async () => {
    const c = new LabController();
    const { instanceId, certname } = await c.enrolled();
    c.cloud.health.set(certname, true);
    c.cloud.notifyFrom(nodeAgentNotice(instanceId, 'enrolled'));
    await c.until(() => c.cloud.group.stateOf(instanceId) === 'InService', 'the launch to complete');

    await clients.ca.clean([certname]);
    const impostor = await squat(instanceId, certname);
    c.cloud.queue.enqueue(scheduledEvent(c.clock.now()));
    await c.settle();
    expect(await caState(certname)).toBe('requested');
    expect(readCsr((await clients.ca.getCsr(certname)) as string).publicKeySha256).toBe(impostor);

    const own = await makeCsr({ certname, dnsAltNames: [certname, NLB], extensions: { pp_instance_id: instanceId, pp_role: 'compile_master', pp_region: REGION } });
    const key = readCsr(own.csrPem).publicKeySha256;
    c.cloud.notifyFrom(nodeAgentNotice(instanceId, 'enrolling', key));
    await c.settle();
    expect(await clients.ca.getCsr(certname)).toBeUndefined();
    await submitCsr(own, lab);
    c.cloud.notifyFrom(nodeAgentNotice(instanceId, 'csr-submitted', key));
    await c.settle();
    expect(readCertificate((await clients.ca.getCertificate(certname)) as string).publicKeySha256).toBe(key);
    expect(c.cloud.registry.peek(instanceId)?.state).not.toBe('purged');
  });
});

describe("the primary's run failing", () => {
  it("retries a failed job once, then alarms and leaves the launch to the hook's default result", async () => {
    const c = new LabController();
    const { instanceId, certname } = c.launch();
    await c.submitCsr(instanceId, certname);
    await c.settle();
    await setOrchestratorFaults({ runs: 'fail' }, lab);
    try {
      c.cloud.health.set(certname, true);
      c.cloud.notifyFrom(nodeAgentNotice(instanceId, 'enrolled'));
      await c.until(() => c.cloud.registry.peek(instanceId)?.state === 'stalled', 'the launch to stall');
    } finally {
      await setOrchestratorFaults({ runs: 'real' }, lab);
    }
    expect(c.deploys).toHaveLength(2);
    for (const job of c.deploys) expect((await clients.orchestrator.getJob(job))?.state).toBe('failed');
    expect(c.metrics.get(METRIC.runsFailed)).toBe(1);
    expect(c.metrics.get(METRIC.failed)).toBe(1);
    expect(c.cloud.group.stateOf(instanceId)).toBe('Pending:Wait');
    expect(c.cloud.group.completions).toEqual([]);
  });
});

describe('scale in against the real CA and PuppetDB', () => {
  it('leaves a terminated member revoked (serial in the CRL), gone from the CA and deactivated in PuppetDB', async () => {
    const c = new LabController();
    const node = await c.enrolled();
    c.cloud.scaleIn([node.instanceId]);
    await c.settle();

    expect(c.cloud.group.completions).toContainEqual(expect.objectContaining({ instanceId: node.instanceId, hook: 'terminate', result: 'CONTINUE' }));
    expect((await revokedSerials()).has(node.serial)).toBe(true);
    expect(await caState(node.certname)).toBe('absent');
    expect(await deactivated(node.certname)).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(c.cloud.registry.peek(node.instanceId)?.state).toBe('purged');
    expect(c.metrics.get(METRIC.purged)).toBe(1);
  });

  it('ends in the same state whatever happens to the events: duplicated, reordered, lost, or terminated outside the group', async () => {
    const c = new LabController();
    const [repeated, lost, outside] = [await c.enrolled(), await c.enrolled(), await c.enrolled()];
    const revokedBefore = await revokedSerials();
    expect([repeated, lost, outside].some((node) => revokedBefore.has(node.serial))).toBe(false);

    // lost: its terminate event never arrives; nothing else happens until the schedule.
    c.dropEvents = true;
    c.cloud.scaleIn([lost.instanceId]);
    c.dropEvents = false;
    await c.settle();
    expect(c.cloud.group.stateOf(lost.instanceId)).toBe('Terminating:Wait');
    c.cloud.queue.enqueue(scheduledEvent(c.clock.now()));
    await c.settle();
    expect(c.cloud.group.stateOf(lost.instanceId)).toBeUndefined();

    // repeated: its terminate event three times, newest first, behind a stale launch event.
    c.cloud.scaleIn([repeated.instanceId]);
    const terminate = c.cloud.queue.messages.splice(0).map((message) => message.body);
    const staleLaunch = c.cloud.events.find((event) => event['detail-type'].includes('launch') && event.detail.EC2InstanceId === repeated.instanceId);
    for (const body of [JSON.stringify(staleLaunch), ...terminate, ...terminate, ...terminate]) c.cloud.queue.enqueue(body);
    // outside: terminated by hand; its state changes arrive in reverse.
    c.cloud.terminateOutside(outside.instanceId);
    const [shuttingDown, terminated] = c.cloud.queue.messages.splice(-2);
    c.cloud.queue.messages.push(terminated!, shuttingDown!);
    await c.settle();

    const revoked = await revokedSerials();
    for (const node of [repeated, lost, outside]) {
      expect(revoked.has(node.serial), node.certname).toBe(true);
      expect(await caState(node.certname), node.certname).toBe('absent');
      expect(await deactivated(node.certname), node.certname).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(c.cloud.registry.peek(node.instanceId)?.state, node.certname).toBe('purged');
    }
    expect(c.cloud.group.pendingActions()).toEqual([]);
    expect(c.cloud.group.completions.filter((completion) => completion.hook === 'terminate').map((completion) => completion.instanceId).sort()).toEqual(
      [repeated.instanceId, lost.instanceId].sort(),
    );
    expect(c.dropped).toHaveLength(1);
    expect(c.metrics.get(METRIC.failed)).toBe(0);
    // Nothing else on the CA was touched: the primary and the controller's own certificate are still valid.
    expect(await caState(lab.primary.certname)).toBe('signed');
    expect(await caState(lab.lifecycleClient.certname)).toBe('signed');
  });
});

describe('a certname reused by a new instance (EC2 gave A\'s address to B)', () => {
  it("signs B and purges A in one pass without revoking B's new certificate: it stays valid (not in the CRL, still served)", async () => {
    const c = new LabController();
    const a = await c.enrolled();
    expect(c.cloud.registry.peek(a.instanceId)?.issued?.serial).toBe(a.serial.toString());
    // Someone cleans A's certificate by hand and terminates A; its address, and so its certname,
    // goes to B. No event gets through until B asks to be signed.
    c.dropEvents = true;
    await clients.ca.clean([a.certname]);
    c.cloud.terminateOutside(a.instanceId);
    const { instanceId: b } = c.launch(a.certname);
    c.dropEvents = false;
    await c.submitCsr(b, a.certname);
    await c.settle();

    const status = await clients.ca.getStatus(a.certname);
    expect(status?.state).toBe('signed');
    const bSerial = BigInt(status?.serial_number ?? -1);
    expect(bSerial).not.toBe(a.serial);
    const revoked = await revokedSerials();
    expect(revoked.has(bSerial)).toBe(false);
    expect(revoked.has(a.serial)).toBe(true);
    const served = readCertificate((await clients.ca.getCertificate(a.certname)) as string);
    expect(served.puppetExtensions.pp_instance_id).toBe(b);
    expect(c.cloud.registry.peek(b)?.issued).toMatchObject({ serial: bSerial.toString(), sha256Fingerprint: served.sha256Fingerprint });
    expect(c.cloud.registry.peek(a.instanceId)?.state).toBe('purged');
    expect(c.logger.lines).toContainEqual(
      expect.objectContaining({ message: expect.stringMatching(/^Purge left the CA alone/), attributes: expect.objectContaining({ instanceId: a.instanceId }) }),
    );
    // Puppet's own view of the fingerprint agrees with the one recorded.
    expect(Object.values(status?.fingerprints ?? {}).concat(status?.fingerprint ?? [])).toContain(served.sha256Fingerprint);
  });
});

describe("a new compile master's health, over TLS verified against its certname", () => {
  const health = () => new PuppetServerHealth(readPems(lab).ca);

  it("is healthy when the Puppet Server at the address answers with the certname's certificate", async () => {
    await expect(health().isHealthy({ certname: lab.primary.certname, privateIp: '127.0.0.1' })).resolves.toBe(true);
  });

  it('is not healthy when the certificate there belongs to another name, or nothing answers', async () => {
    await expect(health().isHealthy({ certname: 'ip-10-20-0-1.lab.test', privateIp: '127.0.0.1' })).resolves.toBe(false);
    await expect(health().isHealthy({ certname: lab.primary.certname, privateIp: '192.0.2.1' })).resolves.toBe(false);
  });
});
