import { Duration, Stack, Tags, Validations } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct, type IDependable } from 'constructs';
import { type AwsCall, efsMount } from '../../lib/aws-calls';
import { FLAVOR } from '../../lib/flavor';
import { READINESS_CHECK } from '../../lib/readiness-check';
import type { CompileMasterConfig } from '../config';
import { allowDnsEgress } from '../dns-egress';
import { PLATFORM, efsUtilsInstall, type Platform } from '../platform';
import { PCP_BROKER_PORT } from '../target-groups';
import { type CompileMasterLoadBalancer, PUPPET_SERVER_PORT } from './load-balancer';
import type { SharedStorage } from './shared-storage';

/** The instances' Name tag, set at launch. */
export function compileMasterName(stackName: string): string {
  return `${stackName}-compile-master`;
}

/** Where the instances mount the EFS access point (bootstrap.sh lives at its root). */
export const INSTANCE_MOUNT_PATH = '/mnt/compile-masters';

/**
 * What a compile master opens towards the primary: Puppet Server/CA and PuppetDB, plus the CA and
 * PuppetDB ports configured for the stack where they differ (the node agent uses the CA's). On PE,
 * after its firewall table for compilers, also the PCP broker, node classifier (catalog
 * compilation asks it) and PE-PostgreSQL (the compiler's PuppetDB writes there); the orchestrator
 * only when the controller runs the primary through it.
 */
function primaryPorts(settings: GroupSettings): Map<number, string> {
  const pe = FLAVOR[settings.flavor].pcpBroker;
  const orchestrator = settings.primaryRun === 'orchestrator';
  // In this order so that a PE stack's rules stay where they were.
  const ports: [port: number, what: string, wanted: boolean][] = [
    [8140, 'Puppet Server', true],
    [8081, 'PuppetDB', true],
    [PCP_BROKER_PORT, 'PCP broker', pe],
    [8143, 'orchestrator', orchestrator],
    [4433, 'node classifier', pe],
    [5432, 'PE-PostgreSQL', pe],
    [settings.caPort, 'Puppet CA', true],
    [settings.puppetdbPort, 'PuppetDB', true],
    [settings.orchestratorPort, 'orchestrator', orchestrator],
  ];
  return new Map(ports.filter(([, , wanted]) => wanted).map(([port, what]) => [port, what]));
}

export type GroupSettings = Pick<
  CompileMasterConfig,
  | 'instanceType'
  | 'instanceTypes'
  | 'spot'
  | 'onDemandBaseCapacity'
  | 'onDemandPercentageAboveBaseCapacity'
  | 'amiId'
  | 'amiSsmParameter'
  | 'rootVolumeGiB'
  | 'rootDeviceName'
  | 'minSize'
  | 'maxSize'
  | 'desiredCapacity'
  | 'cpuTargetPercent'
  | 'heartbeatTimeoutSeconds'
  | 'healthCheckGracePeriodSeconds'
  | 'primaryCidr'
  | 'caPort'
  | 'puppetdbPort'
  | 'orchestratorPort'
  | 'flavor'
  | 'primaryRun'
  | 'dnsResolverCidrs'
  | 'platform'
  | 'architecture'
>;

export interface CompileMasterGroupProps {
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  readonly groupName: string;
  readonly launchHookName: string;
  readonly terminateHookName: string;
  readonly settings: GroupSettings;
  readonly loadBalancer: CompileMasterLoadBalancer;
  readonly storage: SharedStorage;
  /** The controller's queue: the node agent's only AWS permission is to send to it. */
  readonly queue: sqs.IQueue;
  /** Checks a new node's Puppet Server before its launch action continues. */
  readonly controller: ec2.IConnectable;
  /**
   * Must exist before the first instance boots: the EFS content it bootstraps from, and the
   * controller that completes its launch action.
   */
  readonly launchPrerequisites: IDependable[];
}

/** The compile masters: an Auto Scaling group whose lifecycle the controller drives. */
export class CompileMasterGroup extends Construct {
  readonly autoScalingGroup: autoscaling.AutoScalingGroup;
  /** Its unique id is what SQS names as the sender of each instance's messages. */
  readonly instanceRole: iam.Role;

  constructor(scope: Construct, id: string, props: CompileMasterGroupProps) {
    super(scope, id);
    const { settings } = props;

    const securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'Compile masters: agents through the NLB, the primary, EFS and HTTPS out',
      allowAllOutbound: false,
    });
    for (const { port } of props.loadBalancer.targetGroups.values()) {
      // Client IPs are preserved, so this admits the agents by the NLB's group, not by address.
      props.loadBalancer.loadBalancer.connections.allowTo(securityGroup, ec2.Port.tcp(port), `NLB to ${port}`);
    }
    props.loadBalancer.loadBalancer.connections.allowTo(
      securityGroup,
      ec2.Port.tcp(READINESS_CHECK.port),
      'NLB health checks to the node agent\'s readiness daemon',
    );
    props.controller.connections.allowTo(
      securityGroup,
      ec2.Port.tcp(PUPPET_SERVER_PORT),
      'Controller checks a new node\'s Puppet Server',
    );
    for (const [port, what] of primaryPorts(settings)) {
      securityGroup.addEgressRule(ec2.Peer.ipv4(settings.primaryCidr), ec2.Port.tcp(port), `${what} on the primary`);
    }
    // Packages (OS, puppet-agent from the primary's or Puppet's repositories) and SQS.
    securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS: packages and AWS APIs');
    if (PLATFORM[settings.platform].packageManager === 'apt') {
      // Canonical's images point apt at http://<region>.ec2.archive.ubuntu.com and
      // security.ubuntu.com; apt verifies the signed Release files, not the transport.
      securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(80), 'HTTP: Ubuntu archives (signed metadata)');
    }
    // The primary, EFS, package mirrors and AWS endpoints are all reached by name.
    allowDnsEgress(securityGroup, settings.dnsResolverCidrs);

    const role = new iam.Role(this, 'InstanceRole', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: 'Compile masters: mount the EFS access point read-only and notify the controller; nothing else',
    });
    this.instanceRole = role;
    props.storage.grantReadOnlyMount(role, securityGroup);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [props.queue.queueArn] }),
    );

    const launchTemplate = new ec2.LaunchTemplate(this, 'LaunchTemplate', {
      instanceType: new ec2.InstanceType(settings.instanceType),
      machineImage: machineImage(settings),
      userData: userData(props.storage, settings.platform),
      role,
      securityGroup,
      requireImdsv2: true,
      // Only processes on the host itself (efs-utils, the node agent) read instance metadata;
      // one hop keeps containers or forwarded traffic from reaching the role's credentials.
      httpPutResponseHopLimit: 1,
      instanceMetadataTags: false,
      // One-minute CPU metrics let the target-tracking policy react within minutes.
      detailedMonitoring: true,
      blockDevices: [
        {
          deviceName: settings.rootDeviceName,
          volume: ec2.BlockDeviceVolume.ebs(settings.rootVolumeGiB, {
            encrypted: true,
            volumeType: ec2.EbsDeviceVolumeType.GP3,
            deleteOnTermination: true,
          }),
        },
      ],
    });

    this.autoScalingGroup = new autoscaling.AutoScalingGroup(this, 'Resource', {
      vpc: props.vpc,
      vpcSubnets: props.subnets,
      ...purchase(settings, launchTemplate),
      // Known at synth so the controller's IAM, environment and EventBridge rule can name it
      // without referencing the group, which lets the group depend on the controller instead.
      autoScalingGroupName: props.groupName,
      minCapacity: settings.minSize,
      maxCapacity: settings.maxSize,
      // Unset unless configured: a fixed value would reset the size on every deploy.
      desiredCapacity: settings.desiredCapacity,
      // EC2 status checks only: with ELB health a reboot or a Puppet Server restart (3 × 10 s
      // unhealthy) would cost the node. The load balancer still routes only to healthy targets,
      // and the controller replaces a node that stays unhealthy without rebooting (SetInstanceHealth).
      healthChecks: autoscaling.HealthChecks.ec2({ gracePeriod: Duration.seconds(settings.healthCheckGracePeriodSeconds) }),
      // Puppet Server's JIT warm-up burns CPU that says nothing about load.
      defaultInstanceWarmup: Duration.minutes(5),
      groupMetrics: [autoscaling.GroupMetrics.all()],
    });
    // A name an operator recognizes in the console, in place of CDK's construct path; above the
    // group's own Name tag in priority.
    Tags.of(this.autoScalingGroup).add('Name', compileMasterName(Stack.of(this).stackName), { applyToLaunchedInstances: true, priority: 200 });
    for (const { targets } of props.loadBalancer.targetGroups.values()) this.autoScalingGroup.attachToNetworkTargetGroup(targets);
    this.autoScalingGroup.scaleOnCpuUtilization('CpuTarget', {
      targetUtilizationPercent: settings.cpuTargetPercent,
    });

    // Declared in the group itself: hooks added as separate resources are created after the
    // group, so the instances launched with it would never wait for the controller (aws-cdk
    // issue 16356). DefaultResult is explicit because CDK's documented default (CONTINUE) is
    // not what the service applies (ABANDON).
    const heartbeatTimeout = settings.heartbeatTimeoutSeconds;
    (this.autoScalingGroup.node.defaultChild as autoscaling.CfnAutoScalingGroup).lifecycleHookSpecificationList = [
      {
        lifecycleHookName: props.launchHookName,
        lifecycleTransition: autoscaling.LifecycleTransition.INSTANCE_LAUNCHING,
        // An instance the controller never vouched for (not signed, not classified) must not
        // enter service.
        defaultResult: autoscaling.DefaultResult.ABANDON,
        heartbeatTimeout,
      },
      {
        lifecycleHookName: props.terminateHookName,
        lifecycleTransition: autoscaling.LifecycleTransition.INSTANCE_TERMINATING,
        // Termination proceeds either way; the scheduled reconcile purges what was missed.
        defaultResult: autoscaling.DefaultResult.CONTINUE,
        heartbeatTimeout,
      },
    ];
    this.autoScalingGroup.node.addDependency(...props.launchPrerequisites);

    if (settings.spot) {
      Validations.of(this.autoScalingGroup).acknowledge({
        id: 'AwsSolutions-EC26',
        reason:
          "The group launches from the launch template through its mixed instances policy, which the rule does not follow (it reads only the group's own LaunchTemplate); that template's only volume is encrypted.",
      });
    }
    Validations.of(this.autoScalingGroup).acknowledge({
      id: 'AwsSolutions-AS3',
      reason:
        'Launch and terminate are reported through lifecycle hooks to EventBridge and the controller, whose failures raise CloudWatch alarms.',
    });
  }
}

/**
 * With spot, a mixed instances policy: the first `onDemandBaseCapacity` instances on demand (the
 * launch template's type first), the rest spot at `onDemandPercentageAboveBaseCapacity` on demand,
 * spot from the pools least likely to be interrupted at a low price, and capacity rebalancing so
 * that an at-risk spot instance is replaced before it is interrupted. Either way an instance
 * leaves through the terminate hook, and the controller purges it (README, "Spot capacity").
 * Without spot, the launch template alone: an on-demand group of its type.
 */
function purchase(settings: GroupSettings, launchTemplate: ec2.LaunchTemplate): Pick<autoscaling.AutoScalingGroupProps, 'launchTemplate' | 'mixedInstancesPolicy' | 'capacityRebalance'> {
  if (!settings.spot) return { launchTemplate };
  return {
    mixedInstancesPolicy: {
      launchTemplate,
      launchTemplateOverrides: settings.instanceTypes.map((type) => ({ instanceType: new ec2.InstanceType(type) })),
      instancesDistribution: {
        onDemandAllocationStrategy: autoscaling.OnDemandAllocationStrategy.PRIORITIZED,
        onDemandBaseCapacity: settings.onDemandBaseCapacity,
        onDemandPercentageAboveBaseCapacity: settings.onDemandPercentageAboveBaseCapacity,
        spotAllocationStrategy: autoscaling.SpotAllocationStrategy.PRICE_CAPACITY_OPTIMIZED,
      },
    },
    capacityRebalance: true,
  };
}

function machineImage(settings: GroupSettings): ec2.IMachineImage {
  const { amiId, amiSsmParameter } = settings;
  if (amiId) {
    return {
      getImage: () => ({ imageId: amiId, osType: ec2.OperatingSystemType.LINUX, userData: ec2.UserData.forLinux() }),
    };
  }
  if (amiSsmParameter) return ec2.MachineImage.fromSsmParameter(amiSsmParameter, { os: ec2.OperatingSystemType.LINUX });
  // Resolved by CloudFormation from the public SSM parameter at deploy time: works offline.
  const image = PLATFORM[settings.platform].defaultImage;
  switch (image.source) {
    case 'amazon-linux-2023':
      return ec2.MachineImage.latestAmazonLinux2023({
        cpuType: settings.architecture === 'arm64' ? ec2.AmazonLinuxCpuType.ARM_64 : ec2.AmazonLinuxCpuType.X86_64,
      });
    case 'ssm':
      return ec2.MachineImage.fromSsmParameter(image.parameter(settings.architecture), { os: ec2.OperatingSystemType.LINUX });
    case 'none':
      throw new Error(`platform ${settings.platform} has no default image (cdk/config.ts requires amiId or amiSsmParameter)`);
  }
}

/**
 * The user data's mount, for the IAM simulation suite: EFS authorizes it as ClientMount through
 * the access point over a mount target; without ClientWrite the mount is read-only.
 */
export const INSTANCE_MOUNT_CALLS: readonly AwsCall[] = [efsMount('elasticfilesystem:ClientMount')];

/**
 * Mounts the EFS access point read-only with efs-utils (TLS in transit, IAM authorization with
 * the instance role, which needs IMDSv2 credentials), then hands over to bootstrap.sh. No secret
 * appears here: the instance has none to be given.
 */
function userData(storage: SharedStorage, platform: Platform): ec2.UserData {
  const fileSystemId = storage.fileSystem.fileSystemId;
  const accessPointId = storage.accessPoint.accessPointId;
  const data = ec2.UserData.forLinux();
  data.addCommands(
    'set -euo pipefail',
    `MOUNT=${INSTANCE_MOUNT_PATH}`,
    // An image with efs-utils baked in skips this (cdk/platform.ts says where it comes from).
    'if ! command -v mount.efs >/dev/null 2>&1; then',
    ...efsUtilsInstall(platform).map((line) => `  ${line}`),
    'fi',
    'mkdir -p "$MOUNT"',
    // In fstab so the mount comes back after a reboot (the node agent survives reboots).
    `grep -q " $MOUNT efs " /etc/fstab || echo "${fileSystemId}:/ $MOUNT efs _netdev,nofail,noresvport,tls,iam,accesspoint=${accessPointId},ro 0 0" >> /etc/fstab`,
    // Mount targets' DNS names can lag their creation by a minute or two.
    'for attempt in $(seq 1 30); do mountpoint -q "$MOUNT" && break; mount "$MOUNT" || sleep 10; done',
    'mountpoint -q "$MOUNT"',
    'bash "$MOUNT/bootstrap.sh"',
  );
  return data;
}
