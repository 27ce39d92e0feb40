import * as z from 'zod';

/**
 * How a new VPC reaches a primary (and resolvers) at private addresses outside it: through a
 * Transit Gateway or a VPC peering connection the operator already has. A new VPC's private
 * subnets otherwise route only to the NAT gateway, which cannot reach a private address.
 */
export type PrimaryRoute = { readonly transitGatewayId: string } | { readonly vpcPeeringConnectionId: string };

const TRANSIT_GATEWAY_ID = /^tgw-[0-9a-f]{8,17}$/;
const PEERING_CONNECTION_ID = /^pcx-[0-9a-f]{8,17}$/;

/** One of the two shapes, with a message that names both rather than zod's generic union error. */
export const primaryRouteSchema = z.unknown().transform((value, ctx): PrimaryRoute => {
  const keys = value !== null && typeof value === 'object' && !Array.isArray(value) ? Object.keys(value) : [];
  const given = value as Record<string, unknown>;
  if (keys.length === 1 && keys[0] === 'transitGatewayId' && typeof given.transitGatewayId === 'string' && TRANSIT_GATEWAY_ID.test(given.transitGatewayId)) {
    return { transitGatewayId: given.transitGatewayId };
  }
  if (keys.length === 1 && keys[0] === 'vpcPeeringConnectionId' && typeof given.vpcPeeringConnectionId === 'string' && PEERING_CONNECTION_ID.test(given.vpcPeeringConnectionId)) {
    return { vpcPeeringConnectionId: given.vpcPeeringConnectionId };
  }
  ctx.addIssue({
    code: 'custom',
    message: 'must be exactly one of {"transitGatewayId":"tgw-…"} or {"vpcPeeringConnectionId":"pcx-…"} (8–17 lower-case hex digits after the prefix)',
  });
  return z.NEVER;
});

/** Address space that a NAT gateway cannot reach: RFC 1918 and carrier-grade NAT (RFC 6598). */
export const PRIVATE_RANGES = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10'] as const;

export interface ReachabilitySettings {
  readonly vpcId?: string | undefined;
  readonly vpcCidr: string;
  readonly primaryCidr: string;
  readonly primaryRoute?: PrimaryRoute | undefined;
  readonly dnsResolverCidrs: readonly string[];
}

export interface ReachabilityProblem {
  /** The context key to change. */
  readonly key: 'primaryRoute' | 'vpcCidr' | 'dnsResolverCidrs';
  readonly message: string;
}

const ROUTE_FIX =
  'name the route the new VPC reaches it by: -c primaryRoute={"transitGatewayId":"tgw-…"} or ' +
  '-c primaryRoute={"vpcPeeringConnectionId":"pcx-…"}; or deploy into a VPC that already routes to it: ' +
  '-c vpcId=vpc-… -c privateSubnetIds=subnet-…,subnet-…';

/**
 * Why the compile masters and the controller could not reach the primary (or a resolver) with
 * these settings, or undefined. Only a new VPC can be judged: an existing VPC's routing is the
 * operator's, and synth cannot see it (the stack warns instead).
 */
export function primaryReachabilityProblem(c: ReachabilitySettings): ReachabilityProblem | undefined {
  if (c.vpcId) {
    return c.primaryRoute
      ? { key: 'primaryRoute', message: `is only for a new VPC: in your VPC (vpcId ${c.vpcId}) the routes to the primary are yours to keep; remove primaryRoute` }
      : undefined;
  }
  if (overlaps(c.primaryCidr, c.vpcCidr)) {
    return {
      key: 'vpcCidr',
      message: `overlaps primaryCidr ${c.primaryCidr}: the new VPC's local route would keep traffic to the primary inside it (and peering refuses overlapping networks); choose a vpcCidr outside your network's address plan`,
    };
  }
  if (!c.primaryRoute && isPrivate(c.primaryCidr)) {
    return {
      key: 'primaryRoute',
      message: `is needed: primaryCidr ${c.primaryCidr} is a private address outside the new VPC, which routes only to its NAT gateway, so no launch would ever reach the primary; ${ROUTE_FIX}`,
    };
  }
  for (const resolver of c.dnsResolverCidrs) {
    if (overlaps(resolver, c.vpcCidr) && !contains(c.vpcCidr, resolver)) {
      return { key: 'dnsResolverCidrs', message: `${resolver} lies partly inside vpcCidr ${c.vpcCidr}: list resolvers inside the VPC and outside it as separate CIDRs` };
    }
    if (!c.primaryRoute && isPrivate(resolver) && !contains(c.vpcCidr, resolver)) {
      return { key: 'dnsResolverCidrs', message: `${resolver} is a private address outside the new VPC, which routes only to its NAT gateway; ${ROUTE_FIX}` };
    }
  }
  return undefined;
}

/**
 * What a new VPC routes through primaryRoute: the primary's CIDR (the operator named the route
 * for it, even for a public address), and the private resolvers outside the VPC, each once.
 */
export function routedCidrs(c: ReachabilitySettings): string[] {
  if (c.vpcId || !c.primaryRoute) return [];
  const resolvers = c.dnsResolverCidrs.filter((cidr) => isPrivate(cidr) && !contains(c.vpcCidr, cidr));
  return [...new Set([c.primaryCidr, ...resolvers].map(normalize))];
}

/** True when any address of the CIDR is private (a NAT gateway drops it). */
export function isPrivate(cidr: string): boolean {
  return PRIVATE_RANGES.some((range) => overlaps(cidr, range));
}

interface Range {
  readonly first: number;
  readonly last: number;
}

function range(cidr: string): Range {
  const [address, bits] = cidr.split('/') as [string, string];
  const base = address.split('.').reduce((sum, octet) => sum * 256 + Number(octet), 0);
  const size = 2 ** (32 - Number(bits));
  const first = base - (base % size);
  return { first, last: first + size - 1 };
}

export function overlaps(a: string, b: string): boolean {
  const x = range(a);
  const y = range(b);
  return x.first <= y.last && y.first <= x.last;
}

/** True when `inner` lies wholly inside `outer`. */
export function contains(outer: string, inner: string): boolean {
  const x = range(outer);
  const y = range(inner);
  return x.first <= y.first && y.last <= x.last;
}

/** The CIDR with its host bits cleared, as EC2 stores a route's destination (10.20.0.15/24 → 10.20.0.0/24). */
export function normalize(cidr: string): string {
  const { first } = range(cidr);
  const bits = cidr.split('/')[1];
  return `${[24, 16, 8, 0].map((shift) => Math.floor(first / 2 ** shift) % 256).join('.')}/${bits}`;
}
