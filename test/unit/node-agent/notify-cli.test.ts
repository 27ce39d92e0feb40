import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { CompileMastersError, ConfigError, PuppetApiError, PuppetUnavailableError, RefusedInputError } from '../../../lib/errors';
import { NodeAgentNoticeSchema, nodeAgentNotice } from '../../../lib/node-agent-notice';
import { EXIT, exitCodeFor, parseCommandLine } from '../../../node-agent/src/cli';
import { jsonLogger } from '../../../node-agent/src/log';
import { messageBody, sqsNotifier } from '../../../node-agent/src/notify';
import { memoryLog } from './fakes';

describe('telling the controller', () => {
  const HASH = 'c0ffee'.padEnd(64, '0');
  const sink = (sent: SendMessageCommand[]) => ({ send: async (command: SendMessageCommand) => sent.push(command) }) as never;

  it("sends the shared notice, with the key's hash, to the configured queue", async () => {
    const sent: SendMessageCommand[] = [];
    const notifier = sqsNotifier({ client: sink(sent), queueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/q', log: memoryLog() });
    await notifier.send(nodeAgentNotice('i-0123456789abcdef0', 'enrolling', HASH));
    expect(sent[0]).toBeInstanceOf(SendMessageCommand);
    expect(sent[0]?.input.QueueUrl).toBe('https://sqs.eu-west-1.amazonaws.com/1/q');
    const body: unknown = JSON.parse(sent[0]?.input.MessageBody ?? '');
    expect(body).toEqual({ source: 'compile-masters.node-agent', version: 2, instanceId: 'i-0123456789abcdef0', event: 'enrolling', publicKeySha256: HASH });
    expect(NodeAgentNoticeSchema.parse(body)).toEqual(body);
  });

  it('rejects when SQS does not take the message: whether that is fatal is boot\'s call', async () => {
    const log = memoryLog();
    const notifier = sqsNotifier({ client: { send: async () => Promise.reject(new Error('AccessDenied')) } as never, queueUrl: 'q', log });
    await expect(notifier.send(nodeAgentNotice('i-0123456789abcdef0', 'enrolled'))).rejects.toThrow('AccessDenied');
    expect(log.lines).toEqual([]);
  });

  it('has exactly the contract fields, the hash only with the keyed events', () => {
    expect(Object.keys(JSON.parse(messageBody(nodeAgentNotice('i-0123456789abcdef0', 'booted'))))).toEqual(['source', 'version', 'instanceId', 'event']);
    expect(Object.keys(JSON.parse(messageBody(nodeAgentNotice('i-0123456789abcdef0', 'csr-submitted', HASH))))).toEqual(['source', 'version', 'instanceId', 'event', 'publicKeySha256']);
  });
});

describe('command line and exit codes', () => {
  it('parses the step and the config path', () => {
    expect(parseCommandLine(['boot'])).toEqual({ step: 'boot', configPath: '/etc/compile-master-agent/agent.json' });
    expect(parseCommandLine(['shutdown', '--config', '/tmp/a.json'])).toEqual({ step: 'shutdown', configPath: '/tmp/a.json' });
    expect(parseCommandLine(['crl-refresh'])).toEqual({ step: 'crl-refresh', configPath: '/etc/compile-master-agent/agent.json' });
    expect(() => parseCommandLine([])).toThrow(/usage: node-agent.mjs boot\|shutdown/);
    expect(() => parseCommandLine(['purge'])).toThrow(ConfigError);
    expect(() => parseCommandLine(['boot', '--force'])).toThrow(/Unknown option '--force'/);
  });

  it('maps errors to sysexits codes the unit acts on', () => {
    const api = { server: 'ca' as const, url: 'https://ca', operation: 'x' };
    expect(exitCodeFor(new ConfigError('x'))).toBe(EXIT.config);
    expect(exitCodeFor(new RefusedInputError('x'))).toBe(EXIT.dataError);
    expect(exitCodeFor(new PuppetUnavailableError(api))).toBe(EXIT.unavailable);
    expect(exitCodeFor(new PuppetApiError({ ...api, status: 403 }))).toBe(EXIT.unavailable);
    expect(exitCodeFor(new CompileMastersError('blocked'))).toBe(EXIT.tempFail);
    expect(exitCodeFor(new TypeError('bug'))).toBe(EXIT.software);
  });

  it('logs one JSON object per line, with the error and its causes', () => {
    const out: string[] = [];
    const log = jsonLogger({ write: (line: string) => out.push(line) }, { write: (line: string) => out.push(line) });
    log.error('boot failed', { error: new ConfigError('outer', { cause: new Error('inner') }), serial: 10n });
    expect(out).toHaveLength(1);
    expect(out[0]?.endsWith('\n')).toBe(true);
    expect(JSON.parse(out[0] ?? '')).toEqual({ level: 'error', message: 'boot failed', serial: '10', error: [{ name: 'ConfigError', message: 'outer' }, { name: 'Error', message: 'inner' }] });
  });
});
