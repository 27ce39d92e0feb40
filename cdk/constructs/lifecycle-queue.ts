import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
// The events' definitions the controller parses them by: the rules forward exactly those.
import { LIFECYCLE_ACTION, STATE_CHANGE } from '../../lambdas/controller/messages';

/**
 * Receives before a message goes to the DLQ. Only failed passes and dead invocations count one
 * (nothing is throttled, and a waiting invocation keeps its batch); a message still failing after
 * ten tries, an hour or more apart in total, is worth an alarm.
 */
export const DLQ_MAX_RECEIVE_COUNT = 10;

export interface LifecycleQueueProps {
  /** The group's name is fixed at synth, so the rule can match it without referencing the group. */
  readonly groupName: string;
  readonly reconcileInterval: Duration;
  /** At least six times the controller's timeout, as AWS advises for SQS event sources. */
  readonly visibilityTimeout: Duration;
}

/**
 * Everything that should make the controller look at the group funnels into one queue:
 * lifecycle actions, EC2 terminations, a reconcile schedule and the node agents' notices. Every
 * message only triggers a reconcile of observed state, so a lost, late, repeated or throttled
 * message costs latency, never correctness.
 */
export class LifecycleQueue extends Construct {
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: LifecycleQueueProps) {
    super(scope, id);

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    // SQS-managed encryption: EventBridge can deliver to it without a customer key policy.
    this.queue = new sqs.Queue(this, 'Resource', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: props.visibilityTimeout,
      retentionPeriod: Duration.days(4),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: DLQ_MAX_RECEIVE_COUNT },
    });
    const toQueue = new targets.SqsQueue(this.queue);

    new events.Rule(this, 'LifecycleActions', {
      description: `Launch and terminate lifecycle actions of ${props.groupName}`,
      eventPattern: {
        source: [LIFECYCLE_ACTION.source],
        detailType: [LIFECYCLE_ACTION.launch.detailType, LIFECYCLE_ACTION.terminate.detailType],
        detail: { AutoScalingGroupName: [props.groupName] },
      },
      targets: [toQueue],
    });

    // EC2 state-change events carry only the instance id, not its group or tags, so EventBridge
    // cannot narrow them to this group: the controller drops instances it does not know.
    // They are the backstop for instances terminated outside the group's own lifecycle.
    new events.Rule(this, 'InstanceTerminations', {
      description: `EC2 instances shutting down or terminated (the controller keeps those of ${props.groupName})`,
      eventPattern: {
        source: [STATE_CHANGE.source],
        detailType: [STATE_CHANGE.detailType],
        detail: { state: [...STATE_CHANGE.states] },
      },
      targets: [toQueue],
    });

    new events.Rule(this, 'Reconcile', {
      description: `Periodic reconcile of ${props.groupName} against the CA, PuppetDB and the registry`,
      schedule: events.Schedule.rate(props.reconcileInterval),
      targets: [toQueue],
    });
  }
}
