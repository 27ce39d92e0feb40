import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DescribeInstanceInformationCommand,
  InvalidCommandId,
  InvalidDocument,
  InvalidInstanceId,
  InvalidParameters,
  ListCommandsCommand,
  SendCommandCommand,
  SSMClient,
  type Command,
  type DescribeInstanceInformationCommandInput,
  type SendCommandCommandInput,
} from '@aws-sdk/client-ssm';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { labAwsCa, type AwsLabCa } from '../../../lab/aws/ca';
import { roleSessionCredentials, type SessionCredentials } from '../../../lab/aws/credentials';
import { startSsmEndpoint, type SsmEndpoint } from '../../../lab/aws/ssm-endpoint';

const REGION = 'us-west-2';
const ACCOUNT = '123456789012';
const PRIMARY = 'i-0b1a0b1a0b1a0b1a0';
const OTHER = 'i-0c2c0c2c0c2c0c2c0';

let dir: string;
let ca: AwsLabCa;
let session: SessionCredentials;
let endpoint: SsmEndpoint;
const clients: SSMClient[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ssm-endpoint-'));
  ca = await labAwsCa(dir);
  session = roleSessionCredentials();
  const key = { secret: session.secretAccessKey, token: session.sessionToken, expiration: session.expiration };
  endpoint = await startSsmEndpoint({
    host: '127.0.0.1',
    port: 0,
    region: REGION,
    accountId: ACCOUNT,
    ca,
    credentials: { lookup: (id) => (id === session.accessKeyId ? key : undefined) },
    instances: [{ instanceId: PRIMARY, tags: { Role: 'puppet-primary' }, computerName: 'primary.lab.test', ipAddress: '127.0.0.1' }],
    deliveryDelayMs: 100,
  });
});

afterAll(async () => {
  await endpoint?.close();
  await rm(dir, { recursive: true, force: true });
});

afterEach(() => {
  endpoint.setFaults({ sendCommand: 'normal', runs: 'real' });
  for (const client of clients.splice(0)) client.destroy();
  vi.unstubAllEnvs();
});

/** An SSMClient as the controller builds one, pointed at the double and pinning the lab AWS CA. */
function ssm(credentials: Partial<SessionCredentials> = {}): SSMClient {
  const client = new SSMClient({
    region: REGION,
    endpoint: endpoint.url,
    maxAttempts: 1,
    credentials: { accessKeyId: session.accessKeyId, secretAccessKey: session.secretAccessKey, sessionToken: session.sessionToken, ...credentials },
    requestHandler: { httpsAgent: new Agent({ ca: ca.certPem }) },
  });
  clients.push(client);
  return client;
}

async function send(input: Partial<SendCommandCommandInput> & { commands?: string[]; executionTimeout?: string }): Promise<Command> {
  const { commands = ['true'], executionTimeout, ...rest } = input;
  const parameters: Record<string, string[]> = { commands, ...(executionTimeout ? { executionTimeout: [executionTimeout] } : {}) };
  const { Command } = await ssm().send(new SendCommandCommand({ DocumentName: 'AWS-RunShellScript', InstanceIds: [PRIMARY], Parameters: parameters, ...rest }));
  if (!Command?.CommandId) throw new Error('SendCommand answered no command');
  return Command;
}

async function listed(commandId: string): Promise<Command> {
  const { Commands } = await ssm().send(new ListCommandsCommand({ CommandId: commandId }));
  expect(Commands).toHaveLength(1);
  return Commands![0]!;
}

/** Polls ListCommands until the command is terminal; returns every Status seen, in order, without repeats. */
async function follow(commandId: string, timeoutMs = 20_000): Promise<{ seen: string[]; last: Command }> {
  const seen: string[] = [];
  const started = Date.now();
  for (;;) {
    const command = await listed(commandId);
    if (seen.at(-1) !== command.Status) seen.push(command.Status ?? '?');
    if (['Success', 'Failed', 'TimedOut', 'Cancelled'].includes(command.Status ?? '')) return { seen, last: command };
    if (Date.now() - started > timeoutMs) throw new Error(`command ${commandId} still ${command.Status} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function rejection(action: Promise<unknown>): Promise<Error & { $metadata: { httpStatusCode?: number } }> {
  try {
    await action;
  } catch (error) {
    return error as Error & { $metadata: { httpStatusCode?: number } };
  }
  throw new Error('the call succeeded');
}

describe('SendCommand and ListCommands', () => {
  it('runs the commands with bash: Pending at once, InProgress while they run, Success once they exit 0', async () => {
    const before = Date.now();
    const sent = await send({ commands: ['sleep 1', 'echo "answer $((6 * 7)) from $BASH"'], Comment: 'converge the primary' });
    expect(sent).toMatchObject({ DocumentName: 'AWS-RunShellScript', Status: 'Pending', InstanceIds: [PRIMARY], TargetCount: 1, CompletedCount: 0, Comment: 'converge the primary' });
    expect(sent.CommandId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    // Timestamps travel as epoch seconds; the SDK reads them into Dates.
    expect(sent.RequestedDateTime).toBeInstanceOf(Date);
    expect(sent.RequestedDateTime!.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(sent.Parameters).toEqual({ commands: ['sleep 1', 'echo "answer $((6 * 7)) from $BASH"'] });

    const { seen, last } = await follow(sent.CommandId!);
    expect(seen).toEqual(['Pending', 'InProgress', 'Success'].slice(seen[0] === 'Pending' ? 0 : 1));
    expect(seen).toContain('InProgress');
    expect(last).toMatchObject({ Status: 'Success', StatusDetails: 'Success', TargetCount: 1, CompletedCount: 1, ErrorCount: 0 });
    const [invocation] = endpoint.commands().find((command) => command.commandId === sent.CommandId)!.invocations;
    expect(invocation).toMatchObject({ instanceId: PRIMARY, status: 'Success', exitCode: 0 });
    expect(invocation?.stdout).toBe('answer 42 from /usr/bin/bash\n');
  });

  it('reads Failed when the script exits non-zero, with ErrorCount 1', async () => {
    const sent = await send({ commands: ['echo about to fail >&2', 'exit 4'] });
    const { last } = await follow(sent.CommandId!);
    expect(last).toMatchObject({ Status: 'Failed', StatusDetails: 'Failed', TargetCount: 1, CompletedCount: 1, ErrorCount: 1 });
    expect(endpoint.commands().find((command) => command.commandId === sent.CommandId)?.invocations[0]).toMatchObject({ exitCode: 4, stderr: 'about to fail\n' });
  });

  it('honours executionTimeout: TimedOut, and what the script started is killed with it', async () => {
    const pidFile = join(dir, 'sleeper.pid');
    const started = Date.now();
    const sent = await send({ commands: [`sleep 60 & echo $! > ${pidFile}`, 'wait'], executionTimeout: '1' });
    const { last } = await follow(sent.CommandId!);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(last).toMatchObject({ Status: 'TimedOut', StatusDetails: 'Execution Timed Out', CompletedCount: 1, ErrorCount: 1 });
    const sleeper = Number((await readFile(pidFile, 'utf8')).trim());
    // Killed, not finished: sleep 60 would outlive this. A loaded machine may take a moment to
    // deliver the signal, and a killed orphan stays a zombie until something reaps it.
    const alive = () => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${sleeper}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    for (let waited = 0; waited < 5_000 && alive(); waited += 100) await sleep(100);
    expect(alive()).toBe(false);
  });

  it("runs the script without the endpoint process's environment (no credentials leak into it)", async () => {
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'must-not-leak');
    const sent = await send({ commands: ['echo "secret=${AWS_SECRET_ACCESS_KEY:-none} path=$PATH"'] });
    await follow(sent.CommandId!);
    expect(endpoint.commands().find((command) => command.commandId === sent.CommandId)?.invocations[0]?.stdout).toBe(
      'secret=none path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n',
    );
  });

  it("targets by tag: the primary's tag runs there; a tag nothing carries ends Success with TargetCount 0 (No Instances In Tag)", async () => {
    const byTag = await send({ InstanceIds: undefined, Targets: [{ Key: 'tag:Role', Values: ['puppet-primary'] }], commands: ['echo tagged'] });
    expect(byTag).toMatchObject({ Status: 'Pending', InstanceIds: [], Targets: [{ Key: 'tag:Role', Values: ['puppet-primary'] }], TargetCount: 0 });
    expect((await follow(byTag.CommandId!)).last).toMatchObject({ Status: 'Success', StatusDetails: 'Success', TargetCount: 1, CompletedCount: 1 });

    const marker = join(dir, 'untargeted');
    const nobody = await send({ InstanceIds: undefined, Targets: [{ Key: 'tag:Role', Values: ['no-such-role'] }], commands: [`touch ${marker}`] });
    const { last } = await follow(nobody.CommandId!);
    expect(last).toMatchObject({ Status: 'Success', StatusDetails: 'No Instances In Tag', TargetCount: 0, CompletedCount: 0, ErrorCount: 0 });
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses a document other than AWS-RunShellScript: InvalidDocument, and records nothing', async () => {
    const count = endpoint.commands().length;
    const error = await rejection(send({ DocumentName: 'AWS-RunPowerShellScript' }));
    expect(error).toBeInstanceOf(InvalidDocument);
    expect(error.$metadata.httpStatusCode).toBe(400);
    expect(endpoint.commands()).toHaveLength(count);
  });

  it('refuses an instance it does not manage: InvalidInstanceId, naming it', async () => {
    const error = await rejection(send({ InstanceIds: [PRIMARY, OTHER] }));
    expect(error).toBeInstanceOf(InvalidInstanceId);
    expect(error.message).toBe(`Instances [[${OTHER}]] not in a valid state for account ${ACCOUNT}`);
  });

  it("refuses parameters AWS-RunShellScript does not take, and an executionTimeout outside 1..172800", async () => {
    expect(await rejection(ssm().send(new SendCommandCommand({ DocumentName: 'AWS-RunShellScript', InstanceIds: [PRIMARY], Parameters: { command: ['true'] } })))).toBeInstanceOf(InvalidParameters);
    expect(await rejection(send({ executionTimeout: '172801' }))).toBeInstanceOf(InvalidParameters);
    expect(await rejection(send({ executionTimeout: '0' }))).toBeInstanceOf(InvalidParameters);
  });

  it('answers InvalidCommandId for a command id it never issued', async () => {
    const error = await rejection(ssm().send(new ListCommandsCommand({ CommandId: '3f5a1f0e-6a9b-4c1d-8e2f-0a1b2c3d4e5f' })));
    expect(error).toBeInstanceOf(InvalidCommandId);
    expect(error.$metadata.httpStatusCode).toBe(400);
  });
});

describe('DescribeInstanceInformation', () => {
  it('lists the managed instance Online, and filters by instance id and tag', async () => {
    const all = await ssm().send(new DescribeInstanceInformationCommand({}));
    expect(all.InstanceInformationList).toEqual([
      expect.objectContaining({ InstanceId: PRIMARY, PingStatus: 'Online', PlatformType: 'Linux', ResourceType: 'EC2Instance', ComputerName: 'primary.lab.test', LastPingDateTime: expect.any(Date) }),
    ]);
    const ids = async (input: DescribeInstanceInformationCommandInput) =>
      (await ssm().send(new DescribeInstanceInformationCommand(input))).InstanceInformationList?.map((entry) => entry.InstanceId);
    expect(await ids({ Filters: [{ Key: 'InstanceIds', Values: [PRIMARY] }] })).toEqual([PRIMARY]);
    expect(await ids({ Filters: [{ Key: 'InstanceIds', Values: [OTHER] }] })).toEqual([]);
    expect(await ids({ Filters: [{ Key: 'tag:Role', Values: ['puppet-primary'] }] })).toEqual([PRIMARY]);
    expect(await ids({ Filters: [{ Key: 'tag:Role', Values: ['web'] }] })).toEqual([]);
    expect(await ids({ InstanceInformationFilterList: [{ key: 'InstanceIds', valueSet: [PRIMARY] }] })).toEqual([PRIMARY]);
  });
});

describe('SigV4 and credentials', () => {
  it('refuses a request signed with the wrong secret: InvalidSignatureException, and runs nothing', async () => {
    const count = endpoint.commands().length;
    const error = await rejection(ssm({ secretAccessKey: 'x'.repeat(40) }).send(new SendCommandCommand({ DocumentName: 'AWS-RunShellScript', InstanceIds: [PRIMARY], Parameters: { commands: ['true'] } })));
    expect(error.name).toBe('InvalidSignatureException');
    expect(error.$metadata.httpStatusCode).toBe(400);
    expect(endpoint.commands()).toHaveLength(count);
  });

  it('refuses a key it does not know, and the right key with another session token: UnrecognizedClientException', async () => {
    expect((await rejection(ssm({ accessKeyId: 'ASIAEXAMPLEUNKNOWN00' }).send(new DescribeInstanceInformationCommand({})))).name).toBe('UnrecognizedClientException');
    expect((await rejection(ssm({ sessionToken: 'another-session' }).send(new DescribeInstanceInformationCommand({})))).name).toBe('UnrecognizedClientException');
  });

  it('answers an unsigned request in the JSON 1.1 error shape: 400 MissingAuthenticationTokenException', async () => {
    const response = await new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
      const outgoing = request(
        `${endpoint.url}/`,
        { method: 'POST', ca: ca.certPem, headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'AmazonSSM.DescribeInstanceInformation' } },
        (incoming) => {
          let body = '';
          incoming.on('data', (chunk: Buffer) => (body += chunk.toString()));
          incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, type: String(incoming.headers['content-type']), body }));
        },
      );
      outgoing.on('error', reject);
      outgoing.end('{}');
    });
    expect(response.status).toBe(400);
    expect(response.type).toBe('application/x-amz-json-1.1');
    expect(JSON.parse(response.body)).toEqual({ __type: 'MissingAuthenticationTokenException', message: 'Request is missing Authentication Token' });
  });
});

describe('the lab fault switch', () => {
  it('sendCommand error: 500 InternalServerError and no command', async () => {
    endpoint.setFaults({ sendCommand: 'error' });
    const count = endpoint.commands().length;
    const error = await rejection(send({}));
    expect(error.name).toBe('InternalServerError');
    expect(error.$metadata.httpStatusCode).toBe(500);
    expect(endpoint.commands()).toHaveLength(count);
  });

  it('runs fail: the invocation reads Failed without running the script', async () => {
    endpoint.setFaults({ runs: 'fail' });
    const marker = join(dir, 'failed-run');
    const sent = await send({ commands: [`touch ${marker}`] });
    expect((await follow(sent.CommandId!)).last).toMatchObject({ Status: 'Failed', ErrorCount: 1 });
    expect(existsSync(marker)).toBe(false);
  });

  it('runs hang: InProgress without running until set back to real, then the script runs', async () => {
    endpoint.setFaults({ runs: 'hang' });
    const marker = join(dir, 'hung-run');
    const sent = await send({ commands: [`touch ${marker}`] });
    await sleep(600);
    expect((await listed(sent.CommandId!)).Status).toBe('InProgress');
    expect(existsSync(marker)).toBe(false);
    expect(endpoint.setFaults({ runs: 'real' })).toEqual({ sendCommand: 'normal', runs: 'real' });
    expect((await follow(sent.CommandId!)).last.Status).toBe('Success');
    expect(existsSync(marker)).toBe(true);
  });
});
