import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { CONTEXT_EXAMPLES, loadConfig } from '../../../cdk/config';
import { normalize, primaryReachabilityProblem, routedCidrs } from '../../../cdk/reachability';
import { ConfigError } from '../../../lib/errors';
import { REAL_DEPLOY_CONTEXT } from './real-deploy-context';
import { type Cfn, logicalIdByPath, rulesOf, synthStack } from './stack-fixture';

const load = (context: Record<string, unknown>) => loadConfig((key) => context[key]);
const refusal = (context: Record<string, unknown>): ConfigError => {
  try {
    load(context);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected the configuration to be refused');
};

const TGW = '{"transitGatewayId":"tgw-0123456789abcdef0"}';
const PCX = '{"vpcPeeringConnectionId":"pcx-0123456789abcdef0"}';
const EXISTING_VPC = { vpcId: 'vpc-0123456789abcdef0', privateSubnetIds: 'subnet-0123456789abcdef0,subnet-0fedcba9876543210' };

describe('a new VPC that could not reach its primary is refused at synth, naming the fix', () => {
  it.each([
    ['a private primary without a route', { primaryCidr: '10.20.0.15/32' }, 'primaryRoute', 'is needed: primaryCidr 10.20.0.15/32 is a private address outside the new VPC'],
    ['a carrier-grade NAT primary without a route', { primaryCidr: '100.64.3.7/32' }, 'primaryRoute', 'is needed: primaryCidr 100.64.3.7/32 is a private address'],
    ['a primary network that is partly private', { primaryCidr: '172.0.0.0/8' }, 'primaryRoute', 'is needed: primaryCidr 172.0.0.0/8 is a private address'],
    ['a primary inside the new VPC', { primaryCidr: '10.0.4.10/32', primaryRoute: TGW }, 'vpcCidr', 'overlaps primaryCidr 10.0.4.10/32'],
    ['a primary network around the new VPC', { primaryCidr: '10.0.0.0/8', primaryRoute: PCX }, 'vpcCidr', 'overlaps primaryCidr 10.0.0.0/8'],
    ['a private resolver without a route', { dnsResolverCidrs: '10.30.0.2/32' }, 'dnsResolverCidrs', '10.30.0.2/32 is a private address outside the new VPC'],
    ['a resolver network partly inside the VPC', { dnsResolverCidrs: '10.0.0.0/15', primaryRoute: TGW }, 'dnsResolverCidrs', '10.0.0.0/15 lies partly inside vpcCidr 10.0.0.0/16'],
    ['a route with an existing VPC', { ...EXISTING_VPC, primaryCidr: '10.20.0.15/32', primaryRoute: TGW }, 'primaryRoute', 'is only for a new VPC'],
  ])('%s', (_name, context, key, problem) => {
    const error = refusal(context);
    expect(error.message).toContain(`- ${key}: ${problem}`);
    expect(error.message).toContain(`Example: -c ${key}=${CONTEXT_EXAMPLES[key]}`);
    expect(error.hint).toContain('Connectivity');
  });

  it('lists every way out for an unrouted private primary, as -c flags', () => {
    const { message } = refusal({ primaryCidr: '10.20.0.15/32' });
    expect(message).toContain('-c primaryRoute={"transitGatewayId":"tgw-…"}');
    expect(message).toContain('-c primaryRoute={"vpcPeeringConnectionId":"pcx-…"}');
    expect(message).toContain('-c vpcId=vpc-… -c privateSubnetIds=subnet-…,subnet-…');
  });

  it.each([
    ['{"transitGatewayId":"tgw-xyz"}'],
    ['{"vpcPeeringConnectionId":"tgw-0123456789abcdef0"}'],
    ['{"transitGatewayId":"tgw-0123456789abcdef0","vpcPeeringConnectionId":"pcx-0123456789abcdef0"}'],
    ['{}'],
    ['"tgw-0123456789abcdef0"'],
  ])('primaryRoute %s is not one of the two shapes', (value) => {
    expect(refusal({ primaryCidr: '10.20.0.15/32', primaryRoute: value }).message).toContain(
      '- primaryRoute: must be exactly one of {"transitGatewayId":"tgw-…"} or {"vpcPeeringConnectionId":"pcx-…"}',
    );
  });

  it('refuses DNS to every address', () => {
    expect(refusal({ dnsResolverCidrs: '0.0.0.0/0' }).message).toContain('- dnsResolverCidrs.0: would allow DNS to every address');
  });
});

describe('combinations that reach the primary are accepted', () => {
  it.each([
    ['the embedded defaults: a TEST-NET-1 primary through the NAT', {}],
    ['a public primary through the NAT', { primaryCidr: '203.0.113.10/32' }],
    ['a private primary through a Transit Gateway', { primaryCidr: '10.20.0.15/32', primaryRoute: TGW }],
    ['a private primary through peering, from cdk.json', { primaryCidr: '10.20.0.15/32', primaryRoute: { vpcPeeringConnectionId: 'pcx-0123456789abcdef0' } }],
    ['a private primary in an existing VPC', { ...EXISTING_VPC, primaryCidr: '10.20.0.15/32', dnsResolverCidrs: '10.30.0.2/32' }],
    ['a resolver inside the new VPC', { dnsResolverCidrs: '10.0.0.2/32' }],
    ['a public resolver through the NAT', { dnsResolverCidrs: '198.51.100.53/32' }],
  ])('%s', (_name, context) => {
    expect(() => load(context)).not.toThrow();
  });

  it('parses primaryRoute and dnsResolverCidrs from -c strings', () => {
    const config = load({ primaryCidr: '10.20.0.15/32', primaryRoute: TGW, dnsResolverCidrs: '["10.30.0.2/32","10.31.0.2/32"]' });
    expect(config.primaryRoute).toEqual({ transitGatewayId: 'tgw-0123456789abcdef0' });
    expect(config.dnsResolverCidrs).toEqual(['10.30.0.2/32', '10.31.0.2/32']);
    expect(load({}).dnsResolverCidrs).toEqual([]);
  });
});

describe('routedCidrs', () => {
  const base = { vpcCidr: '10.0.0.0/16', primaryCidr: '10.20.0.15/32', dnsResolverCidrs: [] as string[] };

  it('routes the primary and the private resolvers outside the VPC, each once, through the named route', () => {
    const route = { transitGatewayId: 'tgw-0123456789abcdef0' };
    expect(routedCidrs({ ...base, primaryRoute: route, dnsResolverCidrs: ['10.20.0.15/32', '10.0.0.2/32', '198.51.100.53/32', '10.30.0.9/24'] })).toEqual([
      '10.20.0.15/32',
      '10.30.0.0/24',
    ]);
    expect(primaryReachabilityProblem({ ...base, primaryRoute: route })).toBeUndefined();
  });

  it('routes nothing without a route or in an existing VPC', () => {
    expect(routedCidrs(base)).toEqual([]);
    expect(routedCidrs({ ...base, vpcId: 'vpc-0123456789abcdef0', primaryRoute: { vpcPeeringConnectionId: 'pcx-0123456789abcdef0' } })).toEqual([]);
  });

  it('clears host bits as EC2 stores a destination', () => {
    expect(normalize('10.20.0.15/24')).toBe('10.20.0.0/24');
    expect(normalize('192.0.2.10/32')).toBe('192.0.2.10/32');
    expect(normalize('255.255.255.255/1')).toBe('128.0.0.0/1');
  });
});

const PRIVATE_SUBNET_PATHS = ['Network/Vpc/privateSubnet1', 'Network/Vpc/privateSubnet2'];

/** Each private subnet's route to `destination` (logical id and properties). */
function routesTo(resources: Record<string, Cfn>, destination: string): [string, Cfn][] {
  return Object.entries(resources).filter(([, r]) => r.Type === 'AWS::EC2::Route' && r.Properties.DestinationCidrBlock === destination);
}

describe('a new VPC through a Transit Gateway, with custom resolvers', () => {
  const { template, stack } = synthStack({ primaryCidr: '10.20.0.15/32', primaryRoute: TGW, dnsResolverCidrs: '10.30.0.2/32,10.0.0.2/32' });
  const resources = template.toJSON().Resources as Record<string, Cfn>;
  const privateRouteTables = PRIVATE_SUBNET_PATHS.map((path) => ({ Ref: logicalIdByPath(template, `${path}/RouteTable`) }));
  const privateSubnets = PRIVATE_SUBNET_PATHS.map((path) => ({ Ref: logicalIdByPath(template, `${path}/Subnet`) }));

  it('attaches the VPC to the Transit Gateway in its private subnets, one per zone', () => {
    template.resourceCountIs('AWS::EC2::TransitGatewayAttachment', 1);
    template.hasResourceProperties('AWS::EC2::TransitGatewayAttachment', {
      TransitGatewayId: 'tgw-0123456789abcdef0',
      VpcId: { Ref: logicalIdByPath(template, 'Network/Vpc/Resource') },
      SubnetIds: privateSubnets,
    });
  });

  it('routes the primary and the resolver outside the VPC from each private subnet, after the attachment', () => {
    const attachment = logicalIdByPath(template, 'Network/TransitGatewayAttachment');
    for (const destination of ['10.20.0.15/32', '10.30.0.2/32']) {
      const routes = routesTo(resources, destination);
      expect(routes.map(([, r]) => r.Properties.RouteTableId)).toEqual(privateRouteTables);
      for (const [, route] of routes) {
        expect(route.Properties.TransitGatewayId).toBe('tgw-0123456789abcdef0');
        expect(route.DependsOn).toContain(attachment);
      }
    }
    // The resolver inside the VPC is reached by the local route.
    expect(routesTo(resources, '10.0.0.2/32')).toEqual([]);
  });

  it('keeps the NAT default route', () => {
    expect(routesTo(resources, '0.0.0.0/0').filter(([, r]) => privateRouteTables.some((t) => JSON.stringify(t) === JSON.stringify(r.Properties.RouteTableId)))).toHaveLength(2);
  });

  it('opens DNS to the resolvers from the compile masters and the controller, and nowhere else', () => {
    const dns = (cidr: string) => [{ peer: cidr, port: 'tcp/53' }, { peer: cidr, port: 'udp/53' }];
    for (const path of ['CompileMasters/SecurityGroup/Resource', 'LifecycleController/SecurityGroup/Resource']) {
      const egress = rulesOf(template, logicalIdByPath(template, path), 'egress');
      for (const cidr of ['10.30.0.2/32', '10.0.0.2/32']) expect(egress).toEqual(expect.arrayContaining(dns(cidr)));
    }
    // The NLB, EFS and the content writer (whose code makes no network call) resolve nothing.
    const groups = Object.keys(template.findResources('AWS::EC2::SecurityGroup'));
    const withDns = groups.filter((group) => rulesOf(template, group, 'egress').some((rule) => rule.port.endsWith('/53')));
    expect(withDns.sort()).toEqual(
      ['CompileMasters/SecurityGroup/Resource', 'LifecycleController/SecurityGroup/Resource'].map((path) => logicalIdByPath(template, path)).sort(),
    );
  });

  it('does not warn about routes it built', () => {
    expect(Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('existing-vpc-routes'))).toEqual([]);
  });
});

describe('a new VPC through a peering connection', () => {
  const { template } = synthStack({ primaryCidr: '10.20.0.0/24', primaryRoute: PCX });
  const resources = template.toJSON().Resources as Record<string, Cfn>;

  it('routes the primary from each private subnet to the peering connection, with no attachment', () => {
    template.resourceCountIs('AWS::EC2::TransitGatewayAttachment', 0);
    const routes = routesTo(resources, '10.20.0.0/24');
    expect(routes.map(([, r]) => r.Properties.RouteTableId)).toEqual(
      PRIVATE_SUBNET_PATHS.map((path) => ({ Ref: logicalIdByPath(template, `${path}/RouteTable`) })),
    );
    for (const [, route] of routes) expect(route.Properties.VpcPeeringConnectionId).toBe('pcx-0123456789abcdef0');
  });

  it('opens no DNS egress without resolvers', () => {
    for (const group of Object.keys(template.findResources('AWS::EC2::SecurityGroup'))) {
      expect(rulesOf(template, group, 'egress').filter((rule) => rule.port.endsWith('/53'))).toEqual([]);
    }
  });
});

describe('the embedded defaults', () => {
  const { template } = synthStack({});
  it('route the public example primary through the NAT only', () => {
    template.resourceCountIs('AWS::EC2::TransitGatewayAttachment', 0);
    const resources = template.toJSON().Resources as Record<string, Cfn>;
    const destinations = Object.values(resources).filter((r) => r.Type === 'AWS::EC2::Route').map((r) => r.Properties.DestinationCidrBlock);
    expect(new Set(destinations)).toEqual(new Set(['0.0.0.0/0']));
  });
});

describe('an existing VPC', () => {
  const { stack } = synthStack({ ...REAL_DEPLOY_CONTEXT, dnsResolverCidrs: '10.30.0.2/32' });
  it('warns once what its private subnets must route, and how to check it', () => {
    const warnings = Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('existing-vpc-routes'));
    expect(warnings).toHaveLength(1);
    const text = String(warnings[0]!.entry.data);
    expect(text).toContain('must route to 10.20.0.15/32, 10.30.0.2/32');
    expect(text).toContain('subnet-0123456789abcdef0, subnet-0fedcba9876543210');
    expect(text).toContain('npx compile-masters doctor');
  });
});
