import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { Logger } from './log';

export type AgentEvent = 'csr-submitted' | 'enrolled' | 'booted';

/** The contract with the controller: it trusts nothing here but the prompt to look at the instance. */
export function messageBody(instanceId: string, event: AgentEvent): string {
  return JSON.stringify({ source: 'compile-masters.node-agent', version: 1, instanceId, event });
}

export interface Notifier {
  notify(event: AgentEvent): Promise<void>;
}

/**
 * Tells the controller to look. A failed send is logged, not fatal: the controller's scheduled
 * reconcile finds the same state without the prompt, only later, whereas failing the boot step
 * would restart enrollment for nothing.
 */
export function sqsNotifier(options: { client: Pick<SQSClient, 'send'>; queueUrl: string; instanceId: string; log: Logger }): Notifier {
  return {
    async notify(event) {
      try {
        await options.client.send(new SendMessageCommand({ QueueUrl: options.queueUrl, MessageBody: messageBody(options.instanceId, event) }));
        options.log.info('told the controller', { event });
      } catch (error) {
        options.log.warn('could not tell the controller; its scheduled reconcile will notice later', { event, error });
      }
    },
  };
}
