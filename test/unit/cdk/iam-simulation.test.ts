import { type EvaluationResult, isWildcardOnlyAction, runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate';
import { describe, expect, it } from 'vitest';
import { EXAMPLE_PRIMARY_INSTANCE_ID } from '../../../cdk/config';
import { INSTANCE_MOUNT_CALLS } from '../../../cdk/constructs/compile-master-group';
import { EVENT_SOURCE_CALLS } from '../../../cdk/constructs/lifecycle-controller';
import { AUTO_SCALING_CALLS } from '../../../lambdas/controller/aws/auto-scaling';
import { EC2_CALLS } from '../../../lambdas/controller/aws/ec2';
import { LEASE_CALLS } from '../../../lambdas/controller/aws/lease';
import { REGISTRY_CALLS } from '../../../lambdas/controller/aws/registry';
import { RBAC_TOKEN_CALLS, SECRETS_CALLS } from '../../../lambdas/controller/aws/secrets';
import { QUEUE_CALLS } from '../../../lambdas/controller/aws/sqs';
import { SSM_CALLS } from '../../../lambdas/controller/primary-run/ssm';
import { CONTENT_WRITER_CALLS } from '../../../lambdas/efs-seeder/handler';
import type { AwsCall, IamCheck, StackResource } from '../../../lib/aws-calls';
import { defaultPrimaryRun, type Flavor, type PrimaryRunMode } from '../../../lib/flavor';
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
const arn = (service: string, resource: string) => `arn:${partition}:${service}:${region}:${account}:${resource}`;
const groupArn = (name: string) => arn('autoscaling', `autoScalingGroup:6d0a7c9e-2f43-4b8e-9d1a-5c0e8f7b3a21:autoScalingGroupName/${name}`);

/** A resource as a request sees it: its ARN and the tags that condition keys can test. */
interface Located {
  readonly arn: string;
  readonly tags?: Readonly<Record<string, string>>;
}

/** A stack synthesized from `context`, with its resources where they would be deployed. */
function deploy(context: Record<string, unknown>) {
  const { template } = synthStack(context);
  const resolve = templateResolver(template, DEPLOYMENT);
  const id = (path: string) => logicalIdByPath(template, path);
  const arnAt = (path: string): Located => ({ arn: resolve({ 'Fn::GetAtt': [id(path), 'Arn'] }) });
  const paths = Object.values(template.toJSON().Resources as Record<string, Cfn>).map((resource) => String(resource.Metadata?.['aws:cdk:path'] ?? ''));
  /** A resource only some configurations have (a secret imported by ARN is not in the template either). */
  const ifPresent = (path: string, locate: (path: string) => Located): Located | null => (paths.some((candidate) => candidate.endsWith(path)) ? locate(path) : null);
  const secretAt = (path: string): Located => ({ arn: resolve({ Ref: id(path) }) });

  /** This stack's resources, deployed; null where this configuration has none. */
  const here: Record<StackResource, Located | null> = {
    autoScalingGroup: { arn: groupArn(only(template, 'AWS::AutoScaling::AutoScalingGroup').properties.AutoScalingGroupName) },
    lifecycleQueue: arnAt('LifecycleQueue/Resource/Resource'),
    registryTable: arnAt('LifecycleController/Registry/Resource'),
    clientCertSecret: ifPresent('Secrets/ClientCert/Resource', secretAt),
    rbacTokenSecret: ifPresent('Secrets/RbacToken/Resource', secretAt),
    fileSystem: arnAt('SharedStorage/FileSystem/Resource'),
    accessPoint: arnAt('SharedStorage/FileSystem/AccessPoint/Resource'),
    primaryInstance: primaryInstanceOf(context),
    runShellScriptDocument: { arn: `arn:${partition}:ssm:${region}::document/AWS-RunShellScript` },
  };

  /**
   * For each kind of resource, the others a call must not reach: in the same account and region,
   * so only the policies' own scoping keeps them out. A swap replaces every mention of a resource,
   * in the request's resource and in its condition keys alike; null: the request names none.
   */
  const elsewhere: Record<StackResource, { what: string; swap: Partial<Record<StackResource, Located | null>> }[]> = {
    autoScalingGroup: [{ what: 'another Auto Scaling group', swap: { autoScalingGroup: { arn: groupArn('other-group') } } }],
    lifecycleQueue: [
      { what: 'another queue', swap: { lifecycleQueue: { arn: arn('sqs', 'other-queue') } } },
      { what: "this stack's dead-letter queue", swap: { lifecycleQueue: arnAt('LifecycleQueue/DeadLetters/Resource') } },
    ],
    registryTable: [{ what: 'another table', swap: { registryTable: { arn: arn('dynamodb', 'table/other-table') } } }],
    clientCertSecret: [{ what: 'another secret', swap: { clientCertSecret: { arn: arn('secretsmanager', 'secret:other-client-cert-Zx9Yw8') } } }],
    rbacTokenSecret: [{ what: 'another secret', swap: { rbacTokenSecret: { arn: arn('secretsmanager', 'secret:other-token-Zx9Yw8') } } }],
    fileSystem: [
      {
        what: 'another file system, through its own access point',
        swap: {
          fileSystem: { arn: arn('elasticfilesystem', 'file-system/fs-0a1b2c3d4e5f60718') },
          accessPoint: { arn: arn('elasticfilesystem', 'access-point/fsap-0f1e2d3c4b5a69788') },
        },
      },
    ],
    primaryInstance: [{ what: 'another instance', swap: { primaryInstance: { arn: arn('ec2', 'instance/i-0fedcba9876543210'), tags: { Role: 'web' } } } }],
    runShellScriptDocument: [{ what: 'another SSM document', swap: { runShellScriptDocument: { arn: `arn:${partition}:ssm:${region}::document/AWS-RunPowerShellScript` } } }],
    accessPoint: [
      { what: "another access point of this stack's file system", swap: { accessPoint: { arn: arn('elasticfilesystem', 'access-point/fsap-0123456789abcdef0') } } },
      { what: 'no access point at all', swap: { accessPoint: null } },
    ],
  };

  return { template, resolve, id, arnAt, here, elsewhere, resourcePolicies: resourcePolicies(template, resolve) };
}
type Deployed = ReturnType<typeof deploy>;

/** The primary as SSM Run Command targets it: by the configured id, or an instance carrying the configured tag. */
function primaryInstanceOf(context: Record<string, unknown>): Located | null {
  const run = (context.primaryRun as PrimaryRunMode | undefined) ?? defaultPrimaryRun((context.flavor as Flavor | undefined) ?? 'pe');
  if (run !== 'ssm') return null;
  const tag = context.primaryInstanceTag as { key: string; value: string } | undefined;
  if (tag) return { arn: arn('ec2', 'instance/i-0a1b2c3d4e5f60718'), tags: { [tag.key]: tag.value } };
  const [id] = (context.primaryInstanceIds as string[] | undefined) ?? [EXAMPLE_PRIMARY_INSTANCE_ID];
  return { arn: arn('ec2', `instance/${id}`) };
}

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

const NODE_AGENT: Actor = {
  name: "the node agent (the compile masters' instance role)",
  rolePath: 'CompileMasters/InstanceRole/Resource',
  calls: [...NODE_AGENT_CALLS, ...INSTANCE_MOUNT_CALLS],
  alsoGranted: [],
  managedPolicies: [],
};

/** The controller's calls depend on how the stack runs Puppet on the primary; the rest do not. */
function actors(controllerCalls: readonly AwsCall[]): Actor[] {
  return [
    {
      name: 'the lifecycle controller',
      rolePath: 'LifecycleController/Function/ServiceRole/Resource',
      calls: [...controllerCalls, ...EVENT_SOURCE_CALLS],
      alsoGranted: [
        { check: { action: 'sqs:ChangeMessageVisibility', resource: 'lifecycleQueue' }, why: "by CDK's grantConsumeMessages for the event source" },
        { check: { action: 'sqs:GetQueueUrl', resource: 'lifecycleQueue' }, why: "by CDK's SQS grants; it reveals only the queue's URL" },
      ],
      managedPolicies: LAMBDA_MANAGED,
    },
    NODE_AGENT,
    {
      name: 'the EFS content writer',
      rolePath: 'SharedStorage/Content/Function/ServiceRole/Resource',
      calls: CONTENT_WRITER_CALLS,
      alsoGranted: [],
      managedPolicies: LAMBDA_MANAGED,
    },
  ];
}

const CONTROLLER_CALLS = [...AUTO_SCALING_CALLS, ...EC2_CALLS, ...REGISTRY_CALLS, ...LEASE_CALLS, ...QUEUE_CALLS];

/** Each stack shape whose IAM differs, with the controller's calls in it. */
const VARIANTS: readonly { name: string; context: Record<string, unknown>; controllerCalls: readonly AwsCall[] }[] = [
  { name: 'the default stack (PE, orchestrator runs)', context: {}, controllerCalls: [...CONTROLLER_CALLS, ...SECRETS_CALLS, ...RBAC_TOKEN_CALLS] },
  {
    name: 'open source, SSM runs on the primary by instance id',
    context: { flavor: 'oss', primaryInstanceIds: ['i-0123456789abcdef0'] },
    controllerCalls: [...CONTROLLER_CALLS, ...SECRETS_CALLS, ...SSM_CALLS],
  },
  {
    name: 'open source, SSM runs on the primary by tag',
    context: { flavor: 'oss', primaryInstanceTag: { key: 'Role', value: 'puppet-primary' } },
    controllerCalls: [...CONTROLLER_CALLS, ...SECRETS_CALLS, ...SSM_CALLS],
  },
  { name: 'OpenVox, no primary runs', context: { flavor: 'openvox', primaryRun: 'none' }, controllerCalls: [...CONTROLLER_CALLS, ...SECRETS_CALLS] },
];

/** The stack's other roles are CDK's own machinery; each is named here so a new role cannot go unnoticed. */
const NOT_SIMULATED: Record<string, string> = {
  'Network/Vpc/all/IAMRole/Resource': 'VPC flow logs: writes its own log group only',
  'Custom::VpcRestrictDefaultSGCustomResourceProvider/Role': "CDK's custom resource that empties the VPC's default security group",
  'SharedStorage/Content/Provider/framework-onEvent/ServiceRole/Resource': "CDK's provider framework: invokes the content writer only",
};

interface Principal {
  readonly session: string;
  readonly policies: { name: string; policy: PolicyDocument }[];
}

function principalOf(stack: Deployed, actor: Actor): Principal {
  const roleId = stack.id(actor.rolePath);
  return {
    session: `arn:${partition}:sts::${account}:assumed-role/${stack.resolve({ Ref: roleId })}/session`,
    policies: identityPoliciesOf(stack.template, roleId).map(({ name, document }) => ({ name, policy: stack.resolve(document) })),
  };
}

/** One request through the simulator: the identity policies, and the resource's own policy if it has one. */
function simulation(stack: Deployed, principal: Principal, action: string, resource: string, context: Record<string, string>) {
  return {
    request: { principal: principal.session, action, resource: { resource, accountId: account }, contextVariables: { 'aws:SecureTransport': 'true', ...context } },
    identityPolicies: principal.policies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: stack.resourcePolicies.get(resource),
  };
}

async function evaluate(stack: Deployed, principal: Principal, action: string, resource: string, context: Record<string, string>) {
  const answer = await runSimulation(simulation(stack, principal, action, resource, context), { simulationMode: 'Strict' });
  if (answer.resultType === 'error') throw new Error(`the simulator refused ${action} on ${resource}: ${JSON.stringify(answer.errors)}`);
  return answer;
}

/** One IAM decision, in the world `where` (this stack's resources with some swapped for others). */
async function decide(stack: Deployed, principal: Principal, check: IamCheck, where: Record<StackResource, Located | null>): Promise<EvaluationResult> {
  const target = check.resource === '*' ? { arn: '*' } : where[check.resource];
  if (!target) throw new Error(`${check.action} needs a ${check.resource}`);
  const context: Record<string, string> = {};
  // The target's tags, under the global key and the service's own (the simulator drops whichever the action lacks).
  for (const [key, value] of Object.entries(target.tags ?? {})) {
    context[`aws:ResourceTag/${key}`] = value;
    context[`${check.action.split(':')[0]}:resourceTag/${key}`] = value;
  }
  for (const [key, value] of Object.entries(check.context ?? {})) {
    const resolved = typeof value === 'string' ? value : where[value.arnOf]?.arn;
    if (resolved !== undefined) context[key] = resolved;
  }
  // AWS-owned ARNs (SSM's documents) have no account, which the validating simulation refuses
  // ("no.resource.types"); the unvalidated one evaluates them, and carries no condition keys here.
  if (target.arn.split(':')[4] === '') return runUnsafeSimulation(simulation(stack, principal, check.action, target.arn, context), { simulationMode: 'Strict' });
  const answer = await evaluate(stack, principal, check.action, target.arn, context);
  // A condition key the action does not have would be dropped silently, and its condition never tested.
  const ignored = answer.resultType === 'single' ? answer.result.ignoredContextKeys : answer.results.flatMap((result) => result.ignoredContextKeys ?? []);
  expect(ignored?.filter((key) => key in (check.context ?? {})), `context keys of ${check.action}`).toEqual([]);
  return answer.overallResult;
}

/** A call goes through only if IAM allows every authorization it needs. */
async function allowed(stack: Deployed, principal: Principal, checks: readonly IamCheck[], where: Record<StackResource, Located | null>): Promise<boolean> {
  const decisions = await Promise.all(checks.map((check) => decide(stack, principal, check, where)));
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

describe.each(VARIANTS)('$name', (variant) => {
  const stack = deploy(variant.context);
  const { here } = stack;

  describe.each(actors(variant.controllerCalls))('$name', (actor) => {
    const principal = principalOf(stack, actor);
    const cases = casesOf(actor);
    const everyCheck = cases.flatMap(({ checks }) => checks);

    it.each(cases.map(({ label, checks }) => [label, checks] as const))('may %s on this stack', async (_, checks) => {
      expect(await allowed(stack, principal, checks, here)).toBe(true);
    });

    const elsewhere = cases.flatMap(({ label, checks }) =>
      resourcesOf(checks).flatMap((kind) => stack.elsewhere[kind].map((other) => [label, other.what, checks, other.swap] as const)),
    );
    it.each(elsewhere)('may not %s on %s', async (_, __, checks, swap) => {
      expect(await allowed(stack, principal, checks, { ...here, ...swap })).toBe(false);
    });

    it("asks for '*' only with actions that have no resource-level permissions", async () => {
      for (const action of everyCheck.filter((check) => check.resource === '*').map((check) => check.action)) {
        const [service, name] = action.split(':') as [string, string];
        expect(await isWildcardOnlyAction(service, name), action).toBe(true);
      }
    });

    it('is granted no action beyond its calls, and only with plain Allow statements', () => {
      const statements: Cfn[] = principal.policies.flatMap(({ policy }) => asArray(policy.Statement));
      for (const statement of statements) {
        expect(statement.Effect).toBe('Allow');
        expect(Object.keys(statement).filter((key) => key.startsWith('Not'))).toEqual([]);
      }
      const granted = [...new Set(statements.flatMap((statement) => asArray(statement.Action) as string[]))].sort();
      expect(granted).toEqual([...new Set(everyCheck.map((check) => check.action))].sort());
    });

    it("has no AWS-managed policy beyond Lambda's own execution policies", () => {
      const arns = (stack.template.toJSON().Resources[stack.id(actor.rolePath)].Properties.ManagedPolicyArns ?? []).map(stack.resolve);
      expect(arns).toEqual(actor.managedPolicies.map((name) => `arn:${partition}:iam::aws:policy/${name}`));
    });
  });

  describe('the node agent, with nothing else of note', () => {
    const principal = principalOf(stack, NODE_AGENT);
    const instance = arn('ec2', 'instance/i-0123456789abcdef0');
    const at = (resource: StackResource) => here[resource]?.arn ?? '';
    const throughAccessPoint = { 'elasticfilesystem:AccessPointArn': at('accessPoint'), 'elasticfilesystem:AccessedViaMountTarget': 'true' };
    /** What a stolen instance credential would be worth, if the role allowed it. */
    const OF_NOTE: [action: string, resource: string, context?: Record<string, string>][] = [
      ['secretsmanager:GetSecretValue', at('clientCertSecret')],
      ['secretsmanager:GetSecretValue', at('rbacTokenSecret')],
      ['sqs:ReceiveMessage', at('lifecycleQueue')],
      ['sqs:DeleteMessage', at('lifecycleQueue')],
      ['sqs:ChangeMessageVisibility', at('lifecycleQueue')],
      ['sqs:PurgeQueue', at('lifecycleQueue')],
      ['sqs:SetQueueAttributes', at('lifecycleQueue')],
      ['dynamodb:GetItem', at('registryTable')],
      ['dynamodb:PutItem', at('registryTable')],
      ['dynamodb:UpdateItem', at('registryTable')],
      ['dynamodb:DeleteItem', at('registryTable')],
      ['dynamodb:Scan', at('registryTable')],
      ['autoscaling:CompleteLifecycleAction', at('autoScalingGroup')],
      ['autoscaling:RecordLifecycleActionHeartbeat', at('autoScalingGroup')],
      ['autoscaling:SetInstanceHealth', at('autoScalingGroup')],
      ['autoscaling:TerminateInstanceInAutoScalingGroup', at('autoScalingGroup')],
      ['autoscaling:UpdateAutoScalingGroup', at('autoScalingGroup')],
      ['autoscaling:DescribeAutoScalingGroups', '*'],
      ['ec2:DescribeInstances', '*'],
      ['ec2:TerminateInstances', instance],
      ['ssm:SendCommand', instance],
      ['elasticfilesystem:ClientWrite', at('fileSystem'), throughAccessPoint],
      ['elasticfilesystem:ClientRootAccess', at('fileSystem'), throughAccessPoint],
      ['lambda:InvokeFunction', stack.arnAt('LifecycleController/Function/Resource').arn],
      ['iam:PassRole', stack.arnAt('CompileMasters/InstanceRole/Resource').arn],
    ];
    const short = (resource: string) => resource.slice(resource.lastIndexOf(':') + 1);

    // Resources this configuration does not have are left out.
    it.each(OF_NOTE.filter(([, resource]) => resource !== '').map(([action, resource, context]) => [action, short(resource), resource, context] as const))(
      'may not %s on %s',
      async (action, _, resource, context) => {
        expect((await evaluate(stack, principal, action, resource, context ?? {})).overallResult).toBe('ImplicitlyDenied');
      },
    );
  });

  it('names every role of the stack: one of the actors above, or CDK machinery with a reason', () => {
    const roles = Object.entries(stack.template.toJSON().Resources as Record<string, Cfn>)
      .filter(([, resource]) => resource.Type === 'AWS::IAM::Role')
      .map(([logicalId]) => logicalId)
      .sort();
    const known = [...actors(variant.controllerCalls).map((actor) => actor.rolePath), ...Object.keys(NOT_SIMULATED)].map(stack.id).sort();
    expect(roles).toEqual(known);
  });
});
