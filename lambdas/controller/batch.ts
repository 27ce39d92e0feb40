import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { describeUntrusted } from '../../lib/certname';
import { unhandled } from '../../lib/exhaustive';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { parseMessage, type MessageScope } from './messages';
import type { Log, MetricsSink } from './execute';
import type { Trigger } from './model';
import { METRIC } from './vocabulary';

export interface BatchDependencies {
  scope: MessageScope;
  logger: Log;
  metrics: MetricsSink;
  /** Runs one reconcile for all the batch's triggers; throws if it could not finish. */
  reconcile(triggers: readonly Trigger[]): Promise<unknown>;
}

/**
 * One SQS batch. Every record is parsed on its own: a malformed one is logged (truncated) and
 * dropped, since retrying cannot fix it. The valid ones share a single reconcile (it looks at the
 * whole group anyway); if that fails, exactly those records are reported as failures and come
 * back after the visibility timeout.
 */
export async function handleBatch(event: SQSEvent, deps: BatchDependencies): Promise<SQSBatchResponse> {
  const { logger } = deps;
  const triggers = new Map<string, Trigger>();
  for (const record of event.Records) {
    const sentAt = new Date(Number(record.attributes.SentTimestamp));
    const origin = { senderId: record.attributes.SenderId, sentAt: Number.isNaN(sentAt.getTime()) ? new Date(0).toISOString() : sentAt.toISOString() };
    const parsed = parseMessage(record.body, deps.scope, origin);
    switch (parsed.outcome) {
      case 'trigger':
        triggers.set(record.messageId, parsed.trigger);
        break;
      case 'ignored':
        logger.info('Message ignored', { messageId: record.messageId, reason: parsed.reason });
        break;
      case 'forged':
        deps.metrics.addMetric(METRIC.forged, MetricUnit.Count, 1);
        logger.warn('Message dropped: its sender may not say this', { messageId: record.messageId, reason: parsed.reason, body: describeUntrusted(record.body) });
        break;
      case 'malformed':
        logger.warn('Malformed message dropped', { messageId: record.messageId, reason: parsed.reason, body: describeUntrusted(record.body) });
        break;
      default:
        unhandled(parsed);
    }
  }

  let failure: unknown;
  if (triggers.size > 0) {
    try {
      await deps.reconcile([...triggers.values()]);
    } catch (error) {
      failure = error;
      logger.error('Reconcile failed; its messages will be retried', { error: error as Error });
    }
  }
  const processor = new BatchProcessor(EventType.SQS);
  return processPartialResponse(
    event,
    async (record: SQSRecord) => {
      if (failure !== undefined && triggers.has(record.messageId)) throw failure;
    },
    processor,
    { throwOnFullBatchFailure: false },
  );
}
