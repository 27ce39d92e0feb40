import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
// The controller's own metric names (EMF through Powertools, dimension `service`).
import { METRIC } from '../../lambdas/controller/vocabulary';

export interface MonitoringProps {
  readonly controller: lambda.IFunction;
  readonly queue: sqs.IQueue;
  readonly deadLetterQueue: sqs.IQueue;
  readonly metricsNamespace: string;
  readonly serviceName: string;
  readonly targetGroups: Record<string, elbv2.NetworkTargetGroup>;
  readonly groupName: string;
  /** Alarm notifications go here when set. */
  readonly alarmTopicArn?: string;
}

/**
 * Alarms for everything that means "a lifecycle action did not go as designed", and one
 * dashboard that shows the tier from queue to targets.
 */
export class Monitoring extends Construct {
  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const period = Duration.minutes(5);
    const alarms: cloudwatch.Alarm[] = [];
    const controllerMetric = (metricName: string) =>
      new cloudwatch.Metric({
        namespace: props.metricsNamespace,
        metricName,
        dimensionsMap: { service: props.serviceName },
        statistic: cloudwatch.Stats.SUM,
        period,
      });

    const anyAtAll = (
      alarmId: string,
      metric: cloudwatch.IMetric,
      description: string,
      evaluationPeriods = 1,
    ): void => {
      const alarm = new cloudwatch.Alarm(this, alarmId, {
        metric,
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods,
        // No data means nothing happened, which for these counts is good news.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      alarms.push(alarm);
    };

    anyAtAll(
      'DeadLetters',
      props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period, statistic: cloudwatch.Stats.MAXIMUM }),
      'Lifecycle messages the controller failed on repeatedly; inspect, fix, then redrive to the lifecycle queue.',
    );
    anyAtAll(
      'ControllerErrors',
      props.controller.metricErrors({ period, statistic: cloudwatch.Stats.SUM }),
      'The lifecycle controller Lambda threw; see its logs.',
    );
    anyAtAll(
      'LifecycleActionsRefused',
      controllerMetric(METRIC.refused),
      'The controller refused to admit a new compile master (its CSR or membership did not check out) and abandoned its launch; see the controller logs.',
    );
    anyAtAll(
      'LifecycleActionsFailed',
      controllerMetric(METRIC.failed),
      'A lifecycle action could not be completed; the hook\'s default result applies (launch: ABANDON, terminate: CONTINUE).',
    );
    anyAtAll(
      'PrimaryRunsFailed',
      controllerMetric(METRIC.runsFailed),
      "The primary's Puppet run (orchestrator job or SSM command) failed twice; new compile masters may be unclassified or purged nodes still in its config.",
    );
    anyAtAll(
      'ImpostorCsrs',
      controllerMetric(METRIC.impostorCsrs),
      "A pending CSR for a compile master's certname was not made with the key that instance reported, and was removed: someone who reaches 8140 tried to take a compile master's identity. See 'Removed a certificate request the instance did not make' in the controller logs.",
    );
    anyAtAll(
      'ForgedMessages',
      controllerMetric(METRIC.forged),
      "A message on the lifecycle queue was sent with a compile master's credentials but spoke for another instance or as AWS; that instance may be compromised. See 'Message dropped: its sender may not say this' in the controller logs.",
    );
    anyAtAll(
      'SigningSuspended',
      controllerMetric(METRIC.signingSuspended),
      "The controller signs nothing: the CA accepts duplicate CSRs (allow-duplicate-certs), or could not be probed. Set allow-duplicate-certs to false on the primary and restart puppetserver; 'npx compile-masters doctor' checks it.",
    );
    anyAtAll(
      'SecretsMissing',
      controllerMetric(METRIC.secretsMissing),
      "The lifecycle client certificate secret is empty or missing: the controller signs and purges nothing, and launches wait (heartbeated) until their ceiling. Put it with 'npx compile-masters secrets put'; the next scheduled pass picks everything up.",
    );
    anyAtAll(
      'DamagedRegistryEntries',
      controllerMetric(METRIC.damagedEntries),
      "A registry item does not parse (or names a hostile certname) and is quarantined: nothing is done for its instance until a person repairs or deletes it. See 'Damaged registry item left alone' in the controller logs.",
    );
    // One period of drift is a reconcile catching up; three in a row means it cannot.
    anyAtAll(
      'PersistentDrift',
      controllerMetric(METRIC.drift),
      'The group, the registry and the CA have disagreed for 15 minutes; the reconcile is not converging.',
      3,
    );
    for (const [name, group] of Object.entries(props.targetGroups)) {
      anyAtAll(
        `${name}UnhealthyTargets`,
        group.metrics.unHealthyHostCount({ period: Duration.minutes(1), statistic: cloudwatch.Stats.MAXIMUM }),
        `A compile master fails the ${name} health check behind the NLB.`,
        3,
      );
    }

    if (props.alarmTopicArn) {
      const topic = sns.Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn);
      for (const alarm of alarms) alarm.addAlarmAction(new actions.SnsAction(topic));
    }

    const groupMetric = (metricName: string) =>
      new cloudwatch.Metric({
        namespace: 'AWS/AutoScaling',
        metricName,
        dimensionsMap: { AutoScalingGroupName: props.groupName },
        statistic: cloudwatch.Stats.MAXIMUM,
        period: Duration.minutes(1),
      });
    const cpu = new cloudwatch.Metric({
      namespace: 'AWS/EC2',
      metricName: 'CPUUtilization',
      dimensionsMap: { AutoScalingGroupName: props.groupName },
      statistic: cloudwatch.Stats.AVERAGE,
      period: Duration.minutes(1),
    });

    new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(6),
      widgets: [
        [
          new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms, width: 24 }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Compile masters',
            left: ['GroupInServiceInstances', 'GroupPendingInstances', 'GroupTerminatingInstances', 'GroupDesiredCapacity'].map(groupMetric),
            right: [cpu],
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'NLB targets',
            left: Object.values(props.targetGroups).map((group) => group.metrics.healthyHostCount()),
            right: Object.values(props.targetGroups).map((group) => group.metrics.unHealthyHostCount()),
            width: 12,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Lifecycle queue',
            left: [
              props.queue.metricApproximateNumberOfMessagesVisible(),
              props.queue.metricApproximateAgeOfOldestMessage(),
            ],
            right: [props.deadLetterQueue.metricApproximateNumberOfMessagesVisible()],
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'Controller',
            left: [props.controller.metricInvocations(), props.controller.metricErrors(), props.controller.metricThrottles()],
            right: [props.controller.metricDuration({ statistic: cloudwatch.Stats.p(99) })],
            width: 12,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Lifecycle outcomes',
            left: Object.values(METRIC).map(controllerMetric),
            width: 24,
          }),
        ],
      ],
    });
  }
}
