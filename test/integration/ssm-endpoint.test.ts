import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListCommandsCommand, SendCommandCommand, SSMClient, type Command } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLabSsm, type LabSsm } from '../../lab/aws/lab-ssm';
import { layout } from '../../lab/layout';
import { loadLab } from '../../lab/running-lab';
import { agentRunScript } from '../../lambdas/controller/primary-run/ssm';
import { REGION } from '../../lab/scenario/world';

/**
 * SSMClient → the SSM endpoint double → the lab primary's puppet wrapper → a real `puppet agent`
 * run of primary.lab.test against the lab's Puppet Server, with the script the controller's SSM
 * adapter sends (its puppetBin is the wrapper).
 */

let labSsm: LabSsm;
let client: SSMClient;
const lines: string[] = [];

beforeAll(async () => {
  labSsm = await startLabSsm({ lab: loadLab(), region: REGION, accountId: '123456789012', log: (line) => void lines.push(line) });
  client = new SSMClient(labSsm.clientConfig());
});

afterAll(async () => {
  client?.destroy();
  await labSsm?.close();
});

/** The adapter's own script; `extra` options go on its puppet command line. */
function agentRun(puppetBin: string, extra = ''): string[] {
  const [run, ...rest] = agentRunScript(puppetBin);
  return [`${run}${extra}`, ...rest];
}

async function runToEnd(commands: string[], target: 'id' | 'tag'): Promise<Command> {
  const { Command: sent } = await client.send(
    new SendCommandCommand({
      DocumentName: 'AWS-RunShellScript',
      ...(target === 'id' ? { InstanceIds: [labSsm.primary.instanceId] } : { Targets: [{ Key: `tag:${labSsm.primary.tag.key}`, Values: [labSsm.primary.tag.value] }] }),
      Parameters: { commands, executionTimeout: ['600'] },
      Comment: 'ssm-endpoint integration test',
    }),
  );
  const started = Date.now();
  for (;;) {
    const [command] = (await client.send(new ListCommandsCommand({ CommandId: sent!.CommandId! }))).Commands ?? [];
    if (['Success', 'Failed', 'TimedOut'].includes(command?.Status ?? '')) return command!;
    if (Date.now() - started > 600_000) throw new Error(`command ${sent?.CommandId} still ${command?.Status}`);
    await sleep(1_000);
  }
}

function invocationOf(command: Command) {
  return labSsm.double.commands().find((record) => record.commandId === command.CommandId)?.invocations[0];
}

describe('the SSM double runs Puppet on the lab primary', () => {
  it('a real agent run of primary.lab.test, by instance id, reads Success', async () => {
    const summary = join(layout(loadLab().dir).primaryAgent.vardir, 'public', 'last_run_summary.yaml');
    const before = Date.now();
    const command = await runToEnd(agentRun(labSsm.puppetBin), 'id');
    const invocation = invocationOf(command);
    expect(command, `${invocation?.stdout}\n${invocation?.stderr}\n${lines.join('\n')}`).toMatchObject({ Status: 'Success', TargetCount: 1, CompletedCount: 1, ErrorCount: 0 });
    // Without --test the agent logs to syslog, so the command's output says nothing; the run was
    // the primary agent's own all the same: it wrote that agent's run summary.
    const text = readFileSync(summary, 'utf8');
    expect(Number(/^\s+last_run: (\d+)$/m.exec(text)?.[1]) * 1000).toBeGreaterThanOrEqual(before - 1000);
    // It applied a catalog (the primary's classes manage resources), not an empty failed run's.
    expect(Number(/^resources:\n(?:\s+\w+: \d+\n)*?\s+total: (\d+)$/m.exec(text)?.[1])).toBeGreaterThan(0);
  });

  it('a run that cannot reach its Puppet Server (a port nothing listens on), by tag, reads Failed', async () => {
    const command = await runToEnd(agentRun(labSsm.puppetBin, ' --serverport 9'), 'tag');
    const invocation = invocationOf(command);
    expect(command, `${invocation?.stdout}\n${invocation?.stderr}`).toMatchObject({ Status: 'Failed', TargetCount: 1, CompletedCount: 1, ErrorCount: 1 });
    expect(invocation?.stderr).toBe('puppet agent run failed (exit code 1)\n');
  });
});
