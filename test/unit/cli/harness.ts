import { awsClients, type CliDeps } from '../../../cli/deps';
import { run } from '../../../cli/main';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs one command line as `npx compile-masters` would, with output captured. AWS clients are the
 * real SDK classes: tests intercept them with aws-sdk-client-mock.
 */
export async function runCli(argv: string[], options: { stdin?: string; now?: Date } = {}): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const deps: CliDeps = {
    write: (text) => (stdout += text),
    warn: (text) => (stderr += text),
    readStdin: async () => options.stdin ?? '',
    aws: () => awsClients('us-west-2'),
    now: () => options.now ?? new Date(),
    color: false,
  };
  const code = await run(argv, deps);
  return { code, stdout, stderr };
}

export const STACK = 'CompileMasters';
export const ARNS = {
  clientCert: 'arn:aws:secretsmanager:us-west-2:123456789012:secret:CompileMasters/client-cert-AbCdEf',
  rbacToken: 'arn:aws:secretsmanager:us-west-2:123456789012:secret:CompileMasters/rbac-token-AbCdEf',
};

/** DescribeStacks' answer for a deployed compile-master stack. */
export const STACK_OUTPUTS = {
  Stacks: [
    {
      StackName: STACK,
      StackStatus: 'UPDATE_COMPLETE' as const,
      CreationTime: new Date('2026-01-01T00:00:00Z'),
      Outputs: [
        { OutputKey: 'LoadBalancerDnsName', OutputValue: 'compile-masters-0123456789abcdef.elb.us-west-2.amazonaws.com' },
        { OutputKey: 'LifecycleQueueUrl', OutputValue: 'https://sqs.us-west-2.amazonaws.com/123456789012/compile-masters-lifecycle' },
        { OutputKey: 'ClientCertSecretArn', OutputValue: ARNS.clientCert },
        { OutputKey: 'RbacTokenSecretArn', OutputValue: ARNS.rbacToken },
        { OutputKey: 'FileSystemId', OutputValue: 'fs-0123456789abcdef0' },
        { OutputKey: 'RegistryTableName', OutputValue: 'CompileMasters-Registry' },
        { OutputKey: 'AutoScalingGroupName', OutputValue: 'CompileMasters-compile-masters' },
      ],
    },
  ],
};

/** DescribeStacks' answer for a stack of another flavor: no token secret without the orchestrator. */
export function stackOutputs(flavor: 'pe' | 'oss' | 'openvox', primaryRun: 'orchestrator' | 'ssm' | 'none'): typeof STACK_OUTPUTS {
  const [stack] = STACK_OUTPUTS.Stacks;
  const outputs = stack!.Outputs.filter((output) => primaryRun === 'orchestrator' || output.OutputKey !== 'RbacTokenSecretArn');
  return {
    Stacks: [
      {
        ...stack!,
        Outputs: [...outputs, { OutputKey: 'Flavor', OutputValue: flavor }, { OutputKey: 'PrimaryRun', OutputValue: primaryRun }, { OutputKey: 'ControllerRoleArn', OutputValue: CONTROLLER_ROLE_ARN }],
      },
    ],
  };
}

export const CONTROLLER_ROLE_ARN = 'arn:aws:iam::123456789012:role/CompileMasters-LifecycleControllerFunctionServiceRo-AbCdEf';

export const TARGET_GROUPS = [
  'arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/puppet-8140/0123456789abcdef',
  'arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/pcp-8142/fedcba9876543210',
];

export const STACK_RESOURCES = {
  StackResourceSummaries: [
    ...TARGET_GROUPS.map((arn, index) => ({
      LogicalResourceId: `TargetGroup${index}`,
      PhysicalResourceId: arn,
      ResourceType: 'AWS::ElasticLoadBalancingV2::TargetGroup',
      LastUpdatedTimestamp: new Date(),
      ResourceStatus: 'CREATE_COMPLETE' as const,
    })),
    { LogicalResourceId: 'Queue', PhysicalResourceId: 'https://sqs…', ResourceType: 'AWS::SQS::Queue', LastUpdatedTimestamp: new Date(), ResourceStatus: 'CREATE_COMPLETE' as const },
  ],
};
