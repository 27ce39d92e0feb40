import { ArnFormat, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { PrimaryInstances } from '../../lib/primary-instances';
import type { CompileMasterConfig } from '../config';
import { allowDnsEgress } from '../dns-egress';
import { SOURCE_MAPS_ENVIRONMENT, typescriptFunction } from '../lambda-defaults';
import { LEASE_CALLS } from '../../lambdas/controller/aws/lease';
import { REGISTRY_CALLS, TTL_ATTRIBUTE } from '../../lambdas/controller/aws/registry';
import { CONTROLLER_TIMEOUT_SECONDS, EVENT_SOURCE_MAX_CONCURRENCY } from '../../lambdas/controller/reconcile-lease';
import { actionsOf, type AwsCall } from '../../lib/aws-calls';
import { acknowledgeLambdaExecutionPolicies } from '../nag';
import type { ControllerSecrets } from './controller-secrets';

const CONTROLLER_TIMEOUT = Duration.seconds(CONTROLLER_TIMEOUT_SECONDS);
/** The lifecycle queue's: six times the function's timeout, as AWS advises for SQS event sources. */
export const QUEUE_VISIBILITY_TIMEOUT = Duration.seconds(CONTROLLER_TIMEOUT_SECONDS * 6);

/**
 * What Lambda's SQS event source does with the controller's role (AWS documents these three as
 * what it needs), for the IAM simulation suite.
 */
export const EVENT_SOURCE_CALLS: readonly AwsCall[] = (['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes'] as const).map(
  (action) => ({ operation: action.slice('sqs:'.length), sender: 'sqs-event-source', authorizes: [{ action, resource: 'lifecycleQueue' }] }),
);

/**
 * The controller's code and bundling; bench:coldstart and the bundle tests build exactly this.
 * It ships the SDK versions the tests ran against rather than whatever the runtime carries.
 */
export const CONTROLLER_CODE = typescriptFunction('lambdas/controller/handler.ts', { bundleAwsSDK: true });

export type PuppetSettings = Pick<
  CompileMasterConfig,
  | 'primaryHostname'
  | 'primaryCertname'
  | 'primaryCidr'
  | 'caPort'
  | 'puppetdbHostname'
  | 'puppetdbPort'
  | 'orchestratorHostname'
  | 'orchestratorPort'
  | 'orchestratorEnvironment'
  | 'allProtectedCertnames'
  | 'dnsAltNames'
  | 'roleExtension'
  | 'flavor'
  | 'primaryRun'
  | 'primaryInstances'
  | 'dnsResolverCidrs'
>;

export interface LifecycleControllerProps {
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  readonly queue: sqs.IQueue;
  readonly secrets: ControllerSecrets;
  readonly groupName: string;
  readonly launchHookName: string;
  readonly terminateHookName: string;
  readonly loadBalancerDnsName: string;
  readonly puppet: PuppetSettings;
  /** How long a serving node's Puppet Server may stay unhealthy since its last boot before the controller replaces it. */
  readonly replaceUnhealthyAfter: Duration;
  readonly serviceName: string;
  readonly metricsNamespace: string;
  readonly logLevel: string;
  /** Past this age (from EC2's launch time) a launch gets no more heartbeats (lib/launch-budget.ts). */
  readonly launchCeilingMinutes: number;
}

/**
 * The reconciler: reads the queue, signs and purges through the Puppet APIs with the only
 * credentials in the system, keeps the registry, and completes lifecycle actions of its group.
 */
export class LifecycleController extends Construct {
  readonly function: nodejs.NodejsFunction;
  readonly registry: dynamodb.Table;

  constructor(scope: Construct, id: string, props: LifecycleControllerProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const { puppet } = props;

    // Also holds the orchestrator-run record, key reports and the reconcile lease, under keys that are not instance ids.
    this.registry = new dynamodb.Table(this, 'Registry', {
      partitionKey: { name: 'instanceId', type: dynamodb.AttributeType.STRING },
      // Instances' key reports expire by themselves; registry entries carry no such attribute.
      timeToLiveAttribute: TTL_ATTRIBUTE,
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // The registry is what entitles the controller to purge a certname; losing it with the
      // stack would orphan certificates at the CA, so it outlives the stack.
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'Lifecycle controller: Puppet APIs on the primary and AWS APIs only',
      allowAllOutbound: false,
    });
    const primary = ec2.Peer.ipv4(puppet.primaryCidr);
    const orchestrator = puppet.primaryRun === 'orchestrator';
    for (const [port, what] of new Map([
      [puppet.caPort, 'Puppet CA API'],
      [puppet.puppetdbPort, 'PuppetDB API'],
      ...(orchestrator ? ([[puppet.orchestratorPort, 'PE orchestrator API']] as const) : []),
    ])) {
      securityGroup.addEgressRule(primary, ec2.Port.tcp(port), `${what} on the primary`);
    }
    // AWS APIs (Auto Scaling, EC2, ELB, SQS, DynamoDB, Secrets Manager, SSM) are public endpoints
    // reached through the NAT; their addresses are not stable enough to list.
    securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'AWS APIs over HTTPS');
    // The primary's services and the AWS endpoints are reached by name.
    allowDnsEgress(securityGroup, puppet.dnsResolverCidrs);

    const logGroup = new logs.LogGroup(this, 'Logs', {
      retention: logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    this.function = new nodejs.NodejsFunction(this, 'Function', {
      ...CONTROLLER_CODE,
      memorySize: 512,
      timeout: CONTROLLER_TIMEOUT,
      // No reserved concurrency: 1 fails the deploy in accounts with the default quota of 10, and
      // its throttled batches count receives toward the DLQ. One reconcile at a time comes from the
      // event source's maximum concurrency and a lease in the registry (reconcile-lease.ts).
      vpc: props.vpc,
      vpcSubnets: props.subnets,
      securityGroups: [securityGroup],
      logGroup,
      environment: {
        GROUP_NAME: props.groupName,
        LAUNCH_HOOK_NAME: props.launchHookName,
        TERMINATE_HOOK_NAME: props.terminateHookName,
        REGISTRY_TABLE: this.registry.tableName,
        QUEUE_URL: props.queue.queueUrl,
        CLIENT_CERT_SECRET_ARN: props.secrets.clientCert.secretArn,
        FLAVOR: puppet.flavor,
        PRIMARY_RUN: puppet.primaryRun,
        ...primaryRunEnvironment(puppet, props.secrets),
        PRIMARY_HOSTNAME: puppet.primaryHostname,
        PRIMARY_CERTNAME: puppet.primaryCertname,
        CA_PORT: String(puppet.caPort),
        PUPPETDB_HOSTNAME: puppet.puppetdbHostname,
        PUPPETDB_PORT: String(puppet.puppetdbPort),
        PROTECTED_CERTNAMES: JSON.stringify(puppet.allProtectedCertnames),
        NLB_DNS_NAME: props.loadBalancerDnsName,
        EXTRA_ALT_NAMES: JSON.stringify(puppet.dnsAltNames),
        EXPECTED_EXTENSIONS: JSON.stringify({ [puppet.roleExtension.name]: puppet.roleExtension.value }),
        REPLACE_UNHEALTHY_AFTER_SECONDS: String(props.replaceUnhealthyAfter.toSeconds()),
        LAUNCH_CEILING_SECONDS: String(props.launchCeilingMinutes * 60),
        POWERTOOLS_SERVICE_NAME: props.serviceName,
        POWERTOOLS_METRICS_NAMESPACE: props.metricsNamespace,
        POWERTOOLS_LOG_LEVEL: props.logLevel,
        ...SOURCE_MAPS_ENVIRONMENT,
      },
    });

    this.function.addEventSource(
      new SqsEventSource(props.queue, {
        batchSize: 10,
        maxBatchingWindow: Duration.seconds(5),
        reportBatchItemFailures: true,
        // The event source receives a batch only when it can invoke with it: nothing is throttled.
        maxConcurrency: EVENT_SOURCE_MAX_CONCURRENCY,
      }),
    );
    // Delayed "recheck" messages go back to its own queue.
    props.queue.grantSendMessages(this.function);
    // Exactly the registry's and the lease's calls: grantReadWriteData would add batch, query and stream reads they never make.
    this.registry.grant(this.function, ...actionsOf([...REGISTRY_CALLS, ...LEASE_CALLS]));

    const role = this.function.role!;
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:GetSecretValue'],
        resources: [props.secrets.clientCert, props.secrets.rbacToken].flatMap((secret) => (secret ? [secret.secretArn] : [])),
      }),
    );
    const groupArn = stack.formatArn({
      service: 'autoscaling',
      resource: 'autoScalingGroup',
      resourceName: `*:autoScalingGroupName/${props.groupName}`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['autoscaling:CompleteLifecycleAction', 'autoscaling:RecordLifecycleActionHeartbeat', 'autoscaling:SetInstanceHealth'],
        resources: [groupArn],
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: [
          'autoscaling:DescribeAutoScalingGroups',
          'ec2:DescribeInstances',
        ],
        resources: ['*'],
      }),
    );

    if (puppet.primaryInstances) this.allowPrimaryRuns(puppet.primaryInstances);

    acknowledgeLambdaExecutionPolicies(role, 'the lifecycle controller', true);
    Validations.of(role).acknowledge(
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: puppet.primaryInstances
          ? 'autoscaling:DescribeAutoScalingGroups, ec2:DescribeInstances and ssm:ListCommands do not support resource-level permissions; they are read-only.'
          : 'autoscaling:DescribeAutoScalingGroups and ec2:DescribeInstances do not support resource-level permissions; they are read-only.',
      },
      {
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:autoscaling:<AWS::Region>:<AWS::AccountId>:autoScalingGroup:*:autoScalingGroupName/${props.groupName}]`,
        reason:
          'The group ARN embeds a UUID unknown before the group exists; the wildcard covers only that UUID, the group name is fixed.',
      },
    );
  }

  /**
   * SSM Run Command on the primary: AWS-RunShellScript, and only on the primary's instances (by
   * id, or by tag through SSM's resource-tag condition). The command's status (ListCommands) has
   * no resource-level permissions.
   */
  private allowPrimaryRuns(instances: PrimaryInstances): void {
    const stack = Stack.of(this);
    const role = this.function.role!;
    const document = stack.formatArn({ service: 'ssm', account: '', resource: 'document', resourceName: SSM_RUN_DOCUMENT });
    const instance = (id: string) => stack.formatArn({ service: 'ec2', resource: 'instance', resourceName: id });
    if ('instanceIds' in instances) {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['ssm:SendCommand'], resources: [document, ...instances.instanceIds.map(instance)] }),
      );
    } else {
      role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['ssm:SendCommand'], resources: [document] }));
      // Its own statement: the document carries no such tag, so a shared condition would deny it.
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          actions: ['ssm:SendCommand'],
          resources: [instance('*')],
          conditions: { StringEquals: { [`ssm:resourceTag/${instances.tag.key}`]: instances.tag.value } },
        }),
      );
      Validations.of(role).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*]',
        reason: `SendCommand reaches only instances tagged ${instances.tag.key}=${instances.tag.value} (ssm:resourceTag condition): the primary's instances, chosen by tag because their ids change.`,
      });
    }
    role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['ssm:ListCommands'], resources: ['*'] }));
  }

  /**
   * The compile masters' instance role: its unique id (AROA…) prefixes the SQS SenderId of every
   * message an instance sends with its own credentials, which is how the controller tells an
   * instance's own key report from anyone else's.
   */
  trustInstanceRole(role: iam.Role): void {
    this.function.addEnvironment('COMPILE_MASTER_ROLE_ID', role.roleId);
  }
}

/** The only SSM document the controller may run: Amazon's own shell-script runner. */
export const SSM_RUN_DOCUMENT = 'AWS-RunShellScript';

/** Contract 2: the orchestrator's settings and token only with the orchestrator, the primary's instances only with SSM. */
function primaryRunEnvironment(puppet: PuppetSettings, secrets: ControllerSecrets): Record<string, string> {
  switch (puppet.primaryRun) {
    case 'orchestrator':
      if (!secrets.rbacToken) throw new Error('the orchestrator needs the RBAC token secret');
      return {
        RBAC_TOKEN_SECRET_ARN: secrets.rbacToken.secretArn,
        ORCHESTRATOR_HOSTNAME: puppet.orchestratorHostname,
        ORCHESTRATOR_PORT: String(puppet.orchestratorPort),
        ORCHESTRATOR_ENVIRONMENT: puppet.orchestratorEnvironment,
      };
    case 'ssm':
      if (!puppet.primaryInstances) throw new Error('SSM runs need the primary\'s instances');
      return 'instanceIds' in puppet.primaryInstances
        ? { PRIMARY_INSTANCE_IDS: JSON.stringify(puppet.primaryInstances.instanceIds) }
        : { PRIMARY_INSTANCE_TAG: JSON.stringify(puppet.primaryInstances.tag) };
    case 'none':
      return {};
  }
}
