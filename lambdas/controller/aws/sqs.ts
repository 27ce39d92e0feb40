import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { type AwsCall, sdkCall } from '../../../lib/aws-calls';
import type { RecheckMessage } from '../messages';
import type { QueuePort } from '../ports';
import { awsCall } from './call';

/** The calls below, for the IAM simulation suite: rechecks go to the controller's own queue. */
export const QUEUE_CALLS: readonly AwsCall[] = [sdkCall('sqs:SendMessage', 'lifecycleQueue')];

/** SQS's longest per-message delay. */
const MAX_DELAY_SECONDS = 900;

export class SqsQueue implements QueuePort {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async sendRecheck(message: RecheckMessage, delaySeconds: number): Promise<void> {
    await awsCall('SendMessage', () =>
      this.client.send(
        new SendMessageCommand({
          QueueUrl: this.queueUrl,
          MessageBody: JSON.stringify(message),
          DelaySeconds: Math.min(MAX_DELAY_SECONDS, Math.max(0, Math.round(delaySeconds))),
        }),
      ),
    );
  }
}
