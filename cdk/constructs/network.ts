import { Annotations, Fn, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { PrimaryRoute } from '../reachability';

export interface NetworkProps {
  /** An existing VPC; without it a new one is built (what an offline synth gets). */
  readonly vpcId?: string;
  readonly privateSubnetIds?: string[];
  readonly loadBalancerSubnetIds?: string[];
  readonly vpcCidr: string;
  readonly internetFacingLoadBalancer: boolean;
  /** New VPC only: the Transit Gateway or peering connection that leads to the primary. */
  readonly primaryRoute?: PrimaryRoute | undefined;
  /** New VPC only: the destinations routed through primaryRoute (reachability.ts's routedCidrs). */
  readonly routedCidrs: readonly string[];
  /** Existing VPC only: what its private subnets must reach, named in the synth warning. */
  readonly mustReach: readonly string[];
}

/**
 * Where everything runs. Instances and Lambdas always sit in private subnets; the load balancer
 * sits there too unless it is internet-facing.
 */
export class Network extends Construct {
  readonly vpc: ec2.IVpc;
  readonly privateSubnets: ec2.SubnetSelection;
  readonly loadBalancerSubnets: ec2.SubnetSelection;

  constructor(scope: Construct, id: string, props: NetworkProps) {
    super(scope, id);

    if (props.vpcId) {
      // fromVpcAttributes rather than fromLookup: no credentials or context cache needed. Every
      // construct is handed explicit subnets, so the VPC object only supplies its id and the
      // region's zones stand in for the subnets' (which are not known without a lookup).
      this.vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', { vpcId: props.vpcId, availabilityZones: Fn.getAzs() });
      const subnets = (ids: string[], prefix: string): ec2.SubnetSelection => ({
        subnets: ids.map((subnetId) => ec2.Subnet.fromSubnetId(this, `${prefix}${subnetId}`, subnetId)),
      });
      this.privateSubnets = subnets(props.privateSubnetIds ?? [], 'Private-');
      this.loadBalancerSubnets = props.loadBalancerSubnetIds
        ? subnets(props.loadBalancerSubnetIds, 'LoadBalancer-')
        : this.privateSubnets;
      Annotations.of(this).addWarningV2(
        'compile-masters:existing-vpc-routes',
        `Existing VPC ${props.vpcId}: synth cannot see its routes. Its private subnets (${(props.privateSubnetIds ?? []).join(', ')}) ` +
          `must route to ${props.mustReach.join(', ')} (a Transit Gateway, peering, VPN or Direct Connect route), and the primary ` +
          'must route back and admit them. Check it from a host in those subnets with `npx compile-masters doctor --stack <stack>`: ' +
          'its "CA reachable" and "PuppetDB reachable" checks use the ports the controller uses.',
      );
      Validations.of(this).acknowledge(
        {
          id: 'Annotation::@aws-cdk/aws-ec2:vpcAttributeIsListTokenavailabilityZones',
          reason: 'Every construct is given explicit subnets; nothing selects subnets or zones from the VPC object.',
        },
        {
          id: 'Annotation::@aws-cdk/aws-ec2:noSubnetRouteTableId',
          reason: 'Nothing in this stack reads or changes the subnets\' route tables.',
        },
      );
      return;
    }

    const flowLogs = new logs.LogGroup(this, 'FlowLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr(props.vpcCidr),
      maxAzs: 2,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 },
      ],
      flowLogs: {
        all: { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs), trafficType: ec2.FlowLogTrafficType.ALL },
      },
    });
    this.privateSubnets = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
    if (props.primaryRoute) this.routeToPrimary(this.vpc, props.primaryRoute, props.routedCidrs);
    this.loadBalancerSubnets = props.internetFacingLoadBalancer
      ? { subnetType: ec2.SubnetType.PUBLIC }
      : this.privateSubnets;
  }

  /**
   * The private subnets' routes to the primary (and private resolvers) beside their NAT default
   * route. A Transit Gateway needs this VPC attached first, one subnet per zone; a peering
   * connection already joins the two VPCs.
   */
  private routeToPrimary(vpc: ec2.IVpc, route: PrimaryRoute, destinations: readonly string[]): void {
    const attachment =
      'transitGatewayId' in route
        ? new ec2.CfnTransitGatewayAttachment(this, 'TransitGatewayAttachment', {
            transitGatewayId: route.transitGatewayId,
            vpcId: vpc.vpcId,
            subnetIds: vpc.privateSubnets.map((subnet) => subnet.subnetId),
          })
        : undefined;
    for (const subnet of vpc.privateSubnets) {
      for (const destination of destinations) {
        const cfnRoute = new ec2.CfnRoute(subnet, `RouteTo${destination.replace(/[./]/g, '-')}`, {
          routeTableId: subnet.routeTable.routeTableId,
          destinationCidrBlock: destination,
          ...route,
        });
        // CloudFormation documents it: a route cannot use a Transit Gateway before the VPC is attached.
        if (attachment) cfnRoute.addDependency(attachment);
      }
    }
  }
}
