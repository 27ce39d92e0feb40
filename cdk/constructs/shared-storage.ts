import { RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as efs from 'aws-cdk-lib/aws-efs';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import type { NodeArchitecture } from '../node-runtime';
import { type AgentConfig, EfsContentWriter } from './efs-content-writer';

export interface SharedStorageProps {
  readonly vpc: ec2.IVpc;
  /** The instances' subnets: one mount target each. */
  readonly subnets: ec2.SubnetSelection;
  readonly agentConfig: AgentConfig;
  readonly caCertificate: string | undefined;
  /** The vendor's public package-signing key, when puppet-agent comes from its repository. */
  readonly packageSigningKey: string | undefined;
  /** The instances' architecture, for the node agent's Node.js runtime. */
  readonly nodeArchitecture: NodeArchitecture;
}

/**
 * EFS carrying what every compile master needs at boot (node agent and its Node.js runtime,
 * units, bootstrap script, public configuration). Nothing on it is secret, and nothing on it is unique: the stack
 * rewrites all of it on every deploy.
 */
export class SharedStorage extends Construct {
  readonly fileSystem: efs.FileSystem;
  readonly accessPoint: efs.AccessPoint;
  readonly content: EfsContentWriter;

  constructor(scope: Construct, id: string, props: SharedStorageProps) {
    super(scope, id);

    this.fileSystem = new efs.FileSystem(this, 'FileSystem', {
      vpc: props.vpc,
      vpcSubnets: props.subnets,
      encrypted: true,
      securityGroup: new ec2.SecurityGroup(this, 'SecurityGroup', {
        vpc: props.vpc,
        description: 'Compile-master EFS: NFS from the compile masters and the content writer only',
        allowAllOutbound: false,
      }),
      // Any file system policy replaces EFS's allow-everyone default, so clients without IAM
      // authorization (anonymous NFS) are refused; IAM grants below decide who mounts and writes.
      fileSystemPolicy: new iam.PolicyDocument({
        statements: [
          new iam.PolicyStatement({
            effect: iam.Effect.DENY,
            principals: [new iam.AnyPrincipal()],
            actions: ['elasticfilesystem:ClientMount', 'elasticfilesystem:ClientWrite', 'elasticfilesystem:ClientRootAccess'],
            conditions: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ],
      }),
      // Regenerated from the stack on every deploy, so there is nothing to keep.
      removalPolicy: RemovalPolicy.DESTROY,
    });

    this.accessPoint = this.fileSystem.addAccessPoint('AccessPoint', {
      path: '/compile-masters',
      // Every client acts as this owner through the access point, whatever its local uid.
      posixUser: { uid: '1000', gid: '1000' },
      createAcl: { ownerUid: '1000', ownerGid: '1000', permissions: '755' },
    });

    this.content = new EfsContentWriter(this, 'Content', {
      vpc: props.vpc,
      subnets: props.subnets,
      accessPoint: this.accessPoint,
      agentConfig: props.agentConfig,
      caCertificate: props.caCertificate,
      packageSigningKey: props.packageSigningKey,
      nodeArchitecture: props.nodeArchitecture,
    });
  }

  /** Mount through the access point only, over a mount target, and never write. */
  grantReadOnlyMount(grantee: iam.IGrantable, from: ec2.IConnectable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['elasticfilesystem:ClientMount'],
        resources: [this.fileSystem.fileSystemArn],
        conditions: {
          StringEquals: { 'elasticfilesystem:AccessPointArn': this.accessPoint.accessPointArn },
          Bool: { 'elasticfilesystem:AccessedViaMountTarget': 'true' },
        },
      }),
    );
    this.fileSystem.connections.allowDefaultPortFrom(from, 'NFS from the compile masters');
  }
}
