import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeTestCa, type TestCa } from '../../support/pki';
import { ARNS, runCli, STACK, STACK_OUTPUTS, stackOutputs } from './harness';

describe('secrets put', () => {
  const cfn = mockClient(CloudFormationClient);
  const sm = mockClient(SecretsManagerClient);
  let ca: TestCa;
  let dir: string;
  let files: { cert: string; key: string; ca: string; token: string; otherCa: string; otherKey: string };
  const token = 'eyJhbGciOiJSUzUxMiJ9.rbac-token-value';

  beforeAll(async () => {
    ca = await makeTestCa('Puppet CA: puppet.corp.example.com');
    const leaf = await ca.issue({ commonName: 'compile-master-lifecycle.corp.example.com' });
    const stranger = await (await makeTestCa('Someone else')).issue({ commonName: 'compile-master-lifecycle.corp.example.com' });
    dir = mkdtempSync(join(tmpdir(), 'cli-secrets-'));
    const write = (name: string, content: string) => {
      writeFileSync(join(dir, name), content);
      return join(dir, name);
    };
    files = {
      cert: write('lifecycle.pem', leaf.cert),
      key: write('lifecycle-key.pem', leaf.key),
      ca: write('ca.pem', ca.cert),
      token: write('token.txt', `${token}\n`),
      otherCa: write('other-ca.pem', (await makeTestCa('Another CA')).cert),
      otherKey: write('other-key.pem', stranger.key),
    };
  });
  afterEach(() => {
    cfn.reset();
    sm.reset();
  });

  const bundleArgs = () => ['--cert', files.cert, '--key', files.key, '--ca', files.ca];

  it('finds both secrets from the stack outputs, stores {"cert","key","ca"} JSON and the bare token, and prints neither', async () => {
    cfn.on(DescribeStacksCommand, { StackName: STACK }).resolves(STACK_OUTPUTS);
    sm.on(PutSecretValueCommand).resolves({ VersionId: 'v-1' });

    const result = await runCli(['secrets', 'put', '--stack', STACK, ...bundleArgs(), '--token-file', files.token]);

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const puts = sm.commandCalls(PutSecretValueCommand).map((call) => call.args[0].input);
    expect(puts.map((put) => put.SecretId)).toEqual([ARNS.clientCert, ARNS.rbacToken]);
    const bundle = JSON.parse(puts[0]!.SecretString!) as Record<string, string>;
    expect(Object.keys(bundle).sort()).toEqual(['ca', 'cert', 'key']);
    expect(bundle.key).toContain('PRIVATE KEY');
    expect(puts[1]!.SecretString).toBe(token);
    expect(result.stdout).toContain('CN=compile-master-lifecycle.corp.example.com');
    expect(result.stdout + result.stderr).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE|rbac-token-value/);
  });

  it('takes explicit ARNs instead of a stack, and the token alone from stdin', async () => {
    sm.on(PutSecretValueCommand).resolves({ VersionId: 'v-2' });
    const result = await runCli(['secrets', 'put', '--token-secret', ARNS.rbacToken, '--token-file', '-'], { stdin: `  ${token}  \n` });
    expect(result.code).toBe(0);
    expect(sm.commandCalls(PutSecretValueCommand).map((call) => call.args[0].input)).toEqual([{ SecretId: ARNS.rbacToken, SecretString: token }]);
    expect(cfn.calls()).toHaveLength(0);
  });

  it.each([
    ['a certificate from another CA', () => ['--cert', files.cert, '--key', files.key, '--ca', files.otherCa], /is not signed by any certificate in the CA file/],
    ['a key that is not the certificate\'s', () => ['--cert', files.cert, '--key', files.otherKey, '--ca', files.ca], /private key does not belong to the certificate/],
    ['a key where the certificate should be', () => ['--cert', files.key, '--key', files.key, '--ca', files.ca], /cert must hold a PEM certificate/],
  ])('refuses %s before writing anything, naming the problem but not the content', async (_what, args, message) => {
    const result = await runCli(['secrets', 'put', '--cert-secret', ARNS.clientCert, ...args()]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/BEGIN|PRIVATE KEY-----|aws secretsmanager/);
    expect(sm.calls()).toHaveLength(0);
  });

  it('refuses an expired certificate', async () => {
    const result = await runCli(['secrets', 'put', '--cert-secret', ARNS.clientCert, ...bundleArgs()], { now: new Date(Date.now() + 3 * 86_400_000) });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/the certificate is valid only from .* to /);
    expect(sm.calls()).toHaveLength(0);
  });

  it.each([
    ['empty', '\n', /RBAC token is empty/],
    ['two words', 'abc def\n', /does not hold a bare token — the file must hold the token alone/],
    ['JSON', '{"token":"abc"}', /does not hold a bare token/],
  ])('refuses a token that is %s', async (_what, content, message) => {
    const result = await runCli(['secrets', 'put', '--token-secret', ARNS.rbacToken, '--token-file', '-'], { stdin: content });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(sm.calls()).toHaveLength(0);
  });

  it('has no option that takes a secret value on the command line', async () => {
    const help = await runCli(['secrets', 'put', '--help']);
    expect(help.stdout).toMatch(/--cert <file>/);
    expect(help.stdout).not.toMatch(/--token </);
    const result = await runCli(['secrets', 'put', '--token-secret', ARNS.rbacToken, '--token', token]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown option '--token'/);
  });

  it('says what is missing: files that go together, a destination, stdin used twice', async () => {
    expect((await runCli(['secrets', 'put', '--cert-secret', ARNS.clientCert, '--cert', files.cert])).stderr).toMatch(/--cert, --key and --ca go together/);
    expect((await runCli(['secrets', 'put', '--token-file', files.token])).stderr).toMatch(/Pass --stack NAME or --token-secret ARN/);
    expect((await runCli(['secrets', 'put', '--cert-secret', ARNS.clientCert, '--cert', '-', '--key', '-', '--ca', files.ca])).stderr).toMatch(/Only one input can come from stdin/);
    expect((await runCli(['secrets', 'put', '--stack', STACK])).stderr).toMatch(/Nothing to store/);
    expect(sm.calls()).toHaveLength(0);
  });

  it.each([
    ['oss', 'ssm', 'open-source Puppet'],
    ['openvox', 'none', 'OpenVox'],
  ] as const)('a %s stack with %s has no token secret: the bundle alone is stored, a --token-file is refused before anything is written', async (flavor, run, title) => {
    cfn.on(DescribeStacksCommand, { StackName: STACK }).resolves(stackOutputs(flavor, run));
    sm.on(PutSecretValueCommand).resolves({ VersionId: 'v-3' });

    const refused = await runCli(['secrets', 'put', '--stack', STACK, ...bundleArgs(), '--token-file', files.token]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`Stack ${STACK} runs its ${title} primary with ${run}, not the orchestrator: it has no RBAC token secret to put --token-file in — drop --token-file`);
    expect(sm.calls()).toHaveLength(0);

    const stored = await runCli(['secrets', 'put', '--stack', STACK, ...bundleArgs()]);
    expect(stored.code).toBe(0);
    expect(sm.commandCalls(PutSecretValueCommand).map((call) => call.args[0].input.SecretId)).toEqual([ARNS.clientCert]);
  });

  it('a stack from before flavors (no Flavor or PrimaryRun output) is PE with the orchestrator and its token secret', async () => {
    cfn.on(DescribeStacksCommand, { StackName: STACK }).resolves(STACK_OUTPUTS);
    sm.on(PutSecretValueCommand).resolves({ VersionId: 'v-4' });
    expect((await runCli(['secrets', 'put', '--stack', STACK, '--token-file', files.token])).code).toBe(0);
    expect(sm.commandCalls(PutSecretValueCommand).map((call) => call.args[0].input.SecretId)).toEqual([ARNS.rbacToken]);
  });

  it('refuses an orchestrator stack without a token secret output', async () => {
    const broken = stackOutputs('pe', 'none');
    broken.Stacks[0]!.Outputs = broken.Stacks[0]!.Outputs.map((output) => (output.OutputKey === 'PrimaryRun' ? { ...output, OutputValue: 'orchestrator' } : output));
    cfn.on(DescribeStacksCommand).resolves(broken);
    const result = await runCli(['secrets', 'put', '--stack', STACK, '--token-file', files.token]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/Stack CompileMasters lacks the outputs RbacTokenSecretArn/);
  });

  it('names a stack that lacks the outputs', async () => {
    cfn.on(DescribeStacksCommand).resolves({ Stacks: [{ StackName: 'Other', StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: [] }] });
    const result = await runCli(['secrets', 'put', '--stack', 'Other', '--token-file', files.token]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/Stack Other lacks the outputs LoadBalancerDnsName.*ClientCertSecretArn/);
  });
});
