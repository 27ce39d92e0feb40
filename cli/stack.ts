import { CloudFormationClient, DescribeStacksCommand, paginateListStackResources } from '@aws-sdk/client-cloudformation';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import * as z from 'zod';
import { loadConfig, type CompileMasterConfig } from '../cdk/config';
import { awsCall } from '../lambdas/controller/aws/call';
import { ConfigError } from '../lib/errors';
import { FLAVORS, PRIMARY_RUN_MODES } from '../lib/flavor';

/**
 * The stack outputs the CLI needs; names as cdk/compile-master-stack.ts declares them. Stacks
 * deployed before flavors existed have no Flavor or PrimaryRun: they are PE with the orchestrator.
 * The token secret exists only with the orchestrator.
 */
const OutputsSchema = z
  .object({
    LoadBalancerDnsName: z.string().min(1),
    LifecycleQueueUrl: z.string().min(1),
    ClientCertSecretArn: z.string().min(1),
    RbacTokenSecretArn: z.string().min(1).optional(),
    FileSystemId: z.string().min(1),
    RegistryTableName: z.string().min(1),
    AutoScalingGroupName: z.string().min(1),
    Flavor: z.enum(FLAVORS).default('pe'),
    PrimaryRun: z.enum(PRIMARY_RUN_MODES).default('orchestrator'),
    /** Absent from stacks deployed before doctor asked IAM about it. */
    ControllerRoleArn: z.string().min(1).optional(),
  })
  .refine((outputs) => outputs.PrimaryRun !== 'orchestrator' || outputs.RbacTokenSecretArn !== undefined, {
    path: ['RbacTokenSecretArn'],
    message: 'is required when PrimaryRun is orchestrator',
  });
export type StackOutputs = z.infer<typeof OutputsSchema>;

export interface DeployedStack {
  stackName: string;
  outputs: StackOutputs;
}

/** A deployed compile-master stack, found by name through CloudFormation. */
export async function describeStack(client: CloudFormationClient, stackName: string): Promise<DeployedStack> {
  const answer = await awsCall('DescribeStacks', () => client.send(new DescribeStacksCommand({ StackName: stackName })));
  const stack = answer.Stacks?.[0];
  if (!stack) throw new ConfigError(`CloudFormation has no stack named ${stackName}`, { hint: 'pass --stack with the name `cdk deploy` printed (default CompileMasters), in the right --region' });
  const outputs = Object.fromEntries((stack.Outputs ?? []).map((output) => [output.OutputKey, output.OutputValue]));
  const parsed = OutputsSchema.safeParse(outputs);
  if (!parsed.success) {
    const missing = parsed.error.issues.map((issue) => issue.path.join('.')).join(', ');
    throw new ConfigError(`Stack ${stackName} lacks the outputs ${missing} (status ${stack.StackStatus ?? 'unknown'})`, {
      hint: 'is this the compile-masters stack, and did its deploy finish? `npx cdk deploy` creates these outputs',
    });
  }
  return { stackName, outputs: parsed.data };
}

/** The NLB's target groups (8140 and 8142): not outputs, so read from the stack's resources. */
export async function stackTargetGroups(client: CloudFormationClient, stackName: string): Promise<string[]> {
  const arns: string[] = [];
  await awsCall('ListStackResources', async () => {
    for await (const page of paginateListStackResources({ client }, { StackName: stackName })) {
      for (const resource of page.StackResourceSummaries ?? []) {
        if (resource.ResourceType === 'AWS::ElasticLoadBalancingV2::TargetGroup' && resource.PhysicalResourceId) arns.push(resource.PhysicalResourceId);
      }
    }
  });
  return arns;
}

/**
 * The stack's context, validated by the same parser `cdk synth` uses, so the CLI and the deployed
 * stack cannot disagree about the primary. A relative primaryCaCertificateFile resolves next to
 * cdk.json, as it does for cdk.
 */
export function loadContext(cdkJsonPath: string): CompileMasterConfig {
  const path = resolve(cdkJsonPath);
  let context: Record<string, unknown>;
  try {
    context = (JSON.parse(readFileSync(path, 'utf8')) as { context?: Record<string, unknown> }).context ?? {};
  } catch (cause) {
    throw new ConfigError(`Cannot read the CDK context from ${path}`, { cause, hint: 'run from the project directory, or pass --cdk-json PATH' });
  }
  return loadConfig((key) => context[key], dirname(path));
}
