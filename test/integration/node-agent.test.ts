import { instanceSenderId } from '../../lib/node-agent-notice';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificateFacts, crlSerials, readCsr } from '../../lib/puppet';
import { csrProblems } from '../../lambdas/controller/csr-policy';
import { parseMessage } from '../../lambdas/controller/messages';
import { runCli } from '../../node-agent/src/cli';
import { labClients, type LabClients } from '../support/clients';
import { startImdsDouble, type ImdsDouble } from '../support/imds-double';
import { loadLab, uniqueCertname, type LabDescription } from '../support/lab';

/**
 * The node agent, wired exactly as on an instance (runCli), against the real Puppet Server CA of
 * the lab and a real `puppet` agent with its own confdir, ssldir and vardir. IMDS is the double;
 * SQS is a fake client handing each message to the controller's own parser and CSR policy; the
 * lab CA then signs with the lifecycle certificate. The lab's Puppet Server stands in for the compile
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
  const refusals: string[] = [];
  const signing: Promise<void>[] = [];

  /** The controller's own message parser and CSR policy (DESIGN rule 2), then the lab CA signs. */
  async function controllerSigns(): Promise<void> {
    const csr = await readCsr((await clients.ca.getCsr(certname)) ?? '');
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
      const scope = { groupName: 'compile-masters', launchHookName: 'launch', terminateHookName: 'terminate', compileMasterRoleId: ROLE_ID };
      const parsed = parseMessage(command.input.MessageBody ?? '', scope, { senderId: instanceSenderId(ROLE_ID, INSTANCE_ID), sentAt: new Date().toISOString() });
      if (parsed.outcome !== 'trigger' || parsed.trigger.kind !== 'node-agent') throw new Error(`the controller would not act on ${command.input.MessageBody}`);
      expect(parsed.trigger.instanceId).toBe(INSTANCE_ID);
      events.push(parsed.trigger.event);
      // Like SQS: the send returns at once, the controller acts a little later.
      if (parsed.trigger.event === 'csr-submitted') signing.push(new Promise((resolve) => setTimeout(resolve, 500)).then(controllerSigns));
      return { MessageId: String(events.length) };
    },
  };

  async function agent(step: 'boot' | 'shutdown') {
    const lines: Record<string, unknown>[] = [];
    const sink = { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) };
    events.length = 0;
    const started = Date.now();
    const code = await runCli([step, '--config', configPath], { stdout: sink, stderr: sink, imdsEndpoint: imds.url, sqs: sqs as never });
    await Promise.all(signing.splice(0));
    return { code, lines, seconds: (Date.now() - started) / 1000, log: () => JSON.stringify(lines, null, 1) };
  }

  const localCert = () => readFile(join(ssldir, 'certs', `${certname}.pem`), 'utf8');

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
        timeouts: { caUnavailableSeconds: 30, certificateSeconds: 120, puppetRunSeconds: 240, serverHealthySeconds: 60 },
      }),
    );
  });

  afterAll(async () => {
    await clients?.ca.clean([certname]).catch(() => undefined);
    await Promise.all([clients?.close(), imds?.close()]);
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('first boot: enrolls through the controller, runs Puppet, says so', async () => {
    const run = await agent('boot');
    expect(run.code, run.log()).toBe(0);
    expect(refusals).toEqual([]);
    expect(events).toEqual(['csr-submitted', 'enrolled']);
    expect(run.lines).toContainEqual(expect.objectContaining({ message: 'boot decision', plan: 'enroll', reason: 'no certificate yet' }));

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
    expect(events).toEqual(['csr-submitted', 'enrolled']);
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
    expect(await localCert()).toBe(before);
    expect(await readdir(backupDir)).toHaveLength(1);
  });
});
