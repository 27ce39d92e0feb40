import { type EvaluationResult, isWildcardOnlyAction, runSimulation } from '@cloud-copilot/iam-simulate';
import { describe, expect, it } from 'vitest';
import { INSTANCE_MOUNT_CALLS } from '../../../cdk/constructs/compile-master-group';
import { EVENT_SOURCE_CALLS } from '../../../cdk/constructs/lifecycle-controller';
import { AUTO_SCALING_CALLS } from '../../../lambdas/controller/aws/auto-scaling';
import { EC2_CALLS } from '../../../lambdas/controller/aws/ec2';
import { REGISTRY_CALLS } from '../../../lambdas/controller/aws/registry';
import { SECRETS_CALLS } from '../../../lambdas/controller/aws/secrets';
import { QUEUE_CALLS } from '../../../lambdas/controller/aws/sqs';
import { CONTENT_WRITER_CALLS } from '../../../lambdas/efs-seeder/handler';
import type { AwsCall, IamCheck, StackResource } from '../../../lib/aws-calls';
import { NODE_AGENT_CALLS } from '../../../node-agent/src/notify';
import { asArray, type Cfn, logicalIdByPath, only, synthStack } from './stack-fixture';
import { type Deployment, identityPoliciesOf, type PolicyDocument, resourcePolicies, templateResolver } from './template-iam';

/*
 * The synthesized template's IAM, evaluated by a policy simulator (@cloud-copilot/iam-simulate):
 * every AWS call each component lists next to its code is allowed on this stack's resources and
 * denied on any other, and no role is granted anything beyond its calls.
 */

const DEPLOYMENT: Deployment = { partition: 'aws', region: 'eu-west-1', account: '123456789012' };
const { partition, region, account } = DEPLOYMENT;

const { template } = synthStack();
const resolve = templateResolver(template, DEPLOYMENT);
const id = (path: string) => logicalIdByPath(template, path);
const arnOf = (path: string) => resolve({ 'Fn::GetAtt': [id(path), 'Arn'] }) as string;
const groupArn = (name: string) => `arn:${partition}:autoscaling:${region}:${account}:autoScalingGroup:6d0a7c9e-2f43-4b8e-9d1a-5c0e8f7b3a21:autoScalingGroupName/${name}`;

/** This stack's resources, deployed. */
const HERE: Record<StackResource, string> = {
  autoScalingGroup: groupArn(only(template, 'AWS::AutoScaling::AutoScalingGroup').properties.AutoScalingGroupName),
  lifecycleQueue: arnOf('LifecycleQueue/Resource/Resource'),
  registryTable: arnOf('LifecycleController/Registry/Resource'),
  clientCertSecret: resolve({ Ref: id('Secrets/ClientCert/Resource') }),
  rbacTokenSecret: resolve({ Ref: id('Secrets/RbacToken/Resource') }),
  fileSystem: arnOf('SharedStorage/FileSystem/Resource'),
  accessPoint: arnOf('SharedStorage/FileSystem/AccessPoint/Resource'),
};

const otherFileSystem = `arn:${partition}:elasticfilesystem:${region}:${account}:file-system/fs-0a1b2c3d4e5f60718`;
const otherSecret = (name: string) => `arn:${partition}:secretsmanager:${region}:${account}:secret:${name}-Zx9Yw8`;

/**
 * For each kind of resource, the others a call must not reach: the same account and region, so
 * only the policies' own scoping keeps them out. A swap replaces every mention of a resource, in
 * the request's resource and in its condition keys alike.
 */
const ELSEWHERE: Record<StackResource, { what: string; swap: Partial<Record<StackResource, string>> }[]> = {
  autoScalingGroup: [{ what: 'another Auto Scaling group', swap: { autoScalingGroup: groupArn('other-group') } }],
  lifecycleQueue: [
    { what: 'another queue', swap: { lifecycleQueue: `arn:${partition}:sqs:${region}:${account}:other-queue` } },
    { what: "this stack's dead-letter queue", swap: { lifecycleQueue: arnOf('LifecycleQueue/DeadLetters/Resource') } },
  ],
  registryTable: [{ what: 'another table', swap: { registryTable: `arn:${partition}:dynamodb:${region}:${account}:table/other-table` } }],
  clientCertSecret: [{ what: 'another secret', swap: { clientCertSecret: otherSecret('other-client-cert') } }],
  rbacTokenSecret: [{ what: 'another secret', swap: { rbacTokenSecret: otherSecret('other-token') } }],
  fileSystem: [
    {
      what: 'another file system, through its own access point',
      swap: { fileSystem: otherFileSystem, accessPoint: `arn:${partition}:elasticfilesystem:${region}:${account}:access-point/fsap-0f1e2d3c4b5a69788` },
    },
  ],
  accessPoint: [
    { what: "another access point of this stack's file system", swap: { accessPoint: `arn:${partition}:elasticfilesystem:${region}:${account}:access-point/fsap-0123456789abcdef0` } },
    { what: 'no access point at all', swap: { accessPoint: '' } },
  ],
};

const LAMBDA_MANAGED = ['service-role/AWSLambdaBasicExecutionRole', 'service-role/AWSLambdaVPCAccessExecutionRole'];

interface Actor {
  readonly name: string;
  readonly rolePath: string;
  readonly calls: readonly AwsCall[];
  /** Granted beyond the calls (by CDK, unasked), each with why it may stay; checked like a call. */
  readonly alsoGranted: readonly { readonly check: IamCheck; readonly why: string }[];
  /** AWS-managed policies (not in the template, so not simulated): only Lambda's own logs and ENIs. */
  readonly managedPolicies: readonly string[];
}

const ACTORS: readonly Actor[] = [
  {
    name: 'the lifecycle controller',
    rolePath: 'LifecycleController/Function/ServiceRole/Resource',
    calls: [...AUTO_SCALING_CALLS, ...EC2_CALLS, ...REGISTRY_CALLS, ...QUEUE_CALLS, ...SECRETS_CALLS, ...EVENT_SOURCE_CALLS],
    alsoGranted: [
      { check: { action: 'sqs:ChangeMessageVisibility', resource: 'lifecycleQueue' }, why: "by CDK's grantConsumeMessages for the event source" },
      { check: { action: 'sqs:GetQueueUrl', resource: 'lifecycleQueue' }, why: "by CDK's SQS grants; it reveals only the queue's URL" },
    ],
    managedPolicies: LAMBDA_MANAGED,
  },
  {
    name: "the node agent (the compile masters' instance role)",
    rolePath: 'CompileMasters/InstanceRole/Resource',
    calls: [...NODE_AGENT_CALLS, ...INSTANCE_MOUNT_CALLS],
    alsoGranted: [],
    managedPolicies: [],
  },
  {
    name: 'the EFS content writer',
    rolePath: 'SharedStorage/Content/Function/ServiceRole/Resource',
    calls: CONTENT_WRITER_CALLS,
    alsoGranted: [],
    managedPolicies: LAMBDA_MANAGED,
  },
];

/** The stack's other roles are CDK's own machinery; each is named here so a new role cannot go unnoticed. */
const NOT_SIMULATED: Record<string, string> = {
  'Network/Vpc/all/IAMRole/Resource': 'VPC flow logs: writes its own log group only',
  'Custom::VpcRestrictDefaultSGCustomResourceProvider/Role': "CDK's custom resource that empties the VPC's default security group",
  'SharedStorage/Content/Provider/framework-onEvent/ServiceRole/Resource': "CDK's provider framework: invokes the content writer only",
};

const RESOURCE_POLICIES = resourcePolicies(template, resolve);

interface Principal {
  readonly session: string;
  readonly policies: { name: string; policy: PolicyDocument }[];
}

function principalOf(actor: Actor): Principal {
  const roleId = id(actor.rolePath);
  return {
    session: `arn:${partition}:sts::${account}:assumed-role/${resolve({ Ref: roleId })}/session`,
    policies: identityPoliciesOf(template, roleId).map(({ name, document }) => ({ name, policy: resolve(document) })),
  };
}

/** One IAM decision, in the world `where` (this stack's resources with some swapped for others). */
async function decide(principal: Principal, check: IamCheck, where: Record<StackResource, string>): Promise<EvaluationResult> {
  const resource = check.resource === '*' ? '*' : where[check.resource];
  const context: Record<string, string> = { 'aws:SecureTransport': 'true' };
  for (const [key, value] of Object.entries(check.context ?? {})) {
    const resolved = typeof value === 'string' ? value : where[value.arnOf];
    // A swap to '' means the request carries no such key at all.
    if (resolved !== '') context[key] = resolved;
  }
  const answer = await runSimulation(
    {
      request: { principal: principal.session, action: check.action, resource: { resource, accountId: account }, contextVariables: context },
      identityPolicies: principal.policies,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: RESOURCE_POLICIES.get(resource),
    },
    { simulationMode: 'Strict' },
  );
  if (answer.resultType === 'error') throw new Error(`the simulator refused ${check.action}: ${JSON.stringify(answer.errors)}`);
  // A condition key the action does not have would be dropped silently, and its condition never tested.
  const ignored = answer.resultType === 'single' ? answer.result.ignoredContextKeys : answer.results.flatMap((result) => result.ignoredContextKeys ?? []);
  expect(ignored?.filter((key) => key in (check.context ?? {})), `context keys of ${check.action}`).toEqual([]);
  return answer.overallResult;
}

/** A call goes through only if IAM allows every authorization it needs. */
async function allowed(principal: Principal, checks: readonly IamCheck[], where: Record<StackResource, string>): Promise<boolean> {
  const decisions = await Promise.all(checks.map((check) => decide(principal, check, where)));
  return decisions.every((decision) => decision === 'Allowed');
}

const resourcesOf = (checks: readonly IamCheck[]): StackResource[] => [
  ...new Set(
    checks.flatMap((check) => [
      ...(check.resource === '*' ? [] : [check.resource]),
      ...Object.values(check.context ?? {}).flatMap((value) => (typeof value === 'string' ? [] : [value.arnOf])),
    ]),
  ),
];
const describeChecks = (checks: readonly IamCheck[]) => checks.map((check) => `${check.action} on ${check.resource}`).join(' + ');

/** Each listed call, and each unasked grant as if it were one. */
function casesOf(actor: Actor): { label: string; checks: readonly IamCheck[] }[] {
  return [
    ...actor.calls.map((call) => ({ label: `${call.operation} (${call.sender}: ${describeChecks(call.authorizes)})`, checks: call.authorizes })),
    ...actor.alsoGranted.map(({ check, why }) => ({ label: `${describeChecks([check])} (granted ${why})`, checks: [check] })),
  ];
}

function allowStatementsOf(actor: Actor): Cfn[] {
  return principalOf(actor).policies.flatMap(({ policy }) => asArray(policy.Statement));
}

describe.each(ACTORS)('$name', (actor) => {
  const principal = principalOf(actor);
  const cases = casesOf(actor);
  const everyCheck = cases.flatMap(({ checks }) => checks);

  it.each(cases.map(({ label, checks }) => [label, checks] as const))('may %s on this stack', async (_, checks) => {
    expect(await allowed(principal, checks, HERE)).toBe(true);
  });

  const elsewhere = cases.flatMap(({ label, checks }) => resourcesOf(checks).flatMap((kind) => ELSEWHERE[kind].map((other) => [label, other.what, checks, other.swap] as const)));
  it.each(elsewhere)('may not %s on %s', async (_, __, checks, swap) => {
    expect(await allowed(principal, checks, { ...HERE, ...swap })).toBe(false);
  });

  it("asks for '*' only with actions that have no resource-level permissions", async () => {
    const unscoped = everyCheck.filter((check) => check.resource === '*').map((check) => check.action);
    for (const action of unscoped) {
      const [service, name] = action.split(':') as [string, string];
      expect(await isWildcardOnlyAction(service, name), action).toBe(true);
    }
  });

  it('is granted no action beyond its calls, and only with plain Allow statements', () => {
    const statements = allowStatementsOf(actor);
    for (const statement of statements) {
      expect(statement.Effect).toBe('Allow');
      expect(Object.keys(statement).filter((key) => key.startsWith('Not'))).toEqual([]);
    }
    const granted = [...new Set(statements.flatMap((statement) => asArray(statement.Action) as string[]))].sort();
    expect(granted).toEqual([...new Set(everyCheck.map((check) => check.action))].sort());
  });

  it("has no AWS-managed policy beyond Lambda's own execution policies", () => {
    const arns = (template.toJSON().Resources[id(actor.rolePath)].Properties.ManagedPolicyArns ?? []).map(resolve);
    expect(arns).toEqual(actor.managedPolicies.map((name) => `arn:${partition}:iam::aws:policy/${name}`));
  });
});

describe('the node agent', () => {
  const principal = principalOf(ACTORS[1]!);
  const instance = `arn:${partition}:ec2:${region}:${account}:instance/i-0123456789abcdef0`;
  const throughAccessPoint = { 'elasticfilesystem:AccessPointArn': HERE.accessPoint, 'elasticfilesystem:AccessedViaMountTarget': 'true' };
  /** What a stolen instance credential would be worth, if the role allowed it. */
  const OF_NOTE: [action: string, resource: string, context?: Record<string, string>][] = [
    ['secretsmanager:GetSecretValue', HERE.clientCertSecret],
    ['secretsmanager:GetSecretValue', HERE.rbacTokenSecret],
    ['sqs:ReceiveMessage', HERE.lifecycleQueue],
    ['sqs:DeleteMessage', HERE.lifecycleQueue],
    ['sqs:ChangeMessageVisibility', HERE.lifecycleQueue],
    ['sqs:PurgeQueue', HERE.lifecycleQueue],
    ['sqs:SetQueueAttributes', HERE.lifecycleQueue],
    ['dynamodb:GetItem', HERE.registryTable],
    ['dynamodb:PutItem', HERE.registryTable],
    ['dynamodb:UpdateItem', HERE.registryTable],
    ['dynamodb:DeleteItem', HERE.registryTable],
    ['dynamodb:Scan', HERE.registryTable],
    ['autoscaling:CompleteLifecycleAction', HERE.autoScalingGroup],
    ['autoscaling:RecordLifecycleActionHeartbeat', HERE.autoScalingGroup],
    ['autoscaling:SetInstanceHealth', HERE.autoScalingGroup],
    ['autoscaling:TerminateInstanceInAutoScalingGroup', HERE.autoScalingGroup],
    ['autoscaling:UpdateAutoScalingGroup', HERE.autoScalingGroup],
    ['autoscaling:DescribeAutoScalingGroups', '*'],
    ['ec2:DescribeInstances', '*'],
    ['ec2:TerminateInstances', instance],
    ['ssm:SendCommand', instance],
    ['elasticfilesystem:ClientWrite', HERE.fileSystem, throughAccessPoint],
    ['elasticfilesystem:ClientRootAccess', HERE.fileSystem, throughAccessPoint],
    ['lambda:InvokeFunction', arnOf('LifecycleController/Function/Resource')],
    ['iam:PassRole', resolve({ 'Fn::GetAtt': [id('CompileMasters/InstanceRole/Resource'), 'Arn'] })],
  ];

  const short = (resource: string) => resource.slice(resource.lastIndexOf(':') + 1);
  it.each(OF_NOTE.map(([action, resource, context]) => [action, short(resource), resource, context] as const))('may not %s on %s', async (action, _, resource, context) => {
    const answer = await runSimulation(
      {
        request: { principal: principal.session, action, resource: { resource, accountId: account }, contextVariables: { 'aws:SecureTransport': 'true', ...context } },
        identityPolicies: principal.policies,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        resourcePolicy: RESOURCE_POLICIES.get(resource),
      },
      { simulationMode: 'Strict' },
    );
    expect(answer.resultType === 'error' ? answer.errors : answer.overallResult).toBe('ImplicitlyDenied');
  });
});

it('names every role of the stack: one of the actors above, or CDK machinery with a reason', () => {
  const roles = Object.entries(template.toJSON().Resources as Record<string, Cfn>)
    .filter(([, resource]) => resource.Type === 'AWS::IAM::Role')
    .map(([logicalId]) => logicalId)
    .sort();
  const known = [...ACTORS.map((actor) => actor.rolePath), ...Object.keys(NOT_SIMULATED)].map(id).sort();
  expect(roles).toEqual(known);
});
