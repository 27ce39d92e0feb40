import { dirname, join } from 'node:path';
import { CustomResource, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as efs from 'aws-cdk-lib/aws-efs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import type * as z from 'zod';
import { NODE_RUNTIME_BINARY_PATH, NODE_RUNTIME_MANIFEST_PATH } from '../../lambdas/efs-seeder/content';
import type { AgentConfigSchema } from '../../node-agent/src/config';
import { SOURCE_MAPS_ENVIRONMENT, typescriptFunction } from '../lambda-defaults';
import { acknowledgeLambdaExecutionPolicies } from '../nag';
import { type NodeArchitecture, nodeRuntime, runtimeManifest } from '../node-runtime';

/** Non-secret node-agent configuration, written as config/agent.json: what the agent's own schema takes. */
export type AgentConfig = z.input<typeof AgentConfigSchema>;

export interface EfsContentWriterProps {
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  readonly accessPoint: efs.IAccessPoint;
  readonly agentConfig: AgentConfig;
  /** The primary's public CA certificate (PEM); without it the node agent refuses to enroll. */
  readonly caCertificate: string | undefined;
  /** The vendor's public package-signing key (ASCII-armored); bootstrap.sh trusts no other. */
  readonly packageSigningKey: string | undefined;
  /** The instances' architecture: the Node.js runtime shipped for the node agent is built for it. */
  readonly nodeArchitecture: NodeArchitecture;
}

const LAMBDA_MOUNT_PATH = '/mnt/compile-masters';

/**
 * Writes the node agent, the Node.js runtime it runs on, its units (boot step, CRL refresher,
 * readiness daemon), the bootstrap script and the public configuration onto EFS at deploy time,
 * through the same access point the instances mount read-only. The node agent is built from
 * source at synth and the runtime comes from the lock file's package, so nothing has to be built
 * or uploaded beforehand.
 */
export class EfsContentWriter extends Construct {
  constructor(scope: Construct, id: string, props: EfsContentWriterProps) {
    super(scope, id);

    const securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'EFS content writer: NFS to the file system only',
      allowAllOutbound: false,
    });

    // Resolved only when this stack is bundled: another architecture's runtime may have to be
    // fetched, which a synth that skips bundling (unit tests, `cdk synth` of another stack) must not do.
    const runtime = Stack.of(this).bundlingRequired ? nodeRuntime(props.nodeArchitecture) : undefined;

    const writer = new nodejs.NodejsFunction(this, 'Function', {
      ...typescriptFunction('lambdas/efs-seeder/handler.ts', {
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          // The node agent's own build script makes its bundle, so instances run exactly what
          // that script produces; the files land beside the writer's code in its package.
          afterBundling: (inputDir: string, outputDir: string) => {
            const from = (path: string) => shellQuote(join(inputDir, path));
            const to = (path: string) => shellQuote(join(outputDir, 'files', path));
            return [
              `node ${from('scripts/build-node-agent.mjs')}`,
              `mkdir -p ${to('node-agent')}`,
              `cp ${from('dist/node-agent/node-agent.mjs')} ${to('node-agent/node-agent.mjs')}`,
              `cp ${from('node-agent/systemd/compile-master-agent.service')} ${to('node-agent/compile-master-agent.service')}`,
              `cp ${from('node-agent/systemd/compile-master-crl-refresh.service')} ${to('node-agent/compile-master-crl-refresh.service')}`,
              `cp ${from('node-agent/systemd/compile-master-readiness.service')} ${to('node-agent/compile-master-readiness.service')}`,
              `cp ${from('node-agent/bootstrap.sh')} ${to('bootstrap.sh')}`,
              ...(runtime
                ? [
                    `mkdir -p ${to(dirname(NODE_RUNTIME_BINARY_PATH))}`,
                    `cp ${shellQuote(runtime.binary)} ${to(NODE_RUNTIME_BINARY_PATH)}`,
                    `printf '%s' ${shellQuote(runtimeManifest(runtime))} > ${to(NODE_RUNTIME_MANIFEST_PATH)}`,
                  ]
                : []),
            ];
          },
        },
      }),
      memorySize: 256,
      // Most of it is the runtime's copy (~120 MB) onto EFS, streamed, not held in memory.
      timeout: Duration.minutes(5),
      vpc: props.vpc,
      vpcSubnets: props.subnets,
      securityGroups: [securityGroup],
      filesystem: lambda.FileSystem.fromEfsAccessPoint(props.accessPoint, LAMBDA_MOUNT_PATH),
      environment: { CONTENT_ROOT: LAMBDA_MOUNT_PATH, ...SOURCE_MAPS_ENVIRONMENT },
      logGroup: new logs.LogGroup(this, 'Logs', {
        retention: logs.RetentionDays.ONE_MONTH,
        removalPolicy: RemovalPolicy.DESTROY,
      }),
    });

    const provider = new cr.Provider(this, 'Provider', {
      onEventHandler: writer,
      logGroup: new logs.LogGroup(this, 'ProviderLogs', {
        retention: logs.RetentionDays.ONE_MONTH,
        removalPolicy: RemovalPolicy.DESTROY,
      }),
    });

    // The asset hash changes with any byte of the bundle (node agent, unit, bootstrap, writer),
    // so an update re-writes the files exactly when something in them changed.
    const bundleHash = (writer.node.findChild('Code') as s3assets.Asset).assetHash;
    new CustomResource(this, 'Resource', {
      serviceToken: provider.serviceToken,
      resourceType: 'Custom::CompileMasterEfsContent',
      properties: {
        AgentConfig: Stack.of(this).toJsonString(props.agentConfig),
        ContentHash: bundleHash,
        ...(props.caCertificate ? { CaCertificate: props.caCertificate } : {}),
        ...(props.packageSigningKey ? { PackageSigningKey: props.packageSigningKey } : {}),
      },
    });

    acknowledgeLambdaExecutionPolicies(writer.role!, 'the EFS content writer', true);
    Validations.of(writer.role!).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'Added by lambda.FileSystem.fromEfsAccessPoint: ClientMount on "*" is conditioned on this access point\'s ARN.',
    });
    const framework = (provider.node.findChild('framework-onEvent') as lambda.Function).role!;
    acknowledgeLambdaExecutionPolicies(framework, 'the CDK custom-resource provider framework', false);
    Validations.of(framework).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${Stack.of(this).getLogicalId(writer.node.defaultChild as lambda.CfnFunction)}.Arn>:*]`,
      reason: 'The provider framework may invoke any version of the content writer function, and only that function.',
    });
  }
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`;
}
