import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { createPrivateKey } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMessage } from '../../lambdas/controller/messages';
import { NodeAgentNoticeSchema, instanceSenderId, type NodeAgentNotice } from '../../lib/node-agent-notice';
import { certificateFacts, crlSerials, publicKeySha256, readCsr } from '../../lib/puppet';
import { csrProblems } from '../../lambdas/controller/csr-policy';
import { readBootMarker } from '../../node-agent/src/boot-marker';
import { runCli } from '../../node-agent/src/cli';
import { eventually, labClients, type LabClients } from '../../lab/clients';
import { requestCertificate } from '../../lab/csr';
import { startImdsDouble, type ImdsDouble } from '../../lab/imds-double';
import { loadLab, uniqueCertname, type LabDescription } from '../../lab/running-lab';

/**
 * The node agent, wired exactly as on an instance (runCli), against the real Puppet Server CA of
 * the lab and a real `puppet` agent with its own confdir, ssldir and vardir. IMDS is the double;
 * SQS is a fake client parsing each message with the shared notice schema and standing in for the
 * controller: it signs a CSR only if its key is one the instance reported (DESIGN rule 2) and the
 * controller's own CSR policy passes it; the lab CA then signs with the lifecycle certificate. The lab's Puppet Server stands in for the compile
 * master's own server in the health check.
 */
const NLB = 'compile-masters-nlb.lab.test';
const INSTANCE_ID = `i-0${Date.now().toString(16).slice(-8)}abcdef0`;
const ROLE_ID = 'AROAEXAMPLECOMPILEMASTR';
const QUEUE_URL = 'https://sqs.eu-west-1.amazonaws.com/123456789012/compile-masters-lifecycle';

describe('node agent against the Puppet lab', () => {
  let lab: LabDescription;
  let clients: LabClients;
  let imds: ImdsDouble;
  let root: string;
  let configPath: string;
  let ssldir: string;
  let backupDir: string;
  const certname = uniqueCertname('ip-10-0-1');
  const events: string[] = [];
  const notices: NodeAgentNotice[] = [];
  /** The key hash of each CSR the real CA held when the stand-in controller looked. */
  const held: string[] = [];
  const refusals: string[] = [];
  const signing: Promise<void>[] = [];

  /** The key binding, then the controller's own CSR policy (DESIGN rule 2), then the lab CA signs. */
  async function controllerSigns(): Promise<void> {
    const csr = await readCsr((await clients.ca.getCsr(certname)) ?? '');
    held.push(csr.publicKeySha256);
    if (!notices.some((notice) => notice.publicKeySha256 === csr.publicKeySha256)) {
      refusals.push(`the CSR's key ${csr.publicKeySha256} is not one the instance reported`);
      return;
    }
    const problems = csrProblems(
      csr,
      { certname, instanceId: INSTANCE_ID },
      { region: 'eu-west-1', nlbDnsName: NLB, extraAltNames: [], expectedExtensions: { pp_role: 'compile_master' } },
    );
    if (problems.length > 0) {
      refusals.push(problems.join('; '));
      return;
    }
    await clients.ca.sign(certname);
  }

  const sqs = {
    async send(command: SendMessageCommand) {
      expect(command.input.QueueUrl).toBe(QUEUE_URL);
      // The controller's own parser, with the SenderId SQS would record for this instance.
      const scope = { groupName: 'compile-masters', launchHookName: 'launch', terminateHookName: 'terminate', compileMasterRoleId: ROLE_ID };
      const parsed = parseMessage(command.input.MessageBody ?? '', scope, { senderId: instanceSenderId(ROLE_ID, INSTANCE_ID), sentAt: new Date().toISOString() });
      if (parsed.outcome !== 'trigger' || parsed.trigger.kind !== 'node-agent') throw new Error(`the controller would not act on ${command.input.MessageBody}`);
      const notice = NodeAgentNoticeSchema.parse(JSON.parse(command.input.MessageBody ?? ''));
      expect(notice.instanceId).toBe(INSTANCE_ID);
      notices.push(notice);
      events.push(notice.event);
      // Like SQS: the send returns at once, the controller acts a little later.
      if (notice.event === 'csr-submitted') signing.push(new Promise((resolve) => setTimeout(resolve, 500)).then(controllerSigns));
      return { MessageId: String(events.length) };
    },
  };

  /** `lines` fills while the agent runs, for a test that acts in the middle of a boot. */
  async function agent(step: 'boot' | 'shutdown', lines: Record<string, unknown>[] = []) {
    const sink = { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) };
    events.length = 0;
    notices.length = 0;
    held.length = 0;
    const started = Date.now();
    const code = await runCli([step, '--config', configPath], { stdout: sink, stderr: sink, imdsEndpoint: imds.url, sqs: sqs as never });
    await Promise.all(signing.splice(0));
    return { code, lines, seconds: (Date.now() - started) / 1000, log: () => JSON.stringify(lines, null, 1) };
  }

  const localCert = () => readFile(join(ssldir, 'certs', `${certname}.pem`), 'utf8');
  /** What the readiness daemon reads: written only by a boot step that completed. */
  const bootMarker = () => join(root, 'run', 'boot-complete.json');

  beforeAll(async () => {
    lab = loadLab();
    clients = labClients({ lab });
    imds = await startImdsDouble({ instanceId: INSTANCE_ID, region: 'eu-west-1', localHostname: certname });
    root = await mkdtemp(join(tmpdir(), 'node-agent-it-'));
    const confdir = join(root, 'puppet');
    ssldir = join(confdir, 'ssl');
    backupDir = join(root, 'backups');
    await mkdir(confdir, { recursive: true });
    // A simulated node's own Puppet state, away from the lab's and the machine's.
    await writeFile(join(confdir, 'puppet.conf'), ['[main]', `vardir = ${root}/var`, `logdir = ${root}/log`, `rundir = ${root}/run`, `codedir = ${root}/code`, ''].join('\n'));
    configPath = join(root, 'agent.json');
    await writeFile(
      configPath,
      JSON.stringify({
        primaryServer: 'localhost',
        caPort: 8140,
        caCertPath: lab.caCertPath,
        queueUrl: QUEUE_URL,
        region: 'eu-west-1',
        extensions: { pp_role: 'compile_master' },
        dnsAltNames: [NLB],
        puppetBin: lab.puppetBin,
        confdir,
        ssldir,
        localServerPort: 8140,
        localServerHost: 'localhost',
        localServerService: null,
        isolatePuppetRun: false,
        backupDir,
        bootMarkerPath: bootMarker(),
        timeouts: { caUnavailableSeconds: 30, certificateSeconds: 120, puppetRunSeconds: 240, serverHealthySeconds: 60 },
      }),
    );
  });

  afterAll(async () => {
    await clients?.ca.clean([certname]).catch(() => undefined);
    await Promise.all([clients?.close(), imds?.close()]);
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('first boot: reports its key, enrolls through the controller, runs Puppet, says so', async () => {
    const run = await agent('boot');
    expect(run.code, run.log()).toBe(0);
    expect(refusals).toEqual([]);
    expect(events).toEqual(['enrolling', 'csr-submitted', 'enrolled']);
    expect(run.lines).toContainEqual(expect.objectContaining({ message: 'boot decision', plan: 'enroll', reason: 'no certificate yet' }));

    // Real Puppet 7 made its CSR from the key the agent wrote and reported, and left that key as
    // the agent wrote it (RSA 4096, 0640).
    const reported = notices[0]?.publicKeySha256;
    expect(reported).toMatch(/^[0-9a-f]{64}$/);
    expect(notices[1]?.publicKeySha256).toBe(reported);
    expect(held).toEqual([reported]);
    const keyPath = join(ssldir, 'private_keys', `${certname}.pem`);
    const keyPem = await readFile(keyPath, 'utf8');
    expect(publicKeySha256(keyPem)).toBe(reported);
    expect(createPrivateKey(keyPem).asymmetricKeyDetails?.modulusLength).toBe(4096);
    expect((await stat(keyPath)).mode & 0o777).toBe(0o640);
    expect(run.log()).not.toContain(keyPem.split('\n')[1]);
    expect((await certificateFacts(await localCert())).publicKeySha256).toBe(reported);

    const installed = await certificateFacts(await localCert());
    const served = await certificateFacts((await clients.ca.getCertificate(certname)) ?? '');
    expect(installed.sha256Fingerprint).toBe(served.sha256Fingerprint);
    expect(installed.subjectCommonName).toBe(certname);
    const puppetConf = await readFile(join(root, 'puppet', 'puppet.conf'), 'utf8');
    expect(puppetConf).toContain(`certname = ${certname}`);
    expect(puppetConf).toContain('server = localhost');
    expect(puppetConf).toContain(`dns_alt_names = ${certname},${NLB}`);
    // The pinned CA was put in place, not fetched.
    expect(await readFile(join(ssldir, 'certs', 'ca.pem'), 'utf8')).toBe(await readFile(lab.caCertPath, 'utf8'));
    expect(await readBootMarker(bootMarker())).toMatchObject({ kind: 'complete', marker: { certname, instanceId: INSTANCE_ID } });
    console.info(`first enrollment took ${run.seconds.toFixed(1)} s`);
  });

  it('reboot with a valid certificate: nothing changes, the controller hears "booted"', async () => {
    const before = await localCert();
    const run = await agent('boot');
    expect(run.code, run.log()).toBe(0);
    expect(events).toEqual(['booted']);
    expect(run.lines).toContainEqual(expect.objectContaining({ message: 'boot decision', plan: 'keep' }));
    expect(await localCert()).toBe(before);
    await expect(stat(backupDir)).rejects.toThrow(/ENOENT/);
    console.info(`boot with nothing to do took ${run.seconds.toFixed(2)} s`);
  });

  it('shutdown keeps the identity on a reboot and leaves termination to the controller', async () => {
    const before = await localCert();
    imds.metadata.set('autoscaling/target-lifecycle-state', 'InService');
    expect((await agent('shutdown')).lines).toContainEqual(expect.objectContaining({ verdict: 'keep-identity' }));
    imds.metadata.set('autoscaling/target-lifecycle-state', 'Terminated');
    const run = await agent('shutdown');
    expect(run.code).toBe(0);
    expect(run.lines).toContainEqual(expect.objectContaining({ verdict: 'terminating' }));
    expect(events).toEqual([]);
    expect(await localCert()).toBe(before);
    expect(await clients.ca.getCertificate(certname)).toBe(before);
    imds.metadata.delete('autoscaling/target-lifecycle-state');
  });

  it('certificate cleaned at the CA while the node was down: re-enrolls with a new certificate, the old serial in the CRL', async () => {
    const old = await certificateFacts(await localCert());
    await clients.ca.clean([certname]);

    const run = await agent('boot');

    expect(run.code, run.log()).toBe(0);
    expect(refusals).toEqual([]);
    expect(events).toEqual(['enrolling', 'csr-submitted', 'enrolled']);
    expect(held).toEqual([notices[0]?.publicKeySha256]);
    expect(run.lines).toContainEqual(expect.objectContaining({ plan: 'enroll', reason: expect.stringContaining('(purged)') }));
    const renewed = await certificateFacts(await localCert());
    expect(renewed.sha256Fingerprint).not.toBe(old.sha256Fingerprint);
    expect(renewed.serial).not.toBe(old.serial);
    expect(renewed.sha256Fingerprint).toBe((await certificateFacts((await clients.ca.getCertificate(certname)) ?? '')).sha256Fingerprint);
    const crl = await clients.ca.getCrl();
    if (crl === 'not-modified') throw new Error('unexpected 304 without If-Modified-Since');
    expect(crlSerials(crl.pem, old.issuer).has(old.serial)).toBe(true);
    expect(crlSerials(crl.pem, renewed.issuer).has(renewed.serial)).toBe(false);

    const backups = await readdir(backupDir);
    expect(backups).toHaveLength(1);
    const backup = join(backupDir, backups[0] ?? '');
    expect((await stat(backup)).mode & 0o777).toBe(0o700);
    expect((await certificateFacts(await readFile(join(backup, 'certs', `${certname}.pem`), 'utf8'))).serial).toBe(old.serial);
  });

  it('a certificate revoked but not cleaned blocks enrollment without touching the node', async () => {
    const before = await localCert();
    await clients.ca.revoke(certname);
    const run = await agent('boot');
    expect(run.code).toBe(75);
    expect(events).toEqual([]);
    expect(run.lines.at(-1)).toMatchObject({ level: 'error', message: expect.stringMatching(/has revoked it.*puppetserver ca clean --certname/) });
    // The earlier boot's marker is gone: the readiness daemon answers "not ready".
    expect(await readBootMarker(bootMarker())).toEqual({ kind: 'pending' });
    expect(await localCert()).toBe(before);
    expect(await readdir(backupDir)).toHaveLength(1);
  });

  it("an impostor's CSR pending for the certname: the agent reports its key, waits, and enrolls once the CSR is removed", async () => {
    await clients.ca.clean([certname]);
    // A perfect forgery but for the key: every public fact of this instance.
    const impostor = await requestCertificate({ certname, dnsAltNames: [certname, NLB], extensions: { pp_instance_id: INSTANCE_ID, pp_region: 'eu-west-1', pp_role: 'compile_master' } });
    const impostorKey = publicKeySha256(impostor.privateKeyPem);
    const lines: Record<string, unknown>[] = [];
    const started = Date.now();
    const running = agent('boot', lines);

    await eventually(async () => (lines.some((line) => typeof line.message === 'string' && line.message.includes('waiting for the controller to remove it')) ? true : undefined), 'the agent to wait for the impostor CSR', 60_000);
    expect(events).toEqual(['enrolling']);
    expect(notices[0]?.publicKeySha256).not.toBe(impostorKey);
    // Our CSR was not submitted: the CA still holds the impostor's, which the controller would remove on our report.
    expect(readCsr((await clients.ca.getCsr(certname)) ?? '').publicKeySha256).toBe(impostorKey);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(readCsr((await clients.ca.getCsr(certname)) ?? '').publicKeySha256).toBe(impostorKey);
    const removedAfter = (Date.now() - started) / 1000;
    expect(await clients.ca.delete(certname)).toBe(true);

    const run = await running;
    expect(run.code, run.log()).toBe(0);
    expect(run.lines).toContainEqual(expect.objectContaining({ message: 'boot decision', plan: 'enroll', reason: expect.stringContaining('not for this node') }));
    expect(refusals).toEqual([]);
    expect(events).toEqual(['enrolling', 'csr-submitted', 'enrolled']);
    expect(held).toEqual([notices[0]?.publicKeySha256]);
    const installed = await certificateFacts(await localCert());
    expect(installed.publicKeySha256).toBe(notices[0]?.publicKeySha256);
    expect(installed.sha256Fingerprint).toBe((await certificateFacts((await clients.ca.getCertificate(certname)) ?? '')).sha256Fingerprint);
    console.info(`impostor removed ${removedAfter.toFixed(1)} s into the boot step; enrolled ${(run.seconds - removedAfter).toFixed(1)} s later (${run.seconds.toFixed(1)} s in all)`);
  });
});
