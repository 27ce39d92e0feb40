import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { CompileMastersError, ConfigError, PuppetApiError, PuppetUnavailableError, RefusedInputError } from '../../../lib/errors';
import { EXIT, exitCodeFor, parseCommandLine } from '../../../node-agent/src/cli';
import { jsonLogger } from '../../../node-agent/src/log';
import { messageBody, sqsNotifier } from '../../../node-agent/src/notify';
import { memoryLog } from './fakes';

describe('telling the controller', () => {
  it('sends the contract body to the configured queue', async () => {
    const sent: SendMessageCommand[] = [];
    const notifier = sqsNotifier({ client: { send: async (command: SendMessageCommand) => sent.push(command) } as never, queueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/q', instanceId: 'i-0123456789abcdef0', log: memoryLog() });
    await notifier.notify('csr-submitted');
    expect(sent[0]).toBeInstanceOf(SendMessageCommand);
    expect(sent[0]?.input.QueueUrl).toBe('https://sqs.eu-west-1.amazonaws.com/1/q');
    expect(JSON.parse(sent[0]?.input.MessageBody ?? '')).toEqual({ source: 'compile-masters.node-agent', version: 1, instanceId: 'i-0123456789abcdef0', event: 'csr-submitted' });
  });

  it('logs a failed send as a warning and carries on', async () => {
    const log = memoryLog();
    const notifier = sqsNotifier({ client: { send: async () => Promise.reject(new Error('AccessDenied')) } as never, queueUrl: 'q', instanceId: 'i-1', log });
    await expect(notifier.notify('enrolled')).resolves.toBeUndefined();
    expect(log.lines).toEqual([expect.objectContaining({ level: 'warn', event: 'enrolled' })]);
  });

  it('has exactly the contract fields', () => {
    expect(Object.keys(JSON.parse(messageBody('i-1', 'booted')))).toEqual(['source', 'version', 'instanceId', 'event']);
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
