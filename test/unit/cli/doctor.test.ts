import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeTestCa, type Pem, type TestCa } from '../../support/pki';
import { altNamesRefusingCa, fakePuppet, type FakePuppet } from '../../support/fake-puppet';
import { ARNS, runCli, STACK, STACK_OUTPUTS } from './harness';

const notFound = () => Object.assign(new Error("Secrets Manager can't find the specified secret value for staging label: AWSCURRENT"), { name: 'ResourceNotFoundException', $fault: 'client', $metadata: {} });

describe('doctor --stack (AWS mocked, fake primary)', () => {
  const cfn = mockClient(CloudFormationClient);
  const sm = mockClient(SecretsManagerClient);
  let pki: TestCa;
  let client: Pem;
  let primary: FakePuppet;
  let cdkJson: string;
  const csrs = new Set<string>();
  const caPolicy = { allowDuplicateCerts: false };

  beforeAll(async () => {
    pki = await makeTestCa('Puppet CA: localhost');
    client = await pki.issue({ commonName: 'compile-master-lifecycle.corp.example.com' });
    // A primary with allow-subject-alt-names false and a token it does not know.
    const ca = altNamesRefusingCa(csrs, '-----BEGIN X509 CRL-----', caPolicy);
    primary = await fakePuppet(await pki.issue({ commonName: 'localhost', dnsNames: ['localhost'] }), (request) => {
      if (request.path.startsWith('/pdb/query/v4/nodes')) return { status: 200, body: [] };
      if (request.path.startsWith('/orchestrator/v1/jobs/')) return { status: 401, body: { kind: 'puppetlabs.rbac/token-expired', msg: 'The provided token has expired.' } };
      return ca(request);
    });
    const port = new URL(primary.url).port;
    cdkJson = join(mkdtempSync(join(tmpdir(), 'cli-doctor-')), 'cdk.json');
    writeFileSync(cdkJson, JSON.stringify({ context: { primaryHostname: 'localhost', caPort: port, puppetdbPort: port, orchestratorPort: port } }));
  });
  afterEach(() => {
    cfn.reset();
    sm.reset();
    caPolicy.allowDuplicateCerts = false;
    primary.requests.length = 0;
  });
  afterAll(() => primary.close());

  it('reports empty secrets with the command that fills them, and skips what needs them', async () => {
    cfn.on(DescribeStacksCommand).resolves(STACK_OUTPUTS);
    sm.on(GetSecretValueCommand).rejects(notFound());
    const result = await runCli(['doctor', '--stack', STACK, '--cdk-json', cdkJson]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`FAIL  client certificate: The lifecycle client certificate bundle secret ${ARNS.clientCert} has no value (or does not exist)`);
    expect(result.stdout).toContain(`FAIL  RBAC token: The RBAC token secret ${ARNS.rbacToken} has no value (or does not exist)`);
    expect(result.stdout).toContain(`      fix: npx compile-masters secrets put --stack ${STACK} --cert FILE --key FILE --ca FILE --token-file FILE`);
    expect(result.stdout).toMatch(/skip {2}CA: needs a readable client certificate bundle/);
    expect(primary.requests).toEqual([]);
  });

  it('with secrets in place: alt names refused (Puppet\'s 409) and an expired token, each with its fix; the probe CSR is deleted', async () => {
    cfn.on(DescribeStacksCommand).resolves(STACK_OUTPUTS);
    sm.on(GetSecretValueCommand, { SecretId: ARNS.clientCert }).resolves({ SecretString: JSON.stringify({ ...client, ca: pki.cert }) });
    sm.on(GetSecretValueCommand, { SecretId: ARNS.rbacToken }).resolves({ SecretString: 'expired-token\n' });

    const result = await runCli(['doctor', '--stack', STACK, '--cdk-json', cdkJson]);

    expect(result.code).toBe(1);
    const lines = result.stdout.split('\n');
    expect(lines.filter((line) => /^(ok|FAIL|skip)/.test(line)).map((line) => line.slice(0, 6) + line.slice(6).split(':')[0])).toEqual([
      'ok    client certificate',
      'ok    RBAC token',
      'ok    CA reachable',
      'ok    CA allows the lifecycle certificate',
      'FAIL  CA signs alt names',
      'ok    CA refuses duplicate CSRs',
      'ok    PuppetDB reachable',
      'ok    PuppetDB allows the lifecycle certificate',
      'FAIL  orchestrator accepts the token',
    ]);
    expect(result.stdout).toMatch(/FAIL {2}CA signs alt names: ca sign at .* failed \(HTTP 409\): CSR 'doctor-probe-[0-9a-f]+\.compile-masters\.invalid' contains extra subject alternative names/);
    expect(result.stdout).toContain("fix: set 'allow-subject-alt-names: true' in the certificate-authority section of ca.conf on the primary and restart puppetserver");
    expect(result.stdout).toMatch(/FAIL {2}orchestrator accepts the token: .*HTTP 401.*token-expired/);
    expect(result.stdout).toMatch(/fix: the orchestrator refused the RBAC token: it has expired or been revoked/);
    expect(result.stdout).not.toContain('expired-token');
    expect(csrs.size).toBe(0);
    expect(primary.requests.filter((request) => request.startsWith('DELETE /puppet-ca/v1/certificate_status/doctor-probe-'))).toHaveLength(2);
  });

  it('a CA with allow-duplicate-certs on (it takes a second CSR for a certname, as Puppet Server does then): the fix; the probe CSR is deleted', async () => {
    caPolicy.allowDuplicateCerts = true;
    cfn.on(DescribeStacksCommand).resolves(STACK_OUTPUTS);
    sm.on(GetSecretValueCommand, { SecretId: ARNS.clientCert }).resolves({ SecretString: JSON.stringify({ ...client, ca: pki.cert }) });
    sm.on(GetSecretValueCommand, { SecretId: ARNS.rbacToken }).resolves({ SecretString: 'expired-token\n' });

    const result = await runCli(['doctor', '--stack', STACK, '--cdk-json', cdkJson]);

    expect(result.code).toBe(1);
    expect(result.stdout).toContain('FAIL  CA refuses duplicate CSRs: allow-duplicate-certs is on: the CA accepted a second CSR for the same certname');
    expect(result.stdout).toContain("fix: set 'allow_duplicate_certs = false' in the [server] section of puppet.conf and 'allow-duplicate-certs: false' in the certificate-authority section of ca.conf");
    expect(result.stdout).toContain('restart puppetserver');
    const probes = primary.requests.filter((request) => /^PUT \/puppet-ca\/v1\/certificate_request\/doctor-probe-/.test(request));
    // The alt-names probe's CSR, then the duplicates probe's CSR twice under one name.
    expect(probes).toHaveLength(3);
    expect(csrs.size).toBe(0);
  });
});
