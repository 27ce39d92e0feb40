import { ListCommandsCommand, SendCommandCommand, type CommandStatus, type SSMClient, type SendCommandCommandInput } from '@aws-sdk/client-ssm';
import type { AwsCall } from '../../../lib/aws-calls';
import type { PrimaryInstances } from '../../../lib/primary-instances';
import { AwsCallError } from '../../../lib/errors';
import { errorName, toAwsCallError } from '../aws/call';
import type { Log } from '../execute';
import type { PrimaryRunPort, PrimaryRunState } from '../ports';

/** The primary's EC2 instance(s): by id, or every managed instance carrying a tag. */
/** Which instances the command runs on: the primary's, by id or by tag. */
export type SsmTarget = PrimaryInstances;

export interface SsmPrimaryRunOptions {
  client: SSMClient;
  target: SsmTarget;
  /** puppet on the primary, e.g. /opt/puppetlabs/bin/puppet. */
  puppetBin: string;
  /** How long the agent run may take before SSM stops it: the controller's own run timeout. */
  executionTimeoutSeconds: number;
  /** Told when a finished command ran on no instance at all. */
  logger?: Pick<Log, 'warn'>;
}

/** The AWS-owned document that runs a shell script; the controller's IAM allows this one only. */
export const RUN_SHELL_SCRIPT = 'AWS-RunShellScript';

/** SendCommand is authorized on the document and on each instance it targets; ListCommands has no resource-level permissions. */
export const SSM_CALLS: readonly AwsCall[] = [
  {
    operation: 'SendCommand',
    sender: 'sdk',
    authorizes: [
      { action: 'ssm:SendCommand', resource: 'runShellScriptDocument' },
      { action: 'ssm:SendCommand', resource: 'primaryInstance' },
    ],
  },
  { operation: 'ListCommands', sender: 'sdk', authorizes: [{ action: 'ssm:ListCommands', resource: '*' }] },
];
/** SendCommand's Comment is at most 100 characters. */
const COMMENT_MAX = 100;
/** SSM command ids are UUIDs (fixed length 36); any other id was never one of its commands. */
const COMMAND_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Every status ListCommands reports for a command. Cancelling is on its way to Cancelled. Delayed
 * (an invocation waiting for its instance) is not a command status, and any status AWS adds later
 * counts as running too: the planner's run timeout bounds both.
 */
const RUN_STATE: Readonly<Record<CommandStatus, PrimaryRunState>> = {
  Pending: 'running',
  InProgress: 'running',
  Success: 'finished',
  Failed: 'failed',
  TimedOut: 'failed',
  Cancelled: 'failed',
  Cancelling: 'failed',
};

/**
 * A primary usually runs its own agent daemon too: a run already in progress makes a second one
 * exit 1 at once, so the command waits for it (retrying every 10 s, for up to 15 minutes, well
 * inside the execution timeout) instead of failing and costing one of the planner's two attempts.
 */
const WAIT_FOR_LOCK = '--waitforlock 10 --maxwaitforlock 900';

/**
 * The script AWS-RunShellScript runs on the primary: one agent run against the primary itself,
 * never from a cached catalog. --detailed-exitcodes answers 0 (nothing to change) or 2 (changes
 * applied) for a good run; 1, 4 and 6 mean the run or some resources failed, and so does anything
 * else (puppet missing, killed): the command then fails, which is what the planner follows.
 */
export function agentRunScript(puppetBin: string): string[] {
  return [
    `${shellQuote(puppetBin)} agent --onetime --no-daemonize --no-usecacheonfailure --detailed-exitcodes ${WAIT_FOR_LOCK}`,
    'status=$?',
    'if [ "$status" -eq 0 ] || [ "$status" -eq 2 ]; then exit 0; fi',
    'echo "puppet agent run failed (exit code $status)" >&2',
    'exit "$status"',
  ];
}

/**
 * SSM Run Command runs Puppet on the primary's instance(s) (open-source Puppet and OpenVox, which
 * have no orchestrator; PE may use it too). The run id is the command id; its status is read with
 * ListCommands, the one call that needs no more than the id.
 */
export class SsmPrimaryRun implements PrimaryRunPort {
  constructor(private readonly options: SsmPrimaryRunOptions) {}

  async start(description: string): Promise<string> {
    const { client, target, puppetBin, executionTimeoutSeconds } = this.options;
    const input: SendCommandCommandInput = {
      DocumentName: RUN_SHELL_SCRIPT,
      ...('instanceIds' in target ? { InstanceIds: [...target.instanceIds] } : { Targets: [{ Key: `tag:${target.tag.key}`, Values: [target.tag.value] }] }),
      Parameters: { commands: agentRunScript(puppetBin), executionTimeout: [String(executionTimeoutSeconds)] },
      Comment: description.slice(0, COMMENT_MAX),
    };
    let commandId: string | undefined;
    try {
      commandId = (await client.send(new SendCommandCommand(input))).Command?.CommandId;
    } catch (error) {
      throw sendCommandError(error, target);
    }
    if (!commandId) throw new AwsCallError('SendCommand answered no command id', { hint: 'the run may have started; the next pass starts another' });
    return commandId;
  }

  async state(runId: string): Promise<PrimaryRunState | undefined> {
    if (!COMMAND_ID.test(runId)) return undefined;
    let command;
    try {
      command = (await this.options.client.send(new ListCommandsCommand({ CommandId: runId }))).Commands?.[0];
    } catch (error) {
      if (errorName(error) === 'InvalidCommandId') return undefined;
      throw toAwsCallError('ListCommands', error);
    }
    // SSM keeps a command's history for 30 days; after that it is as unknown as a wrong id.
    if (!command || command.CommandId !== runId) return undefined;
    const state = (command.Status && RUN_STATE[command.Status]) ?? 'running';
    if (state !== 'running' && command.TargetCount === 0) {
      // A tag on no managed instance gives a command that "succeeds" without running anything.
      this.options.logger?.warn("The primary's SSM command ran on no instance: its target matched nothing", {
        runId,
        target: describeTarget(this.options.target),
        hint: 'tag the primary (or fix primaryInstanceIds / primaryInstanceTag) and check it is a managed instance that is Online in Systems Manager',
      });
      return 'failed';
    }
    return state;
  }
}

function describeTarget(target: SsmTarget): string {
  return 'instanceIds' in target ? `instance ids ${target.instanceIds.join(', ')}` : `tag ${target.tag.key}=${target.tag.value}`;
}

/** What an operator can do about SendCommand's refusals; anything else is the generic AWS error. */
function sendCommandError(error: unknown, target: SsmTarget): AwsCallError {
  const hints: Readonly<Record<string, string>> = {
    InvalidInstanceId: `the primary (${describeTarget(target)}) is not a managed instance of Systems Manager, or its SSM agent is offline: check the agent runs, the instance profile has AmazonSSMManagedInstanceCore and the primary reaches the SSM endpoints ('npx compile-masters doctor' checks it)`,
    AccessDeniedException: `the controller's role may run ${RUN_SHELL_SCRIPT} only on the primary's instances (${describeTarget(target)}): check primaryInstanceIds / primaryInstanceTag name the primary, and redeploy`,
    InvalidDocument: `${RUN_SHELL_SCRIPT} is AWS's own document; check the controller's region offers Systems Manager Run Command`,
    UnsupportedPlatformType: `${RUN_SHELL_SCRIPT} runs on Linux only: the primary's instance is not a Linux managed instance`,
  };
  const hint = hints[errorName(error) ?? ''];
  if (!hint) return toAwsCallError('SendCommand', error);
  const message = error instanceof Error ? error.message : String(error);
  return new AwsCallError(`SendCommand failed: ${errorName(error)}: ${message}`, { cause: error, hint });
}

/** Single-quoted for sh; the configured path is checked to be a plain absolute path anyway. */
function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}
