import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { IAMClient, SimulatePrincipalPolicyCommand } from '@aws-sdk/client-iam';
import { DescribeInstanceInformationCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeTestCa, type Pem, type TestCa } from '../../support/pki';
import { altNamesRefusingCa, fakePuppet, type FakePuppet } from '../../support/fake-puppet';
import { ARNS, CONTROLLER_ROLE_ARN, runCli, STACK, STACK_OUTPUTS, stackOutputs } from './harness';

const notFound = () => Object.assign(new Error("Secrets Manager can't find the specified secret value for staging label: AWSCURRENT"), { name: 'ResourceNotFoundException', $fault: 'client', $metadata: {} });

describe('doctor --stack (AWS mocked, fake primary)', () => {
  const cfn = mockClient(CloudFormationClient);
  const sm = mockClient(SecretsManagerClient);
  const ssm = mockClient(SSMClient);
  const iam = mockClient(IAMClient);
  let pki: TestCa;
  let client: Pem;
  let primary: FakePuppet;
  let cdkJson: string;
  let port: string;
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
    port = new URL(primary.url).port;
    cdkJson = siteJson({});
  });
  afterEach(() => {
    cfn.reset();
    sm.reset();
    ssm.reset();
    iam.reset();
    caPolicy.allowDuplicateCerts = false;
    primary.requests.length = 0;
  });
  afterAll(() => primary.close());

  /** The fake primary's cdk.json, with more context. */
  function siteJson(context: Record<string, unknown>): string {
    const file = join(mkdtempSync(join(tmpdir(), 'cli-doctor-')), 'cdk.json');
    // The stack refuses orchestrator settings where no orchestrator runs the primary.
    const orchestrator = context.flavor === undefined || context.flavor === 'pe' ? { orchestratorPort: port } : {};
    writeFileSync(file, JSON.stringify({ context: { primaryHostname: 'localhost', caPort: port, puppetdbPort: port, ...orchestrator, ...context } }));
    return file;
  }
  const checkNames = (stdout: string) => stdout.split('\n').filter((line) => /^(ok|FAIL|skip)/.test(line)).map((line) => line.slice(0, 6) + line.slice(6).split(':')[0]);
  const bundleSecret = () => sm.on(GetSecretValueCommand, { SecretId: ARNS.clientCert }).resolves({ SecretString: JSON.stringify({ ...client, ca: pki.cert }) });

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
    expect(checkNames(result.stdout)).toEqual([
      'ok    client certificate',
      'ok    RBAC token',
      'ok    CA reachable',
      'ok    CA allows the lifecycle certificate',
      'FAIL  CA signs alt names',
      'ok    CA refuses duplicate CSRs',
      'ok    PuppetDB reachable',
      'ok    PuppetDB allows the lifecycle certificate',
      'ok    primary run',
      'FAIL  orchestrator accepts the token',
    ]);
    expect(result.stdout).toContain(`ok    primary run: orchestrator on Puppet Enterprise (from stack ${STACK}'s outputs): PE's orchestrator runs Puppet on the primary with the RBAC token`);
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

  describe('without the orchestrator (open source, OpenVox): no token, no orchestrator', () => {
    const tagged = { primaryInstanceTag: { key: 'Role', value: 'puppet-primary' } };
    const DOCUMENT_ARN = 'arn:aws:ssm:us-west-2::document/AWS-RunShellScript';
    const INSTANCE_ARN = 'arn:aws:ec2:us-west-2:123456789012:instance/i-0123456789abcdef0';
    /** IAM's policy simulator allows the controller's role SendCommand on the document and the primary. */
    const simulationAllows = () =>
      iam.on(SimulatePrincipalPolicyCommand).resolves({
        EvaluationResults: [DOCUMENT_ARN, INSTANCE_ARN].map((arn) => ({ EvalActionName: 'ssm:SendCommand', EvalResourceName: arn, EvalDecision: 'allowed' as const })),
      });

    it("ssm: IAM denies the controller the primary (a rebuilt primary with another id): said, with the fix", async () => {
      cfn.on(DescribeStacksCommand).resolves(stackOutputs('oss', 'ssm'));
      bundleSecret();
      ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: [{ InstanceId: 'i-0123456789abcdef0', PingStatus: 'Online' }] });
      iam.on(SimulatePrincipalPolicyCommand).resolves({
        EvaluationResults: [
          { EvalActionName: 'ssm:SendCommand', EvalResourceName: DOCUMENT_ARN, EvalDecision: 'allowed' },
          { EvalActionName: 'ssm:SendCommand', EvalResourceName: INSTANCE_ARN, EvalDecision: 'implicitDeny' },
        ],
      });

      const result = await runCli(['doctor', '--stack', STACK, '--cdk-json', siteJson({ flavor: 'oss', primaryInstanceIds: ['i-0123456789abcdef0'] })]);

      expect(result.code).toBe(1);
      expect(result.stdout).toContain(`FAIL  controller may run Puppet on the primary: IAM denies the controller ssm:SendCommand on ${INSTANCE_ARN} (implicitDeny)`);
      expect(result.stdout).toContain('fix: the stack grants it on primaryInstanceIds, or on instances tagged primaryInstanceTag');
      expect(iam.commandCalls(SimulatePrincipalPolicyCommand)[0]!.args[0].input.ContextEntries).toBeUndefined();

      iam.reset();
      iam.on(SimulatePrincipalPolicyCommand).rejects(Object.assign(new Error('not authorized to perform: iam:SimulatePrincipalPolicy'), { name: 'AccessDenied', $fault: 'client', $metadata: {} }));
      const unasked = await runCli(['doctor', '--stack', STACK, '--cdk-json', siteJson({ flavor: 'oss', primaryInstanceIds: ['i-0123456789abcdef0'] })]);
      expect(unasked.stdout).toContain("skip  controller may run Puppet on the primary: doctor's credentials may not call iam:SimulatePrincipalPolicy on the controller's role");
    });

    it('ssm by tag: asks SSM for the tagged instances and reports them Online; reads no token secret, asks no orchestrator', async () => {
      cfn.on(DescribeStacksCommand).resolves(stackOutputs('oss', 'ssm'));
      bundleSecret();
      ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: [{ InstanceId: 'i-0123456789abcdef0', PingStatus: 'Online', AgentVersion: '3.3.1142.0' }] });
      simulationAllows();

      const result = await runCli(['doctor', '--stack', STACK, '--cdk-json', siteJson({ flavor: 'oss', ...tagged })]);

      expect(checkNames(result.stdout)).toEqual([
        'ok    client certificate',
        'ok    CA reachable',
        'ok    CA allows the lifecycle certificate',
        'FAIL  CA signs alt names',
        'ok    CA refuses duplicate CSRs',
        'ok    PuppetDB reachable',
        'ok    PuppetDB allows the lifecycle certificate',
        'ok    primary run',
        "ok    primary's instance(s) online in SSM",
        'ok    controller may run Puppet on the primary',
      ]);
      // Asked of the controller's own role, on the document and the instance SSM found by tag, with the tag as IAM sees it.
      expect(iam.commandCalls(SimulatePrincipalPolicyCommand).map((call) => call.args[0].input)).toEqual([
        {
          PolicySourceArn: CONTROLLER_ROLE_ARN,
          ActionNames: ['ssm:SendCommand'],
          ResourceArns: [DOCUMENT_ARN, INSTANCE_ARN],
          ContextEntries: [{ ContextKeyName: 'ssm:resourceTag/Role', ContextKeyType: 'string', ContextKeyValues: ['puppet-primary'] }],
        },
      ]);
      expect(result.stdout).toContain(`ok    primary run: ssm on open-source Puppet (from stack ${STACK}'s outputs): SSM Run Command (AWS-RunShellScript) runs Puppet on the instance(s) tagged Role=puppet-primary; no RBAC token`);
      expect(result.stdout).toContain("ok    primary's instance(s) online in SSM: i-0123456789abcdef0 (agent 3.3.1142.0) Online");
      expect(ssm.commandCalls(DescribeInstanceInformationCommand).map((call) => call.args[0].input)).toEqual([{ Filters: [{ Key: 'tag:Role', Values: ['puppet-primary'] }] }]);
      expect(sm.commandCalls(GetSecretValueCommand).map((call) => call.args[0].input.SecretId)).toEqual([ARNS.clientCert]);
      expect(primary.requests.filter((request) => request.includes('/orchestrator/'))).toEqual([]);
    });

    it('ssm by ids: one instance ConnectionLost and one SSM does not know, with what to fix', async () => {
      cfn.on(DescribeStacksCommand).resolves(stackOutputs('openvox', 'ssm'));
      bundleSecret();
      ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: [{ InstanceId: 'i-0aaaaaaaaaaaaaaaa', PingStatus: 'ConnectionLost', LastPingDateTime: new Date('2026-01-01T00:00:00Z') }] });

      const result = await runCli(['doctor', '--stack', STACK, '--cdk-json', siteJson({ flavor: 'openvox', primaryInstanceIds: ['i-0aaaaaaaaaaaaaaaa', 'i-0bbbbbbbbbbbbbbbb'] })]);

      expect(result.code).toBe(1);
      expect(ssm.commandCalls(DescribeInstanceInformationCommand)[0]!.args[0].input).toEqual({ Filters: [{ Key: 'InstanceIds', Values: ['i-0aaaaaaaaaaaaaaaa', 'i-0bbbbbbbbbbbbbbbb'] }] });
      expect(result.stdout).toContain(
        "FAIL  primary's instance(s) online in SSM: i-0bbbbbbbbbbbbbbbb is not a managed instance (SSM has never heard from its agent, or it is stopped); i-0aaaaaaaaaaaaaaaa is ConnectionLost since 2026-01-01T00:00:00.000Z",
      );
      expect(result.stdout).toMatch(/fix: on the primary: run the SSM agent .*AmazonSSMManagedInstanceCore.*ssm, ssmmessages and ec2messages endpoints \(VPC interface endpoints, or HTTPS egress/);
    });

    it('ssm by tag matching nothing: tag the primary; AccessDenied: which permission doctor needs', async () => {
      cfn.on(DescribeStacksCommand).resolves(stackOutputs('oss', 'ssm'));
      bundleSecret();
      ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: [] });
      const site = siteJson({ flavor: 'oss', ...tagged });
      const untagged = await runCli(['doctor', '--stack', STACK, '--cdk-json', site]);
      expect(untagged.stdout).toContain("FAIL  primary's instance(s) online in SSM: SSM manages no instance tagged Role=puppet-primary");
      expect(untagged.stdout).toContain('fix: tag the primary (aws ec2 create-tags --resources <its instance id> --tags Key=Role,Value=puppet-primary)');

      ssm.reset();
      ssm.on(DescribeInstanceInformationCommand).rejects(Object.assign(new Error('User: arn:aws:iam::123456789012:user/ops is not authorized to perform: ssm:DescribeInstanceInformation'), { name: 'AccessDeniedException', $fault: 'client', $metadata: {} }));
      const denied = await runCli(['doctor', '--stack', STACK, '--cdk-json', site]);
      expect(denied.stdout).toContain("FAIL  primary's instance(s) online in SSM: DescribeInstanceInformation failed: AccessDeniedException");
      expect(denied.stdout).toContain('fix: run doctor with credentials allowed ssm:DescribeInstanceInformation (read-only)');
    });

    it('none: nothing to ask but the Puppet services; the report says the site must admit the tier by role', async () => {
      cfn.on(DescribeStacksCommand).resolves(stackOutputs('oss', 'none'));
      bundleSecret();
      const result = await runCli(['doctor', '--stack', STACK, '--cdk-json', siteJson({ flavor: 'oss', primaryRun: 'none' })]);
      expect(result.stdout).toContain("ok    primary run: none on open-source Puppet (from stack CompileMasters's outputs): nothing runs Puppet on the primary when compile masters come and go: the site's PuppetDB allow-list and auth rules must admit them by role");
      expect(result.stdout).not.toMatch(/RBAC token:|orchestrator|SSM/);
      expect(ssm.calls()).toHaveLength(0);
    });

    it('an empty bundle secret: the fix has no --token-file, and SSM is still asked', async () => {
      cfn.on(DescribeStacksCommand).resolves(stackOutputs('oss', 'ssm'));
      sm.on(GetSecretValueCommand).rejects(notFound());
      ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: [{ InstanceId: 'i-0123456789abcdef0', PingStatus: 'Online' }] });
      simulationAllows();
      const result = await runCli(['doctor', '--stack', STACK, '--cdk-json', siteJson({ flavor: 'oss', ...tagged })]);
      expect(result.stdout).toContain(`      fix: npx compile-masters secrets put --stack ${STACK} --cert FILE --key FILE --ca FILE\n`);
      expect(checkNames(result.stdout)).toEqual([
        'FAIL  client certificate',
        'skip  CA',
        'skip  PuppetDB',
        'skip  alt names',
        'ok    primary run',
        "ok    primary's instance(s) online in SSM",
        'ok    controller may run Puppet on the primary',
      ]);
    });

    it('cdk.json and the deployed stack disagree: said, with the fix', async () => {
      cfn.on(DescribeStacksCommand).resolves(stackOutputs('oss', 'none'));
      bundleSecret();
      const result = await runCli(['doctor', '--stack', STACK, '--cdk-json', cdkJson]);
      expect(result.code).toBe(1);
      expect(result.stdout).toContain(`FAIL  primary run: none on open-source Puppet (from stack ${STACK}'s outputs), but ${cdkJson} says pe with orchestrator, the deployed stack oss with none`);
      expect(result.stdout).toContain('fix: deploy cdk.json again (npx cdk deploy)');
    });

    it('--flavor and --primary-run are for local targets; a token file without the orchestrator is refused', async () => {
      const withStack = await runCli(['doctor', '--stack', STACK, '--flavor', 'oss']);
      expect(withStack.code).toBe(2);
      expect(withStack.stderr).toMatch(/option '--flavor <name>' cannot be used with option '--stack <name>'/);
      const token = await runCli(['doctor', '--cert-secret', ARNS.clientCert, '--token-file', '-', '--flavor', 'openvox', '--cdk-json', siteJson({})]);
      expect(token.code).toBe(2);
      expect(token.stderr).toMatch(/--token-file has no use here: only a primary run through the orchestrator needs an RBAC token/);
      const wrong = await runCli(['doctor', '--cert-secret', ARNS.clientCert, '--flavor', 'oss', '--primary-run', 'orchestrator', '--cdk-json', siteJson({})]);
      expect(wrong.stderr).toMatch(/--primary-run orchestrator with open-source Puppet: open-source Puppet has no orchestrator; use "ssm" or "none"/);
    });
  });
});
