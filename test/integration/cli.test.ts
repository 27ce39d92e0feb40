import { PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusRow } from '../../cli/status-view';
import { labDir } from '../../lab/description';
import { eventually, labClients, storeFacts, type LabClients } from '../../lab/clients';
import { requestCertificate } from '../../lab/csr';
import { loadLab, setOrchestratorFaults, uniqueCertname, type LabDescription } from '../../lab/running-lab';
import { altNamesRefusingCa, fakePuppet } from '../support/fake-puppet';
import { ARNS, runCli } from '../unit/cli/harness';

/** The operator CLI against the real Puppet lab: Puppet Server 7 CA, PuppetDB 7, the orchestrator double. */
describe('compile-masters CLI against the Puppet lab', () => {
  let lab: LabDescription;
  let clients: LabClients;
  let scratch: string;
  const checkLines = (stdout: string) => stdout.split('\n').filter((line) => /^(ok|FAIL|skip) /.test(line));

  beforeAll(() => {
    lab = loadLab();
    clients = labClients({ lab });
    scratch = mkdtempSync(join(tmpdir(), 'cli-lab-'));
  });
  afterAll(() => clients.close());

  async function probeCsrsLeft(): Promise<string[]> {
    return (await clients.ca.listStatuses()).map((status) => status.name).filter((name) => name.startsWith('doctor-probe-'));
  }

  describe('doctor --lab', () => {
    it('passes every check, and its probes leave nothing at the CA', async () => {
      const before = await probeCsrsLeft();
      const result = await runCli(['doctor', '--lab']);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(checkLines(result.stdout).map((line) => line.slice(0, 4))).toEqual(Array(10).fill('ok  '));
      expect(result.stdout).toContain("ok    primary run: orchestrator on Puppet Enterprise (from the lab (PE with its orchestrator double))");
      expect(result.stdout).toContain('ok    CA signs alt names: allow-subject-alt-names is on');
      expect(result.stdout).toContain('ok    CA refuses duplicate CSRs: allow-duplicate-certs is off');
      expect(result.stdout).toContain(`CN=${lab.lifecycleClient.certname} chains to the CA, key matches`);
      expect(await probeCsrsLeft()).toEqual(before);
    });

    it('an open-source lab target (--flavor oss --primary-run none): no token read, no orchestrator asked, every check passes', async () => {
      const result = await runCli(['doctor', '--lab', '--flavor', 'oss', '--primary-run', 'none']);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(checkLines(result.stdout).map((line) => line.split(':')[0])).toEqual([
        'ok    client certificate',
        'ok    CA reachable',
        'ok    CA allows the lifecycle certificate',
        'ok    CA signs alt names',
        'ok    CA refuses duplicate CSRs',
        'ok    PuppetDB reachable',
        'ok    PuppetDB allows the lifecycle certificate',
        'ok    primary run',
      ]);
      expect(result.stdout).toContain('ok    primary run: none on open-source Puppet (from the command line)');
    });

    it('a client certificate allowed nowhere: the CA and PuppetDB refuse it, each with its fix', async () => {
      const result = await runCli(['doctor', '--lab', '--cert', lab.forbiddenClient.certPath, '--key', lab.forbiddenClient.keyPath, '--ca', lab.caCertPath]);
      expect(result.code).toBe(1);
      expect(result.stdout).toMatch(/FAIL {2}CA allows the lifecycle certificate: .*HTTP 403\): Forbidden request: \/puppet-ca\/v1\/certificate_statuses\/any/);
      expect(result.stdout).toContain('fix: the CA refused this client certificate: add an auth.conf rule (sort-order below 500) allowing the lifecycle certname');
      expect(result.stdout).toMatch(/FAIL {2}PuppetDB allows the lifecycle certificate: .*HTTP 403\).*not-allowed\.lab\.test doesnt appear in the certificate allowlist/);
      expect(result.stdout).toContain('fix: PuppetDB refused this client certificate: add the lifecycle certname to the file named by [puppetdb] certificate-allowlist');
      expect(result.stdout).toContain('ok    CA reachable');
      expect(result.stdout).toContain('ok    PuppetDB reachable');
      expect(result.stdout).toContain('skip  CA signs alt names: needs the CA to allow the lifecycle certificate');
      expect(result.stdout).toContain('skip  CA refuses duplicate CSRs: needs the CA to allow the lifecycle certificate');
      expect(result.stdout).toContain('ok    orchestrator accepts the token');
    });

    it.each(['revoked', 'expired'] as const)('a %s token (orchestrator faults): refused with the fix, the lab restored afterwards', async (fault) => {
      await setOrchestratorFaults({ token: fault }, lab);
      try {
        const result = await runCli(['doctor', '--lab']);
        expect(result.code).toBe(1);
        expect(result.stdout).toMatch(new RegExp(`FAIL {2}orchestrator accepts the token: .*HTTP 401\\).*token-${fault}`));
        expect(result.stdout).toContain('fix: the orchestrator refused the RBAC token: it has expired or been revoked');
        expect(checkLines(result.stdout).filter((line) => line.startsWith('FAIL'))).toHaveLength(1);
      } finally {
        await setOrchestratorFaults({ token: 'valid' }, lab);
      }
    });

    it('a wrong token: refused by the orchestrator, never printed', async () => {
      const file = join(scratch, 'wrong-token');
      writeFileSync(file, 'not-the-lab-token\n');
      const result = await runCli(['doctor', '--lab', '--token-file', file]);
      expect(result.code).toBe(1);
      expect(result.stdout).toMatch(/FAIL {2}orchestrator accepts the token: .*HTTP 401\).*invalid-token/);
      expect(result.stdout + result.stderr).not.toContain('not-the-lab-token');
    });

    it('a CA with allow-subject-alt-names false (a fake CA with the primary\'s certificate, answering with Puppet Server\'s 409): the fix', async () => {
      // The lab's CA allows alt names and must not be reconfigured; this stand-in answers the probe as
      // Puppet Server 7.9.5 does when it does not, and the CA API calls before it as the lab does.
      const primaryTls = {
        cert: readFileSync(join(lab.primary.ssldir, 'certs', `${lab.primary.certname}.pem`), 'utf8'),
        key: readFileSync(join(lab.primary.ssldir, 'private_keys', `${lab.primary.certname}.pem`), 'utf8'),
      };
      const csrs = new Set<string>();
      const ca = await fakePuppet(primaryTls, altNamesRefusingCa(csrs, readFileSync(lab.crlPath, 'utf8')));
      try {
        const result = await runCli(['doctor', '--lab', '--ca-url', ca.url]);
        expect(result.code).toBe(1);
        expect(checkLines(result.stdout).filter((line) => line.startsWith('FAIL'))).toEqual([
          expect.stringMatching(/^FAIL {2}CA signs alt names: .*HTTP 409\): CSR 'doctor-probe-[0-9a-f]+\.compile-masters\.invalid' contains extra subject alternative names/),
        ]);
        expect(result.stdout).toContain("fix: set 'allow-subject-alt-names: true' in the certificate-authority section of ca.conf on the primary and restart puppetserver");
        expect(csrs.size).toBe(0);
      } finally {
        await ca.close();
      }
    });
  });

  describe('status --lab', () => {
    let halfPurged: string;
    let deactivatedButSigned: string;

    beforeAll(async () => {
      // Two purges that stopped half-way, as status should show them.
      halfPurged = uniqueCertname('ip-10-9-1');
      deactivatedButSigned = uniqueCertname('ip-10-9-2');
      for (const certname of [halfPurged, deactivatedButSigned]) {
        await requestCertificate({ certname }, lab);
        await clients.ca.sign(certname);
        await storeFacts(clients.puppetdb, certname);
        await eventually(() => clients.puppetdb.getNode(certname), `${certname} in PuppetDB`);
      }
      await clients.ca.clean([halfPurged]);
      await clients.puppetdb.deactivateNode(deactivatedButSigned);
      await eventually(async () => ((await clients.puppetdb.getNode(deactivatedButSigned))?.deactivated ? true : undefined), 'deactivation');
    });

    it("without a simulated group: every certname's CA and PuppetDB state, half-done purges as drift, the lab's own certificates left out", async () => {
      // The shared lab may hold a snapshot from an earlier `npm run lab`: look through a lab
      // directory that has none.
      const dir = join(scratch, 'lab-without-snapshot');
      mkdirSync(dir, { recursive: true });
      copyFileSync(join(labDir(), 'lab.json'), join(dir, 'lab.json'));
      const previous = process.env.PUPPET_LAB_DIR;
      process.env.PUPPET_LAB_DIR = dir;
      let result: Awaited<ReturnType<typeof runCli>>;
      try {
        result = await runCli(['status', '--lab', '--json']);
      } finally {
        if (previous === undefined) delete process.env.PUPPET_LAB_DIR;
        else process.env.PUPPET_LAB_DIR = previous;
      }
      expect(result.code).toBe(0);
      expect(result.stderr).toMatch(/No simulated group in the lab/);
      const { source, rows } = JSON.parse(result.stdout) as { source: string; rows: StatusRow[] };
      expect(source).toBe("the lab's CA and PuppetDB");
      const row = (certname: string) => rows.find((candidate) => candidate.certname === certname);
      expect(row(halfPurged)).toMatchObject({ ca: 'absent', puppetdb: 'active', drift: ['active in PuppetDB but absent at the CA (a purge stopped half-way)'] });
      expect(row(deactivatedButSigned)).toMatchObject({ ca: 'signed', puppetdb: 'deactivated', drift: ['deactivated in PuppetDB but still signed at the CA (a purge stopped half-way)'] });
      for (const own of [lab.primary.certname, lab.lifecycleClient.certname, lab.forbiddenClient.certname]) expect(row(own)).toBeUndefined();
    });

    it("with the scenario's cloud snapshot: the group's rows joined with the lab's CA and PuppetDB", async () => {
      const dir = join(scratch, 'lab-with-snapshot');
      mkdirSync(join(dir, 'scenario'), { recursive: true });
      copyFileSync(join(labDir(), 'lab.json'), join(dir, 'lab.json'));
      const at = '2026-01-01T00:00:00.000Z';
      writeFileSync(
        join(dir, 'scenario', 'cloud.json'),
        JSON.stringify({
          writtenAt: at,
          members: [{ instanceId: 'i-0000000000000000a', lifecycleState: 'InService' }],
          instances: [
            { instanceId: 'i-0000000000000000a', state: 'running', privateDnsName: deactivatedButSigned, privateIp: '10.9.2.1' },
            { instanceId: 'i-0000000000000000b', state: 'terminated', privateDnsName: halfPurged, privateIp: '10.9.1.1' },
          ],
          registry: [
            { instanceId: 'i-0000000000000000a', certname: deactivatedButSigned, state: 'in-service', createdAt: at, updatedAt: at },
            { instanceId: 'i-0000000000000000b', certname: halfPurged, state: 'purged', createdAt: at, updatedAt: at },
          ],
        }),
      );
      const previous = process.env.PUPPET_LAB_DIR;
      process.env.PUPPET_LAB_DIR = dir;
      try {
        const result = await runCli(['status', '--lab', '--json']);
        expect(result.code).toBe(0);
        const { source, rows } = JSON.parse(result.stdout) as { source: string; rows: StatusRow[] };
        expect(source).toContain(join(dir, 'scenario', 'cloud.json'));
        expect(rows).toEqual([
          { instanceId: 'i-0000000000000000a', lifecycle: 'InService', certname: deactivatedButSigned, ca: 'signed', puppetdb: 'deactivated', targets: 'n/a', registry: 'in-service', drift: [] },
          {
            instanceId: 'i-0000000000000000b',
            lifecycle: 'not a member (terminated)',
            certname: halfPurged,
            ca: 'absent',
            puppetdb: 'active',
            targets: 'n/a',
            registry: 'purged',
            drift: ['active in PuppetDB but not a member of the group'],
          },
        ]);
      } finally {
        if (previous === undefined) delete process.env.PUPPET_LAB_DIR;
        else process.env.PUPPET_LAB_DIR = previous;
      }
    });
  });

  describe('secrets put with the lab\'s Puppet-issued files (Secrets Manager mocked)', () => {
    const sm = mockClient(SecretsManagerClient);
    afterAll(() => sm.restore());

    it("accepts the lifecycle certificate, its key and the CA's two-certificate chain", async () => {
      sm.on(PutSecretValueCommand).resolves({ VersionId: 'v1' });
      const result = await runCli(['secrets', 'put', '--cert-secret', ARNS.clientCert, '--cert', lab.lifecycleClient.certPath, '--key', lab.lifecycleClient.keyPath, '--ca', lab.caCertPath]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const stored = JSON.parse(sm.commandCalls(PutSecretValueCommand)[0]!.args[0].input.SecretString!) as { ca: string };
      expect(stored.ca.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    });

    it("refuses the not-allowed client's certificate with the lifecycle client's key", async () => {
      sm.reset();
      const result = await runCli(['secrets', 'put', '--cert-secret', ARNS.clientCert, '--cert', lab.forbiddenClient.certPath, '--key', lab.lifecycleClient.keyPath, '--ca', lab.caCertPath]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/the private key does not belong to the certificate/);
      expect(sm.calls()).toHaveLength(0);
    });
  });
});
