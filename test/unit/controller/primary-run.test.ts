import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ListCommandsCommand, SendCommandCommand, SSMClient, type Command } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { AwsCallError, ConfigError } from '../../../lib/errors';
import { TIMING } from '../../../lambdas/controller/vocabulary';
import { RUN_ID_PATTERN, type ClientBundle } from '../../../lambdas/controller/ports';
import { createPrimaryRun } from '../../../lambdas/controller/primary-run';
import { NO_RUN_ID, NoPrimaryRun } from '../../../lambdas/controller/primary-run/none';
import { OrchestratorPrimaryRun } from '../../../lambdas/controller/primary-run/orchestrator';
import { agentRunScript, SsmPrimaryRun } from '../../../lambdas/controller/primary-run/ssm';
import { fakePuppet, type FakePuppet } from '../../support/fake-puppet';
import { makeTestCa, type TestCa } from '../../support/pki';
import { RecordingLogger } from './support';

const COMMAND_ID = '5f0c3a1e-8b9d-4c2a-a7e6-0123456789ab';
const PUPPET = '/opt/puppetlabs/bin/puppet';

describe('SsmPrimaryRun', () => {
  const ssm = mockClient(SSMClient);
  afterEach(() => ssm.reset());
  const byIds = (logger?: RecordingLogger) =>
    new SsmPrimaryRun({ client: new SSMClient({ region: 'us-west-2' }), target: { instanceIds: ['i-0123456789abcdef0', 'i-0fedcba9876543210'] }, puppetBin: PUPPET, executionTimeoutSeconds: 1800, logger });
  const byTag = (logger?: RecordingLogger) =>
    new SsmPrimaryRun({ client: new SSMClient({ region: 'us-west-2' }), target: { tag: { key: 'Role', value: 'puppet-primary' } }, puppetBin: PUPPET, executionTimeoutSeconds: 1800, logger });

  it('sends AWS-RunShellScript to the primary by instance ids, and answers the command id', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: COMMAND_ID } });
    await expect(byIds().start('compile-masters: 2 compile master change(s) (attempt 1)')).resolves.toBe(COMMAND_ID);
    expect(ssm.commandCalls(SendCommandCommand).map((call) => call.args[0].input)).toEqual([
      {
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: ['i-0123456789abcdef0', 'i-0fedcba9876543210'],
        Parameters: { commands: agentRunScript(PUPPET), executionTimeout: ['1800'] },
        Comment: 'compile-masters: 2 compile master change(s) (attempt 1)',
      },
    ]);
    expect(COMMAND_ID).toMatch(RUN_ID_PATTERN);
  });

  it('sends it by tag, and keeps the Comment within 100 characters', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: COMMAND_ID } });
    await byTag().start('x'.repeat(150));
    const [input] = ssm.commandCalls(SendCommandCommand).map((call) => call.args[0].input);
    expect(input).toEqual({
      DocumentName: 'AWS-RunShellScript',
      Targets: [{ Key: 'tag:Role', Values: ['puppet-primary'] }],
      Parameters: { commands: agentRunScript(PUPPET), executionTimeout: ['1800'] },
      Comment: 'x'.repeat(100),
    });
  });

  it.each([
    ['InvalidInstanceId', /not a managed instance of Systems Manager, or its SSM agent is offline.*AmazonSSMManagedInstanceCore/],
    ['AccessDeniedException', /may run AWS-RunShellScript only on the primary's instances \(instance ids i-0123456789abcdef0, i-0fedcba9876543210\)/],
    ['UnsupportedPlatformType', /runs on Linux only/],
  ])('says what to do when SendCommand answers %s', async (name, hint) => {
    ssm.on(SendCommandCommand).rejects(Object.assign(new Error('refused'), { name }));
    const error = (await byIds().start('run').catch((e: unknown) => e)) as AwsCallError;
    expect(error).toBeInstanceOf(AwsCallError);
    expect(error.summary).toBe(`SendCommand failed: ${name}: refused`);
    expect(error.hint).toMatch(hint);
  });

  it('hands other SendCommand failures to the common AWS error (throttling says the queue retries)', async () => {
    ssm.on(SendCommandCommand).rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));
    const error = (await byIds().start('run').catch((e: unknown) => e)) as AwsCallError;
    expect(error).toBeInstanceOf(AwsCallError);
    expect(error.message).toMatch(/SendCommand failed: ThrottlingException: Rate exceeded — AWS kept throttling/);
    ssm.on(SendCommandCommand).resolves({});
    await expect(byIds().start('run')).rejects.toThrow(/SendCommand answered no command id/);
  });

  const command = (fields: Partial<Command>): Command => ({ CommandId: COMMAND_ID, TargetCount: 1, ...fields });

  it.each([
    ['Pending', 'running'],
    ['InProgress', 'running'],
    ['Delayed', 'running'],
    ['Success', 'finished'],
    ['Failed', 'failed'],
    ['TimedOut', 'failed'],
    ['Cancelled', 'failed'],
    ['Cancelling', 'failed'],
    // A status AWS may add later: followed until the planner's run timeout.
    ['SomethingNew', 'running'],
  ])('reads status %s as %s, with ListCommands by command id', async (status, state) => {
    ssm.on(ListCommandsCommand).resolves({ Commands: [command({ Status: status as Command['Status'] })] });
    await expect(byIds().state(COMMAND_ID)).resolves.toBe(state);
    expect(ssm.commandCalls(ListCommandsCommand).map((call) => call.args[0].input)).toEqual([{ CommandId: COMMAND_ID }]);
  });

  it('counts a finished command that ran on no instance as failed, and says the target matched nothing', async () => {
    const logger = new RecordingLogger();
    ssm.on(ListCommandsCommand).resolves({ Commands: [command({ Status: 'Pending', TargetCount: 0 })] });
    // Targets are resolved while it is pending: not yet a verdict.
    await expect(byTag(logger).state(COMMAND_ID)).resolves.toBe('running');
    ssm.on(ListCommandsCommand).resolves({ Commands: [command({ Status: 'Success', TargetCount: 0, CompletedCount: 0 })] });
    await expect(byTag(logger).state(COMMAND_ID)).resolves.toBe('failed');
    expect(logger.lines).toEqual([
      expect.objectContaining({
        level: 'warn',
        message: "The primary's SSM command ran on no instance: its target matched nothing",
        attributes: expect.objectContaining({ runId: COMMAND_ID, target: 'tag Role=puppet-primary' }),
      }),
    ]);
  });

  it('answers undefined for a command SSM does not know, and for an id that is no command id (without asking)', async () => {
    ssm.on(ListCommandsCommand).resolves({ Commands: [] });
    await expect(byIds().state(COMMAND_ID)).resolves.toBeUndefined();
    ssm.on(ListCommandsCommand).rejects(Object.assign(new Error('bad id'), { name: 'InvalidCommandId' }));
    await expect(byIds().state(COMMAND_ID)).resolves.toBeUndefined();
    ssm.reset();
    // An orchestrator job number left from before a switch of runner.
    await expect(byIds().state('7')).resolves.toBeUndefined();
    expect(ssm.commandCalls(ListCommandsCommand)).toEqual([]);
  });

  it('throws an AWS error when ListCommands fails otherwise (the pass sees the runner as unreachable)', async () => {
    ssm.on(ListCommandsCommand).rejects(Object.assign(new Error('boom'), { name: 'InternalServerError' }));
    await expect(byIds().state(COMMAND_ID)).rejects.toThrow(/ListCommands failed: InternalServerError: boom/);
  });
});

/** The script SSM runs, run by sh against a stand-in for puppet that exits as told. */
describe('the agent run script', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'agent-run-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  async function runWith(exitCode: number, bin = join(dir, "pup'pet")): Promise<{ code: number; args: string }> {
    await writeFile(bin, `#!/bin/sh\necho "$@" > '${dir}/args'\nexit ${exitCode}\n`);
    await chmod(bin, 0o755);
    const code = await promisify(execFile)('sh', ['-c', agentRunScript(bin).join('\n')]).then(
      () => 0,
      (error: { code: number }) => error.code,
    );
    return { code, args: (await readFile(join(dir, 'args'), 'utf8')).trim() };
  }

  it.each([
    [0, 0],
    [2, 0],
    [1, 1],
    [4, 4],
    [6, 6],
  ])('puppet exiting %i makes the command exit %i (0 and 2 are good runs)', async (puppet, command) => {
    const result = await runWith(puppet);
    expect(result.code).toBe(command);
    expect(result.args).toBe('agent --onetime --no-daemonize --no-usecacheonfailure --detailed-exitcodes --waitforlock 10 --maxwaitforlock 900');
  });

  it('fails when puppet is not there', async () => {
    const code = await promisify(execFile)('sh', ['-c', agentRunScript(join(dir, 'missing')).join('\n')]).then(
      () => 0,
      (error: { code: number }) => error.code,
    );
    expect(code).toBe(127);
  });
});

describe('NoPrimaryRun', () => {
  it('starts nothing, says why once per start, and answers finished', async () => {
    const logger = new RecordingLogger();
    const none = new NoPrimaryRun(logger);
    const id = await none.start('compile-masters: 1 compile master change(s) (attempt 1)');
    expect(id).toBe(NO_RUN_ID);
    expect(id).toMatch(RUN_ID_PATTERN);
    await expect(none.state(id)).resolves.toBe('finished');
    await expect(none.state(id)).resolves.toBe('finished');
    expect(logger.lines).toEqual([
      expect.objectContaining({ level: 'info', message: expect.stringMatching(/PRIMARY_RUN=none.*PuppetDB allow-list and auth rules admit the tier by role/) }),
    ]);
  });
});

describe('OrchestratorPrimaryRun', () => {
  let testCa: TestCa;
  let server: FakePuppet;
  const jobs = new Map<string, string>();
  const tokensSeen: string[] = [];
  const deploys: unknown[] = [];

  beforeAll(async () => {
    testCa = await makeTestCa();
    server = await fakePuppet(await testCa.issue({ commonName: 'localhost', dnsNames: ['localhost'] }), ({ method, path, body, headers }) => {
      tokensSeen.push(String(headers['x-authentication']));
      if (method === 'POST' && path === '/orchestrator/v1/command/deploy') {
        deploys.push(JSON.parse(body));
        return { status: 202, body: { job: { id: 'https://localhost/orchestrator/v1/jobs/81', name: '81' } } };
      }
      const state = jobs.get(path.replace('/orchestrator/v1/jobs/', ''));
      return state ? { status: 200, body: { id: `https://localhost${path}`, name: path.split('/').pop(), state } } : { status: 404, body: { kind: 'puppetlabs.orchestrator/unknown-job' } };
    });
  });
  afterAll(() => server.close());
  afterEach(() => {
    jobs.clear();
    tokensSeen.length = 0;
    deploys.length = 0;
    server.requests.length = 0;
  });

  function runner(token: () => Promise<string>): OrchestratorPrimaryRun {
    const bundle: ClientBundle = { cert: 'unused', key: 'unused', ca: testCa.cert };
    return new OrchestratorPrimaryRun({
      secrets: { clientBundle: async () => bundle, rbacToken: token },
      orchestrator: { hostname: 'localhost', port: Number(new URL(server.url).port), environment: 'production' },
      primaryCertname: 'primary.corp.example.com',
    });
  }

  it('deploys the environment to the primary alone, with the token, and answers the job number', async () => {
    await expect(runner(async () => 'TOKEN-1').start('compile-masters: 1 change')).resolves.toBe('81');
    expect(deploys).toEqual([{ environment: 'production', scope: { nodes: ['primary.corp.example.com'] }, description: 'compile-masters: 1 change' }]);
    expect(tokensSeen).toEqual(['TOKEN-1']);
  });

  it.each([
    ['new', 'running'],
    ['ready', 'running'],
    ['running', 'running'],
    ['stopping', 'running'],
    ['finished', 'finished'],
    ['failed', 'failed'],
    ['stopped', 'failed'],
  ])('reads job state %s as %s', async (state, expected) => {
    jobs.set('81', state);
    await expect(runner(async () => 'TOKEN-1').state('81')).resolves.toBe(expected);
  });

  it('answers undefined for a job the orchestrator does not know, and for an id that is no job number (without asking)', async () => {
    const orchestrator = runner(async () => 'TOKEN-1');
    await expect(orchestrator.state('82')).resolves.toBeUndefined();
    expect(server.requests).toEqual(['GET /orchestrator/v1/jobs/82']);
    await expect(orchestrator.state(COMMAND_ID)).resolves.toBeUndefined();
    expect(server.requests).toHaveLength(1);
  });

  it('follows a rotated token, and without a token secret fails the run, not the controller', async () => {
    let token = 'TOKEN-1';
    const orchestrator = runner(async () => token);
    jobs.set('81', 'running');
    await orchestrator.state('81');
    token = 'TOKEN-2';
    await orchestrator.state('81');
    expect(tokensSeen).toEqual(['TOKEN-1', 'TOKEN-2']);
    await expect(runner(() => Promise.reject(new ConfigError('No RBAC token secret is configured'))).start('run')).rejects.toThrow(ConfigError);
  });
});

describe('createPrimaryRun', () => {
  const secrets = { clientBundle: vi.fn(), rbacToken: vi.fn() };
  const deps = (ssmClient = vi.fn(() => new SSMClient({ region: 'us-west-2' }))) => ({ secrets, logger: new RecordingLogger(), primaryCertname: 'primary.corp.example.com', ssmClient });

  it('builds the runner the configuration names, an SSM client only for SSM, with the run timeout as its execution timeout', async () => {
    const noSsm = vi.fn(() => new SSMClient({ region: 'us-west-2' }));
    expect(createPrimaryRun({ mode: 'orchestrator', rbacTokenSecretArn: 'arn', orchestrator: { hostname: 'puppet', port: 8143, environment: 'production' } }, deps(noSsm))).toBeInstanceOf(OrchestratorPrimaryRun);
    expect(createPrimaryRun({ mode: 'none' }, deps(noSsm))).toBeInstanceOf(NoPrimaryRun);
    expect(noSsm).not.toHaveBeenCalled();
    expect(secrets.rbacToken).not.toHaveBeenCalled();

    const ssm = mockClient(SSMClient);
    try {
      ssm.on(SendCommandCommand).resolves({ Command: { CommandId: COMMAND_ID } });
      const runner = createPrimaryRun({ mode: 'ssm', target: { instanceIds: ['i-0123456789abcdef0'] }, puppetBin: PUPPET }, deps());
      expect(runner).toBeInstanceOf(SsmPrimaryRun);
      await runner.start('run');
      expect(ssm.commandCalls(SendCommandCommand)[0]?.args[0].input.Parameters?.executionTimeout).toEqual([String(TIMING.runTimeoutMs / 1000)]);
    } finally {
      ssm.restore();
    }
  });
});
