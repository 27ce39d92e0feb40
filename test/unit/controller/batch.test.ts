import { describe, expect, it, vi } from 'vitest';
import { PuppetUnavailableError } from '../../../lib/errors';
import { handleBatch } from '../../../lambdas/controller/batch';
import type { Trigger } from '../../../lambdas/controller/model';
import { instanceSenderId, nodeAgentNotice } from '../../../lib/node-agent-notice';
import { toSqsEvent } from '../../../lab/memory-cloud';
import { RecordingLogger, RecordingMetrics } from './support';

const ROLE = 'AROAEXAMPLECOMPILEMASTR';
const scope = { groupName: 'compile-masters', launchHookName: 'launching', terminateHookName: 'terminating', compileMasterRoleId: ROLE };
/** A node agent's notice as SQS delivers it: sent with the instance's own credentials. */
const notice = (instanceId: string, senderId = instanceSenderId(ROLE, instanceId)) => ({ body: JSON.stringify(nodeAgentNotice(instanceId, 'booted')), senderId });
const schedule = JSON.stringify({ source: 'aws.events', 'detail-type': 'Scheduled Event' });
const metrics = new RecordingMetrics();

describe('handleBatch', () => {
  it('runs one reconcile for all valid records and reports no failures', async () => {
    const reconcile = vi.fn(async (_triggers: readonly Trigger[]) => undefined);
    const event = toSqsEvent([notice('i-0123456789abcdef0'), { body: schedule }, notice('i-0123456789abcdef1')]);
    const response = await handleBatch(event, { scope, logger: new RecordingLogger(), metrics, reconcile });
    expect(response).toEqual({ batchItemFailures: [] });
    expect(reconcile).toHaveBeenCalledTimes(1);
    expect(reconcile.mock.calls[0]?.[0]).toHaveLength(3);
  });

  it('drops a malformed record (logged, truncated) without failing the others', async () => {
    const logger = new RecordingLogger();
    const reconcile = vi.fn(async () => undefined);
    const hostile = `{"source":"compile-masters.node-agent","instanceId":"${'A'.repeat(5000)}"}`;
    const event = toSqsEvent([{ body: hostile }, { body: schedule }]);
    const response = await handleBatch(event, { scope, logger, metrics, reconcile });
    expect(response.batchItemFailures).toEqual([]);
    const line = logger.lines.find((entry) => entry.message === 'Malformed message dropped');
    expect(line?.attributes).toMatchObject({ messageId: event.Records[0]?.messageId, body: expect.stringMatching(/…\(5\d{3} chars\)"$/) });
    expect(JSON.stringify(line).length).toBeLessThan(600);
  });

  it('drops a notice one instance sent about another, counts it, and reconciles on the rest', async () => {
    const logger = new RecordingLogger();
    const counted = new RecordingMetrics();
    const reconcile = vi.fn(async (_triggers: readonly Trigger[]) => undefined);
    const forged = notice('i-0123456789abcdef0', instanceSenderId(ROLE, 'i-0fffffffffffffff0'));
    const response = await handleBatch(toSqsEvent([forged, { body: schedule }]), { scope, logger, metrics: counted, reconcile });
    expect(response.batchItemFailures).toEqual([]);
    expect(reconcile.mock.calls[0]?.[0]).toEqual([{ kind: 'schedule' }]);
    expect(logger.messages('warn')).toEqual(['Message dropped: its sender may not say this']);
    expect(counted.get('ForgedMessagesIgnored')).toBe(1);
  });

  it('does not reconcile at all when nothing in the batch is for this controller', async () => {
    const reconcile = vi.fn(async () => undefined);
    const response = await handleBatch(toSqsEvent([{ body: 'garbage' }]), { scope, logger: new RecordingLogger(), metrics, reconcile });
    expect(response.batchItemFailures).toEqual([]);
    expect(reconcile).not.toHaveBeenCalled();
  });

  it('reports exactly the valid records as failures when the reconcile fails (malformed ones stay dropped)', async () => {
    const logger = new RecordingLogger();
    const down = new PuppetUnavailableError({ server: 'ca', url: 'https://primary:8140', operation: 'certificate_statuses' });
    const event = toSqsEvent([notice('i-0123456789abcdef0'), { body: 'garbage' }, { body: schedule }]);
    const response = await handleBatch(event, { scope, logger, metrics, reconcile: async () => Promise.reject(down) });
    expect(response.batchItemFailures.map((failure) => failure.itemIdentifier)).toEqual([event.Records[0]?.messageId, event.Records[2]?.messageId]);
    expect(logger.messages('error')).toEqual(['Reconcile failed; its messages will be retried']);
  });

  it('returns every record as failed rather than throwing when the whole batch fails', async () => {
    const event = toSqsEvent([{ body: schedule }, { body: schedule }]);
    const response = await handleBatch(event, { scope, logger: new RecordingLogger(), metrics, reconcile: async () => Promise.reject(new Error('boom')) });
    expect(response.batchItemFailures).toHaveLength(2);
  });
});
