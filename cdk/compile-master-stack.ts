import { Annotations, Aws, CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { FLAVOR } from '../lib/flavor';
import { nodeAgentWaits } from '../lib/launch-budget';
import { READINESS_CHECK, drainSeconds, inFlightWaitSeconds } from '../lib/readiness-check';
import { VENDOR_REPOSITORY } from './agent-install';
import { peRepoClassNeeded } from './platform';
import type { CompileMasterConfig } from './config';
import type { AgentConfig } from './constructs/efs-content-writer';
import { CompileMasterGroup } from './constructs/compile-master-group';
import { ControllerSecrets } from './constructs/controller-secrets';
import { LifecycleController, QUEUE_VISIBILITY_TIMEOUT } from './constructs/lifecycle-controller';
import { LifecycleQueue } from './constructs/lifecycle-queue';
import { CompileMasterLoadBalancer, PUPPET_SERVER_PORT } from './constructs/load-balancer';
import { Monitoring } from './constructs/monitoring';
import { Network } from './constructs/network';
import { routedCidrs } from './reachability';
import { targetGroupSettings } from './target-groups';
import { SharedStorage } from './constructs/shared-storage';

export const LAUNCH_HOOK_NAME = 'compile-master-launching';
export const TERMINATE_HOOK_NAME = 'compile-master-terminating';

export interface CompileMasterStackProps extends StackProps {
  readonly config: CompileMasterConfig;
}

/** The whole AWS side of the elastic compile tier. */
export class CompileMasterStack extends Stack {
  constructor(scope: Construct, id: string, props: CompileMasterStackProps) {
    super(scope, id, props);
    const { config } = props;
    // Stack names are unique per account and region, so this is too.
    const groupName = `${this.stackName}-compile-masters`;
    const serviceName = `${this.stackName}-lifecycle-controller`;

    if (config.exampleKeysInUse.length > 0) {
      Annotations.of(this).addWarningV2(
        'compile-masters:example-config',
        `Example configuration in use (${config.exampleKeysInUse.join(', ')} not set): fine for a synth, ` +
          'not for a deploy. Without primaryCaCertificateFile the node agent refuses to enroll; without ' +
          'agentRepositoryKeyFile the bootstrap installs no puppet-agent from a repository; the example ' +
          'primaryInstanceIds names no instance of yours.',
      );
    }

    const mismatch = config.flavor === 'pe' ? peRepoClassNeeded(config) : undefined;
    if (mismatch) {
      Annotations.of(this).addWarningV2(
        'compile-masters:platform-differs',
        `The compile masters (${mismatch.compilers}) differ from the primary (${mismatch.primary}): PE supports ` +
          `compilers only on the primary's OS and architecture, and install.bash serves them only once the PE Master ` +
          `node group has ${mismatch.peRepoClass} (npx compile-masters primary-setup says how).`,
      );
    }

    const network = new Network(this, 'Network', {
      vpcId: config.vpcId,
      privateSubnetIds: config.privateSubnetIds,
      loadBalancerSubnetIds: config.nlbSubnetIds,
      vpcCidr: config.vpcCidr,
      internetFacingLoadBalancer: config.nlbScheme === 'internet-facing',
      primaryRoute: config.primaryRoute,
      routedCidrs: routedCidrs(config),
      mustReach: [config.primaryCidr, ...config.dnsResolverCidrs],
    });

    const loadBalancer = new CompileMasterLoadBalancer(this, 'LoadBalancer', {
      vpc: network.vpc,
      subnets: network.loadBalancerSubnets,
      internetFacing: config.nlbScheme === 'internet-facing',
      agentCidrs: config.agentCidrs,
      deregistrationDelaySeconds: config.deregistrationDelaySeconds,
      flavor: config.flavor,
    });
    const nlbDnsName = loadBalancer.loadBalancer.loadBalancerDnsName;

    const lifecycleQueue = new LifecycleQueue(this, 'LifecycleQueue', {
      groupName,
      reconcileInterval: Duration.minutes(config.reconcileIntervalMinutes),
      visibilityTimeout: QUEUE_VISIBILITY_TIMEOUT,
    });

    const storage = new SharedStorage(this, 'SharedStorage', {
      vpc: network.vpc,
      subnets: network.privateSubnets,
      caCertificate: config.primaryCaCertificate,
      packageSigningKey: config.agentRepositoryKey,
      nodeArchitecture: config.architecture,
      agentConfig: {
        primaryServer: config.primaryHostname,
        caPort: config.caPort,
        caCertPath: '/etc/compile-master-agent/ca.pem',
        queueUrl: lifecycleQueue.queue.queueUrl,
        region: Aws.REGION,
        extensions: { [config.roleExtension.name]: config.roleExtension.value },
        dnsAltNames: [nlbDnsName, ...config.dnsAltNames],
        puppetBin: '/opt/puppetlabs/bin/puppet',
        agentInstall: agentInstall(config),
        localServerService: FLAVOR[config.flavor].serverService,
        confdir: '/etc/puppetlabs/puppet',
        ssldir: '/etc/puppetlabs/puppet/ssl',
        localServerPort: PUPPET_SERVER_PORT,
        readinessPort: READINESS_CHECK.port,
        drainSeconds: drainSeconds(),
        inFlightWaitSeconds: inFlightWaitSeconds(targetGroupSettings(config)[0].unhealthyDrainingSeconds),
        // The agent's waits fit inside the launch ceiling, past which the controller stops heartbeating.
        timeouts: nodeAgentWaits(config.launchCeilingMinutes * 60),
      },
    });

    const secrets = new ControllerSecrets(this, 'Secrets', {
      clientCertSecretArn: config.clientCertSecretArn,
      rbacTokenSecretArn: config.rbacTokenSecretArn,
      orchestrator: config.primaryRun === 'orchestrator',
    });

    const targetGroups = Object.fromEntries([...loadBalancer.targetGroups].map(([name, { targets }]) => [name, targets]));
    const controller = new LifecycleController(this, 'LifecycleController', {
      vpc: network.vpc,
      subnets: network.privateSubnets,
      queue: lifecycleQueue.queue,
      secrets,
      groupName,
      launchHookName: LAUNCH_HOOK_NAME,
      terminateHookName: TERMINATE_HOOK_NAME,
      loadBalancerDnsName: nlbDnsName,
      puppet: config,
      replaceUnhealthyAfter: Duration.minutes(config.replaceUnhealthyAfterMinutes),
      serviceName,
      metricsNamespace: config.metricsNamespace,
      logLevel: config.logLevel,
      launchCeilingMinutes: config.launchCeilingMinutes,
    });

    const group = new CompileMasterGroup(this, 'CompileMasters', {
      vpc: network.vpc,
      subnets: network.privateSubnets,
      groupName,
      launchHookName: LAUNCH_HOOK_NAME,
      terminateHookName: TERMINATE_HOOK_NAME,
      settings: config,
      loadBalancer,
      storage,
      queue: lifecycleQueue.queue,
      controller: controller.function,
      launchPrerequisites: [storage.content, controller.function, lifecycleQueue],
    });
    // Only a message whose SQS SenderId is `<this role's id>:<instance id>` speaks for that instance.
    controller.trustInstanceRole(group.instanceRole);

    new Monitoring(this, 'Monitoring', {
      controller: controller.function,
      queue: lifecycleQueue.queue,
      deadLetterQueue: lifecycleQueue.deadLetterQueue,
      metricsNamespace: config.metricsNamespace,
      serviceName,
      targetGroups,
      groupName,
      alarmTopicArn: config.alarmTopicArn,
    });

    const output = (id: string, value: string, description: string) =>
      new CfnOutput(this, id, { value, description });
    output('LoadBalancerDnsName', nlbDnsName, 'The dns_alt_names every compile master carries; point agents\' server setting here');
    output('LifecycleQueueUrl', lifecycleQueue.queue.queueUrl, 'Lifecycle controller queue');
    output('ClientCertSecretArn', secrets.clientCert.secretArn, 'Put {"cert","key","ca"} (PEM) of the lifecycle client certificate here');
    if (secrets.rbacToken) output('RbacTokenSecretArn', secrets.rbacToken.secretArn, 'Put the PE RBAC token for orchestrator runs here');
    output('Flavor', config.flavor, 'Which Puppet the site runs: pe, oss or openvox');
    output('PrimaryRun', config.primaryRun, 'How the controller converges the primary: orchestrator, ssm or none');
    output('FileSystemId', storage.fileSystem.fileSystemId, 'EFS with the node agent and bootstrap files');
    // doctor asks IAM's policy simulator whether this role may run the primary's Puppet over SSM.
    if (controller.function.role) output('ControllerRoleArn', controller.function.role.roleArn, "The lifecycle controller's role");
    output('RegistryTableName', controller.registry.tableName, 'Compile-master registry (DynamoDB)');
    output('AutoScalingGroupName', group.autoScalingGroup.autoScalingGroupName, 'The compile-master group');
  }
}

/** Where the bootstrap gets puppet-agent (cdk/agent-install.ts); the key itself travels beside agent.json. */
function agentInstall(config: CompileMasterConfig): AgentConfig['agentInstall'] {
  switch (config.agentSource) {
    case 'primary':
    case 'ami':
      return { source: config.agentSource };
    case 'repository':
      if (config.flavor === 'pe') throw new Error('PE takes puppet-agent from the primary (cdk/config.ts refuses this)');
      return { source: 'repository', package: FLAVOR[config.flavor].agentPackage, ...VENDOR_REPOSITORY[config.flavor][config.platform] };
  }
}
