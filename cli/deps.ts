import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { IAMClient } from '@aws-sdk/client-iam';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { readFileSync } from 'node:fs';
import { SDK_MAX_ATTEMPTS } from '../lambdas/controller/aws/call';
import { ConfigError } from '../lib/errors';

export interface AwsClients {
  cloudFormation: CloudFormationClient;
  secretsManager: SecretsManagerClient;
  autoScaling: AutoScalingClient;
  ec2: EC2Client;
  dynamo: DynamoDBDocumentClient;
  elb: ElasticLoadBalancingV2Client;
  /** doctor only: ssm:DescribeInstanceInformation about the primary. */
  ssm: SSMClient;
  /** doctor only: iam:SimulatePrincipalPolicy of the controller's role on the primary. */
  iam: IAMClient;
}

/** Everything a command touches outside itself: tests pass their own. */
export interface CliDeps {
  write(text: string): void;
  warn(text: string): void;
  readStdin(): Promise<string>;
  aws(region: string | undefined): AwsClients;
  now(): Date;
  /** Whether to highlight with ANSI colours (a terminal, and NO_COLOR unset). */
  color: boolean;
}

/** Region and credentials come from the usual AWS environment and profile chain when not given. */
export function awsClients(region: string | undefined): AwsClients {
  const options = { maxAttempts: SDK_MAX_ATTEMPTS, ...(region ? { region } : {}) };
  return {
    cloudFormation: new CloudFormationClient(options),
    secretsManager: new SecretsManagerClient(options),
    autoScaling: new AutoScalingClient(options),
    ec2: new EC2Client(options),
    dynamo: DynamoDBDocumentClient.from(new DynamoDBClient(options)),
    elb: new ElasticLoadBalancingV2Client(options),
    ssm: new SSMClient(options),
    iam: new IAMClient(options),
  };
}

export function processDeps(): CliDeps {
  return {
    write: (text) => process.stdout.write(text),
    warn: (text) => process.stderr.write(text),
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
    aws: awsClients,
    now: () => new Date(),
    color: process.stdout.isTTY === true && !process.env.NO_COLOR,
  };
}

/**
 * Secret material comes from files or stdin ("-"), never from argv, where it would land in shell
 * history and `ps`. Errors name the file, never its content.
 */
export async function readSecretInputs<K extends string>(files: Record<K, string>, deps: Pick<CliDeps, 'readStdin'>): Promise<Record<K, string>> {
  const fromStdin = Object.entries(files).filter(([, path]) => path === '-');
  if (fromStdin.length > 1) throw new ConfigError(`Only one input can come from stdin ("-"); got ${fromStdin.map(([key]) => `--${key}`).join(', ')}`);
  const read = async ([key, path]: [K, string]): Promise<[K, string]> => {
    if (path === '-') return [key, await deps.readStdin()];
    try {
      return [key, readFileSync(path, 'utf8')];
    } catch (cause) {
      throw new ConfigError(`Cannot read --${key} ${path}`, { cause, hint: 'pass the path of a file you can read, or - for stdin' });
    }
  };
  return Object.fromEntries(await Promise.all((Object.entries(files) as [K, string][]).map(read))) as Record<K, string>;
}
