import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { issueServerCertificate, type AwsLabCa } from './ca';
import { verifySigV4, type SigningKey } from './sigv4';

/**
 * SSM Run Command, as far as the controller's SSM adapter and the CLI's doctor use it (contract 3):
 * SendCommand with the AWS-RunShellScript document, ListCommands by command id, and
 * DescribeInstanceInformation, over the AWS JSON 1.1 protocol @aws-sdk/client-ssm 3.1169 speaks:
 * POST / with `X-Amz-Target: AmazonSSM.<Operation>`, `Content-Type: application/x-amz-json-1.1`,
 * SigV4 for service `ssm`, timestamps as epoch seconds, errors as `{"__type", "message"}` (the SDK
 * takes the error's name from `__type` and its message from `message` or `Message`).
 *
 * It manages the instances it is given, each "running the SSM agent" on this machine: a command
 * delivered to one really runs with bash here, as root, with a clean environment, killed when
 * its executionTimeout passes. Exit status 0 is Success, anything else Failed, a timeout TimedOut
 * (StatusDetails "Execution Timed Out"). A command whose targets match no managed instance ends
 * Success with StatusDetails "No Instances In Tag" and TargetCount 0, as SSM reports it.
 *
 * Lab-only: `setFaults` makes SendCommand answer 500 (`sendCommand: 'error'`) or invocations fail
 * without running (`runs: 'fail'`) or hang (`runs: 'hang'`: in progress until set back to 'real',
 * then they run; the execution timeout still applies, as to a hung run on an instance).
 */

export interface ManagedInstance {
  instanceId: string;
  tags: Readonly<Record<string, string>>;
  computerName: string;
  ipAddress: string;
}

/** What the endpoint knows of an access key: its secret, and for temporary keys the session. */
export interface SsmKey extends SigningKey {
  token?: string;
  expiration?: Date;
  revoked?: boolean;
}

export interface SsmFaults {
  sendCommand: 'normal' | 'error';
  runs: 'real' | 'fail' | 'hang';
}

export type CommandStatus = 'Pending' | 'InProgress' | 'Success' | 'Failed' | 'TimedOut';
type InvocationStatus = 'Pending' | 'InProgress' | 'Success' | 'Failed' | 'TimedOut';

export interface InvocationRecord {
  instanceId: string;
  status: InvocationStatus;
  /** The script's exit status; null while it runs, when it was killed, or when it never ran. */
  exitCode: number | null;
  /** stdout then stderr, the last OUTPUT_LIMIT characters of each (SSM keeps 24,000 of stdout). */
  stdout: string;
  stderr: string;
}

export interface CommandRecord {
  commandId: string;
  comment: string;
  commands: readonly string[];
  parameters: Readonly<Record<string, readonly string[]>>;
  instanceIds: readonly string[];
  targets: readonly { Key: string; Values: readonly string[] }[];
  requestedAt: Date;
  timeoutSeconds: number;
  executionTimeoutSeconds: number;
  /** False until the command was delivered to the instances (tag targets are resolved then). */
  delivered: boolean;
  invocations: InvocationRecord[];
}

export interface SsmRefusal {
  status: number;
  code: string;
  message: string;
}

export interface SsmEndpointOptions {
  /** Where to listen; tests and the lab use 127.0.0.1 and port 0. */
  host: string;
  port: number;
  region: string;
  accountId: string;
  /** The lab's AWS CA: the endpoint's certificate names the region's SSM host and localhost. */
  ca: AwsLabCa;
  credentials: { lookup(accessKeyId: string): SsmKey | undefined };
  instances: readonly ManagedInstance[];
  /** Between SendCommand and the agents picking the command up; SSM takes about a second. */
  deliveryDelayMs?: number;
  /** Each invocation's start and end, and refusals, for the lab's logs. */
  log?: (line: string) => void;
  onRefused?(refusal: SsmRefusal): void;
  clock?: () => Date;
}

export interface SsmEndpoint {
  /** https://localhost:<port>: the `endpoint` an SSMClient is given. */
  url: string;
  host: string;
  port: number;
  /** Every command sent, oldest first (live records: their invocations change as they run). */
  commands(): readonly CommandRecord[];
  faults(): SsmFaults;
  setFaults(faults: Partial<SsmFaults>): SsmFaults;
  /** Kills what still runs and stops listening. */
  close(): Promise<void>;
}

export const RUN_SHELL_SCRIPT = 'AWS-RunShellScript';
const MAX_SKEW_MS = 5 * 60_000;
const MAX_REQUEST_BYTES = 1024 * 1024;
const JSON_1_1 = 'application/x-amz-json-1.1';
const OUTPUT_LIMIT = 24_000;
/** AWS-RunShellScript's executionTimeout: 1 to 172800 s, default 3600 (its allowedPattern). */
const EXECUTION_TIMEOUT = { min: 1, max: 172_800, default: 3600 };
/** SendCommand's TimeoutSeconds (delivery): 30 s to 30 days, default 3600. */
const DELIVERY_TIMEOUT = { min: 30, max: 2_592_000, default: 3600 };
const SHELL_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** After SIGTERM at the timeout, what a script gets to exit before SIGKILL. */
const KILL_GRACE_MS = 5_000;

/** The names the SDK resolves SSM to in a region, and localhost for a client given the endpoint. */
export function ssmHostNames(region: string): string[] {
  return [`ssm.${region}.amazonaws.com`, `ssm-fips.${region}.amazonaws.com`, `ssm.${region}.api.aws`, 'localhost'];
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const invalid = (code: string, message: string) => new ApiError(400, code, message);
const validation = (message: string) => invalid('ValidationException', `1 validation error detected: ${message}`);

export async function startSsmEndpoint(options: SsmEndpointOptions): Promise<SsmEndpoint> {
  const tls = await issueServerCertificate(options.ca, ssmHostNames(options.region));
  const clock = options.clock ?? (() => new Date());
  const log = options.log ?? (() => undefined);
  const deliveryDelayMs = options.deliveryDelayMs ?? 500;
  const instances = new Map(options.instances.map((instance) => [instance.instanceId, instance]));
  const commands = new Map<string, CommandRecord>();
  const running = new Set<ChildProcess>();
  const timers = new Set<NodeJS.Timeout>();
  let faults: SsmFaults = { sendCommand: 'normal', runs: 'real' };
  /** Invocations waiting out a 'hang' fault, woken when the fault changes. */
  let wakeHung: Array<() => void> = [];
  let closed = false;

  const later = (ms: number, action: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      action();
    }, ms);
    timers.add(timer);
    return timer;
  };

  const runInvocation = async (command: CommandRecord, invocation: InvocationRecord): Promise<void> => {
    const deadline = Date.now() + command.executionTimeoutSeconds * 1000;
    invocation.status = 'InProgress';
    log(`[ssm ${command.commandId}] ${invocation.instanceId}: in progress`);
    while (faults.runs === 'hang' && !closed) {
      const left = deadline - Date.now();
      if (left <= 0) return finish(command, invocation, 'TimedOut', null);
      await new Promise<void>((resolve) => {
        wakeHung.push(resolve);
        later(left, resolve);
      });
    }
    if (closed) return;
    if (faults.runs === 'fail') {
      invocation.stderr = 'lab fault: the invocation failed without running\n';
      return finish(command, invocation, 'Failed', 1);
    }
    // The agent runs the commands as one script, as root, in a fresh process group (so a timeout
    // kills what the script started too), with none of this process's environment.
    const child = spawn('bash', ['-c', command.commands.join('\n')], {
      cwd: command.parameters.workingDirectory?.[0] || '/',
      env: { PATH: SHELL_PATH, HOME: process.env.HOME ?? '/root', LANG: 'C.UTF-8' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    running.add(child);
    const keep = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      invocation[stream] = (invocation[stream] + chunk.toString()).slice(-OUTPUT_LIMIT);
    };
    child.stdout?.on('data', keep('stdout'));
    child.stderr?.on('data', keep('stderr'));
    let timedOut = false;
    const timeout = later(Math.max(0, deadline - Date.now()), () => {
      timedOut = true;
      killGroup(child, 'SIGTERM');
      later(KILL_GRACE_MS, () => killGroup(child, 'SIGKILL'));
    });
    const code = await new Promise<number | null>((resolve) => {
      child.on('error', (error) => {
        invocation.stderr += `${error.message}\n`;
        resolve(null);
      });
      child.on('close', (exitCode) => resolve(exitCode));
    });
    clearTimeout(timeout);
    timers.delete(timeout);
    running.delete(child);
    if (closed) return;
    if (timedOut) return finish(command, invocation, 'TimedOut', null);
    finish(command, invocation, code === 0 ? 'Success' : 'Failed', code);
  };

  const finish = (command: CommandRecord, invocation: InvocationRecord, status: InvocationStatus, exitCode: number | null) => {
    invocation.status = status;
    invocation.exitCode = exitCode;
    log(`[ssm ${command.commandId}] ${invocation.instanceId}: ${status}${exitCode === null ? '' : ` (exit ${exitCode})`}`);
  };

  const deliver = (command: CommandRecord) => {
    if (closed) return;
    command.delivered = true;
    // Tags are resolved at delivery; instance ids were checked at SendCommand.
    if (command.targets.length > 0) command.invocations = matchTargets([...instances.values()], command.targets).map(pendingInvocation);
    if (command.invocations.length === 0) log(`[ssm ${command.commandId}] no managed instance matches its targets`);
    for (const invocation of command.invocations) {
      runInvocation(command, invocation).catch((error: unknown) => {
        invocation.stderr += `${String(error)}\n`;
        finish(command, invocation, 'Failed', null);
      });
    }
  };

  const sendCommand = (input: Record<string, unknown>): unknown => {
    if (faults.sendCommand === 'error') throw new ApiError(500, 'InternalServerError', 'lab fault: An error occurred on the server side.');
    const parsed = parseSendCommand(input, instances, options.accountId);
    const command: CommandRecord = { ...parsed, commandId: randomUUID(), requestedAt: clock(), delivered: false, invocations: parsed.instanceIds.map(pendingInvocation) };
    commands.set(command.commandId, command);
    later(deliveryDelayMs, () => deliver(command));
    return { Command: commandView(command, options.region) };
  };

  const listCommands = (input: Record<string, unknown>): unknown => {
    for (const name of ['Filters', 'NextToken', 'Details']) {
      if (input[name] !== undefined) throw validation(`the lab's ListCommands does not implement ${name}`);
    }
    const maxResults = optionalInteger(input, 'MaxResults', { min: 1, max: 50 }) ?? 50;
    const instanceId = optionalString(input, 'InstanceId');
    const commandId = optionalString(input, 'CommandId');
    let selected = [...commands.values()].reverse();
    if (commandId !== undefined) {
      const command = commands.get(commandId);
      if (!command) throw invalid('InvalidCommandId', `Command ID ${commandId} is not valid.`);
      selected = [command];
    }
    if (instanceId !== undefined) selected = selected.filter((command) => command.invocations.some((invocation) => invocation.instanceId === instanceId));
    return { Commands: selected.slice(0, maxResults).map((command) => commandView(command, options.region)) };
  };

  const describeInstanceInformation = (input: Record<string, unknown>): unknown => {
    if (input.NextToken !== undefined) throw invalid('InvalidNextToken', 'The specified token is not valid.');
    const maxResults = optionalInteger(input, 'MaxResults', { min: 5, max: 50 }) ?? 50;
    const predicates = [...instanceFilters(input.Filters, 'Filters'), ...instanceFilters(input.InstanceInformationFilterList, 'InstanceInformationFilterList')];
    const now = epochSeconds(clock());
    const list = [...instances.values()]
      .filter((instance) => predicates.every((matches) => matches(instance)))
      .slice(0, maxResults)
      .map((instance) => ({
        InstanceId: instance.instanceId,
        PingStatus: 'Online',
        LastPingDateTime: now,
        AgentVersion: '3.3.1142.0',
        IsLatestVersion: false,
        PlatformType: 'Linux',
        PlatformName: 'Debian GNU/Linux',
        PlatformVersion: '12',
        ResourceType: 'EC2Instance',
        IPAddress: instance.ipAddress,
        ComputerName: instance.computerName,
        SourceId: instance.instanceId,
        SourceType: 'AWS::EC2::Instance',
      }));
    return { InstanceInformationList: list };
  };

  const operations: Record<string, (input: Record<string, unknown>) => unknown> = {
    'AmazonSSM.SendCommand': sendCommand,
    'AmazonSSM.ListCommands': listCommands,
    'AmazonSSM.DescribeInstanceInformation': describeInstanceInformation,
  };

  const refuse = (response: ServerResponse, error: ApiError) => {
    options.onRefused?.({ status: error.status, code: error.code, message: error.message });
    log(`[ssm] refused: ${error.code}: ${error.message}`);
    answer(response, error.status, { __type: error.code, message: error.message });
  };

  const handle = (request: IncomingMessage, response: ServerResponse, body: Buffer) => {
    const now = clock();
    const verdict = verifySigV4(
      { method: request.method ?? 'GET', url: request.url ?? '/', rawHeaders: request.rawHeaders, body },
      { region: options.region, service: 'ssm', now, maxSkewMs: MAX_SKEW_MS },
      (accessKeyId) => options.credentials.lookup(accessKeyId),
    );
    // AWS JSON services answer authentication failures with 400 (DynamoDB's error table lists
    // each of these as 400), unlike the query protocol's 403.
    if (!verdict.ok) {
      switch (verdict.reason) {
        case 'missing':
          return refuse(response, invalid('MissingAuthenticationTokenException', verdict.message));
        case 'unknown-key':
          return refuse(response, invalid('UnrecognizedClientException', verdict.message));
        case 'malformed':
        case 'scope':
          return refuse(response, invalid('IncompleteSignatureException', verdict.message));
        case 'mismatch':
        case 'skewed':
          return refuse(response, invalid('InvalidSignatureException', verdict.message));
      }
    }
    const { key } = verdict;
    if (key.token !== undefined && request.headers['x-amz-security-token'] !== key.token) {
      return refuse(response, invalid('UnrecognizedClientException', 'The security token included in the request is invalid.'));
    }
    if (key.revoked || (key.expiration !== undefined && key.expiration <= now)) {
      return refuse(response, invalid('ExpiredTokenException', 'The security token included in the request is expired'));
    }
    const target = String(request.headers['x-amz-target']);
    const operation = operations[target];
    if (request.method !== 'POST' || request.headers['content-type'] !== JSON_1_1 || !operation) {
      return refuse(response, invalid('UnknownOperationException', `This endpoint serves SendCommand, ListCommands and DescribeInstanceInformation over ${JSON_1_1} (got ${request.method} ${target})`));
    }
    let input: unknown;
    try {
      input = JSON.parse(body.toString('utf8'));
    } catch {
      return refuse(response, invalid('SerializationException', 'The request body is not JSON'));
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) return refuse(response, invalid('SerializationException', 'The request body is not a JSON object'));
    try {
      answer(response, 200, operation(input as Record<string, unknown>));
    } catch (error) {
      if (error instanceof ApiError) return refuse(response, error);
      throw error;
    }
  };

  const server: Server = createServer({ cert: tls.certPem, key: tls.keyPem }, (request, response) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) request.destroy();
      else chunks.push(chunk);
    });
    request.on('end', () => {
      try {
        handle(request, response, Buffer.concat(chunks));
      } catch (error) {
        if (!response.headersSent) answer(response, 500, { __type: 'InternalServerError', message: String(error) });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    url: `https://localhost:${address.port}`,
    host: address.address,
    port: address.port,
    commands: () => [...commands.values()],
    faults: () => ({ ...faults }),
    setFaults(change) {
      faults = { ...faults, ...change };
      const waiting = wakeHung;
      wakeHung = [];
      for (const wake of waiting) wake();
      return { ...faults };
    },
    close: () => {
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const wake of wakeHung) wake();
      for (const child of running) killGroup(child, 'SIGKILL');
      return new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}

type Parsed = Pick<CommandRecord, 'comment' | 'commands' | 'parameters' | 'instanceIds' | 'targets' | 'timeoutSeconds' | 'executionTimeoutSeconds'>;

/** SendCommand's input, checked in the order SSM reports problems: shape, document, targets, parameters. */
function parseSendCommand(input: Record<string, unknown>, instances: ReadonlyMap<string, ManagedInstance>, accountId: string): Parsed {
  const documentName = optionalString(input, 'DocumentName');
  if (documentName === undefined) throw validation("Value null at 'documentName' failed to satisfy constraint: Member must not be null");
  const comment = optionalString(input, 'Comment') ?? '';
  if (comment.length > 100) throw validation("Value at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100");
  const timeoutSeconds = optionalInteger(input, 'TimeoutSeconds', DELIVERY_TIMEOUT) ?? DELIVERY_TIMEOUT.default;
  for (const name of ['DocumentHash', 'OutputS3BucketName', 'ServiceRoleArn', 'NotificationConfig', 'CloudWatchOutputConfig', 'AlarmConfiguration']) {
    if (input[name] !== undefined) throw validation(`the lab's SendCommand does not implement ${name}`);
  }
  if (documentName !== RUN_SHELL_SCRIPT) throw invalid('InvalidDocument', `Document with name ${documentName} does not exist (the lab has only ${RUN_SHELL_SCRIPT}).`);
  const version = optionalString(input, 'DocumentVersion');
  if (version !== undefined && !['$DEFAULT', '$LATEST', '1'].includes(version)) throw invalid('InvalidDocumentVersion', `Document version ${version} does not exist.`);

  const instanceIds = optionalStringArray(input, 'InstanceIds');
  const targets = parseTargets(input.Targets);
  if ((instanceIds === undefined) === (targets === undefined)) throw validation('exactly one of InstanceIds or Targets must be given');
  if (instanceIds !== undefined) {
    if (instanceIds.length === 0 || instanceIds.length > 50) throw validation("Value at 'instanceIds' failed to satisfy constraint: Member must have length between 1 and 50");
    const unknown = instanceIds.filter((id) => !instances.has(id));
    if (unknown.length > 0) throw invalid('InvalidInstanceId', `Instances [[${unknown.join(', ')}]] not in a valid state for account ${accountId}`);
  }

  const parameters = input.Parameters;
  if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters)) throw invalid('InvalidParameters', 'Parameter "commands" is required.');
  const values: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(parameters)) {
    if (!['commands', 'workingDirectory', 'executionTimeout'].includes(name)) throw invalid('InvalidParameters', `Parameter "${name}" is not defined in ${RUN_SHELL_SCRIPT}.`);
    if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) throw invalid('InvalidParameters', `Parameter "${name}" must be a list of strings.`);
    values[name] = value;
  }
  const commands = values.commands;
  if (!commands || commands.length === 0) throw invalid('InvalidParameters', 'Parameter "commands" is required.');
  const timeoutText = values.executionTimeout;
  let executionTimeoutSeconds = EXECUTION_TIMEOUT.default;
  if (timeoutText !== undefined) {
    const value = timeoutText.length === 1 && /^[1-9]\d*$/.test(timeoutText[0] ?? '') ? Number(timeoutText[0]) : NaN;
    if (!(value >= EXECUTION_TIMEOUT.min && value <= EXECUTION_TIMEOUT.max)) {
      throw invalid('InvalidParameters', `Parameter "executionTimeout" "${timeoutText.join(',')}" does not match the allowed pattern: 1 to ${EXECUTION_TIMEOUT.max} seconds.`);
    }
    executionTimeoutSeconds = value;
  }
  return { comment, commands, parameters: values, instanceIds: instanceIds ?? [], targets: targets ?? [], timeoutSeconds, executionTimeoutSeconds };
}

function parseTargets(raw: unknown): { Key: string; Values: string[] }[] | undefined {
  if (raw === undefined) return undefined;
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > 5) throw validation("Value at 'targets' failed to satisfy constraint: Member must have length between 1 and 5");
  return raw.map((target: unknown) => {
    const { Key, Values } = (target ?? {}) as Record<string, unknown>;
    if (typeof Key !== 'string' || !/^(InstanceIds|tag:.+|tag-key)$/.test(Key)) throw validation(`Target key ${String(Key)} is not one the lab implements (InstanceIds, tag:<key>, tag-key)`);
    if (!Array.isArray(Values) || Values.length === 0 || !Values.every((value) => typeof value === 'string')) throw validation(`Target ${Key} needs at least one value`);
    return { Key, Values: Values as string[] };
  });
}

/** The instances every target matches (SSM ANDs a command's targets). */
function matchTargets(instances: readonly ManagedInstance[], targets: CommandRecord['targets']): string[] {
  return instances
    .filter((instance) =>
      targets.every(({ Key, Values }) => {
        if (Key === 'InstanceIds') return Values.includes(instance.instanceId);
        if (Key === 'tag-key') return Values.some((key) => key in instance.tags);
        const value = instance.tags[Key.slice('tag:'.length)];
        return value !== undefined && Values.includes(value);
      }),
    )
    .map((instance) => instance.instanceId);
}

type InstancePredicate = (instance: ManagedInstance) => boolean;

/** DescribeInstanceInformation's Filters ({Key, Values}) or InstanceInformationFilterList ({key, valueSet}). */
function instanceFilters(raw: unknown, field: 'Filters' | 'InstanceInformationFilterList'): InstancePredicate[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw validation(`${field} must be a list`);
  const [keyName, valuesName] = field === 'Filters' ? ['Key', 'Values'] : ['key', 'valueSet'];
  return raw.map((filter: unknown): InstancePredicate => {
    const entry = (filter ?? {}) as Record<string, unknown>;
    const key = entry[keyName];
    const values = entry[valuesName];
    if (typeof key !== 'string' || !Array.isArray(values) || values.length === 0 || !values.every((value) => typeof value === 'string')) {
      throw invalid('InvalidInstanceInformationFilterValue', `${field} entries need a ${keyName} and at least one of ${valuesName}`);
    }
    const wanted = values as string[];
    if (key === 'InstanceIds') return (instance) => wanted.includes(instance.instanceId);
    if (key === 'PingStatus') return () => wanted.includes('Online');
    if (key === 'PlatformTypes') return () => wanted.includes('Linux');
    if (key === 'ResourceType') return () => wanted.includes('EC2Instance');
    if (field === 'Filters' && key === 'tag-key') return (instance) => wanted.some((tag) => tag in instance.tags);
    if (field === 'Filters' && key.startsWith('tag:')) {
      return (instance) => {
        const value = instance.tags[key.slice('tag:'.length)];
        return value !== undefined && wanted.includes(value);
      };
    }
    throw invalid('InvalidFilterKey', `The filter key ${key} is not valid (or not one the lab implements).`);
  });
}

function commandStatus(command: CommandRecord): { status: CommandStatus; details: string } {
  if (!command.delivered) return { status: 'Pending', details: 'Pending' };
  const invocations = command.invocations;
  if (invocations.length === 0) return { status: 'Success', details: 'No Instances In Tag' };
  if (invocations.some((invocation) => invocation.status === 'Pending' || invocation.status === 'InProgress')) {
    return invocations.some((invocation) => invocation.status !== 'Pending') ? { status: 'InProgress', details: 'In Progress' } : { status: 'Pending', details: 'Pending' };
  }
  // MaxErrors is 0: one failed invocation fails the command.
  if (invocations.some((invocation) => invocation.status === 'Failed')) return { status: 'Failed', details: 'Failed' };
  if (invocations.some((invocation) => invocation.status === 'TimedOut')) return { status: 'TimedOut', details: 'Execution Timed Out' };
  return { status: 'Success', details: 'Success' };
}

/** The Command structure SendCommand and ListCommands answer with. */
function commandView(command: CommandRecord, region: string): unknown {
  const { status, details } = commandStatus(command);
  const terminal = (invocation: InvocationRecord) => invocation.status !== 'Pending' && invocation.status !== 'InProgress';
  return {
    CommandId: command.commandId,
    DocumentName: RUN_SHELL_SCRIPT,
    DocumentVersion: '$DEFAULT',
    Comment: command.comment,
    ExpiresAfter: epochSeconds(new Date(command.requestedAt.getTime() + command.timeoutSeconds * 1000)),
    Parameters: command.parameters,
    InstanceIds: command.instanceIds,
    Targets: command.targets,
    RequestedDateTime: epochSeconds(command.requestedAt),
    Status: status,
    StatusDetails: details,
    OutputS3Region: region,
    OutputS3BucketName: '',
    OutputS3KeyPrefix: '',
    MaxConcurrency: '50',
    MaxErrors: '0',
    TargetCount: command.invocations.length,
    CompletedCount: command.invocations.filter(terminal).length,
    ErrorCount: command.invocations.filter((invocation) => invocation.status === 'Failed' || invocation.status === 'TimedOut').length,
    DeliveryTimedOutCount: 0,
    ServiceRole: '',
    NotificationConfig: { NotificationArn: '', NotificationEvents: [], NotificationType: '' },
    CloudWatchOutputConfig: { CloudWatchLogGroupName: '', CloudWatchOutputEnabled: false },
    TimeoutSeconds: command.timeoutSeconds,
  };
}

function optionalString(input: Record<string, unknown>, name: string): string | undefined {
  const value = input[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw validation(`Value at '${name}' must be a string`);
  return value;
}

function optionalStringArray(input: Record<string, unknown>, name: string): string[] | undefined {
  const value = input[name];
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) throw validation(`Value at '${name}' must be a list of strings`);
  return value;
}

function optionalInteger(input: Record<string, unknown>, name: string, range: { min: number; max: number }): number | undefined {
  const value = input[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < range.min || value > range.max) {
    throw validation(`Value '${String(value)}' at '${name}' failed to satisfy constraint: Member must be between ${range.min} and ${range.max}`);
  }
  return value;
}

function pendingInvocation(instanceId: string): InvocationRecord {
  return { instanceId, status: 'Pending', exitCode: null, stdout: '', stderr: '' };
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    // The group is gone already.
  }
}

function epochSeconds(date: Date): number {
  return date.getTime() / 1000;
}

function answer(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': JSON_1_1, 'content-length': Buffer.byteLength(text), 'x-amzn-requestid': randomUUID() });
  response.end(text);
}
