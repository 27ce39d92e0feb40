import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { type AwsCall, sdkCall } from '../../lib/aws-calls';
import type { NodeAgentNotice } from '../../lib/node-agent-notice';
import type { Logger } from './log';

/** The node agent's only AWS call (instance metadata is not IAM-authorized), for the IAM simulation suite. */
export const NODE_AGENT_CALLS: readonly AwsCall[] = [sdkCall('sqs:SendMessage', 'lifecycleQueue')];

/**
 * The SQS body: the shared notice, nothing added. What makes it this instance's word is the
 * SenderId SQS records for the instance profile's credentials, not anything in the body.
 */
export function messageBody(notice: NodeAgentNotice): string {
  return JSON.stringify(notice);
}

export interface Notifier {
  /** Rejects when SQS did not take the message: the caller decides whether that is fatal. */
  send(notice: NodeAgentNotice): Promise<void>;
}

export function sqsNotifier(options: { client: Pick<SQSClient, 'send'>; queueUrl: string; log: Logger }): Notifier {
  return {
    async send(notice) {
      await options.client.send(new SendMessageCommand({ QueueUrl: options.queueUrl, MessageBody: messageBody(notice) }));
      options.log.info('told the controller', { event: notice.event, publicKeySha256: notice.publicKeySha256 });
    },
  };
}
