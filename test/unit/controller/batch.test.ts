import { describe, expect, it, vi } from 'vitest';
import { PuppetUnavailableError } from '../../../lib/errors';
import { handleBatch } from '../../../lambdas/controller/batch';
import type { Trigger } from '../../../lambdas/controller/model';
import { toSqsEvent } from '../../support/memory-cloud';
import { RecordingLogger } from './support';

const scope = { groupName: 'compile-masters', launchHookName: 'launching', terminateHookName: 'terminating' };
const notice = (instanceId: string) => JSON.stringify({ source: 'compile-masters.node-agent', version: 1, instanceId, event: 'booted' });
const schedule = JSON.stringify({ source: 'aws.events', 'detail-type': 'Scheduled Event' });

describe('handleBatch', () => {
  it('runs one reconcile for all valid records and reports no failures', async () => {
    const reconcile = vi.fn(async (_triggers: readonly Trigger[]) => undefined);
    const event = toSqsEvent([{ body: notice('i-0123456789abcdef0') }, { body: schedule }, { body: notice('i-0123456789abcdef1') }]);
    const response = await handleBatch(event, { scope, logger: new RecordingLogger(), reconcile });
    expect(response).toEqual({ batchItemFailures: [] });
    expect(reconcile).toHaveBeenCalledTimes(1);
    expect(reconcile.mock.calls[0]?.[0]).toHaveLength(3);
  });

  it('drops a malformed record (logged, truncated) without failing the others', async () => {
    const logger = new RecordingLogger();
    const reconcile = vi.fn(async () => undefined);
    const hostile = `{"source":"compile-masters.node-agent","instanceId":"${'A'.repeat(5000)}"}`;
    const event = toSqsEvent([{ body: hostile }, { body: schedule }]);
    const response = await handleBatch(event, { scope, logger, reconcile });
    expect(response.batchItemFailures).toEqual([]);
    const line = logger.lines.find((entry) => entry.message === 'Malformed message dropped');
    expect(line?.attributes).toMatchObject({ messageId: event.Records[0]?.messageId, body: expect.stringMatching(/…\(5\d{3} chars\)"$/) });
    expect(JSON.stringify(line).length).toBeLessThan(600);
  });

  it('does not reconcile at all when nothing in the batch is for this controller', async () => {
    const reconcile = vi.fn(async () => undefined);
    const response = await handleBatch(toSqsEvent([{ body: 'garbage' }]), { scope, logger: new RecordingLogger(), reconcile });
    expect(response.batchItemFailures).toEqual([]);
    expect(reconcile).not.toHaveBeenCalled();
  });

  it('reports exactly the valid records as failures when the reconcile fails (malformed ones stay dropped)', async () => {
    const logger = new RecordingLogger();
    const down = new PuppetUnavailableError({ server: 'ca', url: 'https://primary:8140', operation: 'certificate_statuses' });
    const event = toSqsEvent([{ body: notice('i-0123456789abcdef0') }, { body: 'garbage' }, { body: schedule }]);
    const response = await handleBatch(event, { scope, logger, reconcile: async () => Promise.reject(down) });
    expect(response.batchItemFailures.map((failure) => failure.itemIdentifier)).toEqual([event.Records[0]?.messageId, event.Records[2]?.messageId]);
    expect(logger.messages('error')).toEqual(['Reconcile failed; its messages will be retried']);
  });

  it('returns every record as failed rather than throwing when the whole batch fails', async () => {
    const event = toSqsEvent([{ body: schedule }, { body: schedule }]);
    const response = await handleBatch(event, { scope, logger: new RecordingLogger(), reconcile: async () => Promise.reject(new Error('boom')) });
    expect(response.batchItemFailures).toHaveLength(2);
  });
});
