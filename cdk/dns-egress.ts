import * as ec2 from 'aws-cdk-lib/aws-ec2';

/**
 * Lets a security group whose egress is closed (allowAllOutbound false) ask the operator's own
 * DNS resolvers, on UDP and TCP 53 (TCP for answers too large for UDP).
 *
 * The default needs no rule: the Amazon-provided resolver (Route 53 Resolver at the VPC's base
 * address plus two, and at 169.254.169.253) is not filtered by security groups; AWS documents
 * that security groups cannot block DNS requests to or from it. Only resolvers elsewhere (named
 * by the VPC's DHCP options or baked into an image) are ordinary destinations.
 */
export function allowDnsEgress(securityGroup: ec2.ISecurityGroup, resolverCidrs: readonly string[]): void {
  for (const cidr of resolverCidrs) {
    securityGroup.addEgressRule(ec2.Peer.ipv4(cidr), ec2.Port.udp(53), 'DNS to your resolvers (UDP)');
    securityGroup.addEgressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(53), 'DNS to your resolvers (TCP)');
  }
}
