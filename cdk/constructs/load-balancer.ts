import { Duration, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import { Construct } from 'constructs';
import type { Flavor } from '../../lib/flavor';
import { PUPPET_SERVER_PORT, type TargetGroupSettings, targetGroupSettings } from '../target-groups';

export { PUPPET_SERVER_PORT };

export interface LoadBalancerProps {
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  readonly internetFacing: boolean;
  /** Networks of the Puppet agents that talk to the compile masters. */
  readonly agentCidrs: string[];
  readonly deregistrationDelaySeconds: number;
  /** Decides which ports exist: 8142 (PCP broker) only on PE. */
  readonly flavor: Flavor;
}

/**
 * The one name every agent uses: TCP pass-through on 8140 (Puppet Server) and, on PE, 8142 (PCP
 * broker), so TLS still ends on the compile masters with certificates that carry this NLB's DNS name.
 */
export class CompileMasterLoadBalancer extends Construct {
  readonly loadBalancer: elbv2.NetworkLoadBalancer;
  /** Every listener's port and target group, keyed by the settings' id (PuppetServer, PcpBroker). */
  readonly targetGroups: ReadonlyMap<TargetGroupSettings['id'], { readonly port: number; readonly targets: elbv2.NetworkTargetGroup }>;

  constructor(scope: Construct, id: string, props: LoadBalancerProps) {
    super(scope, id);

    // A security group can only be attached to an NLB when it is created, so it is here from the
    // start; the instances admit the NLB by this group rather than by agent CIDRs.
    const securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'Compile-master NLB: Puppet agents in, compile masters out',
      allowAllOutbound: false,
    });
    const settings = targetGroupSettings(props);
    for (const cidr of props.agentCidrs) {
      for (const { port } of settings) {
        securityGroup.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(port), `Puppet agents to ${port}`);
      }
    }

    this.loadBalancer = new elbv2.NetworkLoadBalancer(this, 'Resource', {
      vpc: props.vpc,
      vpcSubnets: props.subnets,
      internetFacing: props.internetFacing,
      securityGroups: [securityGroup],
      crossZoneEnabled: true,
    });
    Validations.of(this.loadBalancer).acknowledge({
      id: 'AwsSolutions-ELB2',
      reason:
        'NLB access logs only record TLS listeners; both listeners are TCP pass-through and Puppet Server logs each request itself.',
    });

    this.targetGroups = new Map(settings.map((group) => [group.id, { port: group.port, targets: this.addPort(group, props) }]));
  }

  private addPort(settings: TargetGroupSettings, props: LoadBalancerProps): elbv2.NetworkTargetGroup {
    const { id, port, healthCheck: check } = settings;
    const targets = new elbv2.NetworkTargetGroup(this, `${id}Targets`, {
      vpc: props.vpc,
      port,
      protocol: elbv2.Protocol.TCP,
      // Auto Scaling registers instances, never IPs.
      targetType: elbv2.TargetType.INSTANCE,
      deregistrationDelay: Duration.seconds(settings.deregistrationDelaySeconds),
      connectionTermination: settings.connectionTermination,
      healthCheck: {
        protocol: elbv2.Protocol[check.protocol],
        path: check.path,
        healthyHttpCodes: check.healthyHttpCodes,
        port: String(check.port),
        interval: Duration.seconds(check.intervalSeconds),
        timeout: Duration.seconds(check.timeoutSeconds),
        healthyThresholdCount: check.healthyThreshold,
        unhealthyThresholdCount: check.unhealthyThreshold,
      },
    });
    // By default an NLB resets the connections of a target that turns unhealthy: agents still
    // being served by a draining compile master would fail. Kept for this long instead.
    targets.setAttribute('target_health_state.unhealthy.connection_termination.enabled', 'false');
    targets.setAttribute('target_health_state.unhealthy.draining_interval_seconds', String(settings.unhealthyDrainingSeconds));
    this.loadBalancer.addListener(`${id}Listener`, {
      port,
      protocol: elbv2.Protocol.TCP,
      defaultTargetGroups: [targets],
    });
    return targets;
  }
}
