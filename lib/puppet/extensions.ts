/**
 * Puppet's trusted-fact extensions (registered arc 1.3.6.1.4.1.34380.1.1 for pp_*, .1.3 for
 * pp_auth_*). Only the ones this project reads or requests are listed; unknown OIDs are kept by
 * OID so a CSR asking for anything else is visible and can be refused.
 */
export const PUPPET_EXTENSION_OIDS = {
  pp_uuid: '1.3.6.1.4.1.34380.1.1.1',
  pp_instance_id: '1.3.6.1.4.1.34380.1.1.2',
  pp_image_name: '1.3.6.1.4.1.34380.1.1.3',
  pp_preshared_key: '1.3.6.1.4.1.34380.1.1.4',
  pp_role: '1.3.6.1.4.1.34380.1.1.13',
  pp_region: '1.3.6.1.4.1.34380.1.1.18',
  pp_cli_auth: '1.3.6.1.4.1.34380.1.3.39',
  pp_auth_role: '1.3.6.1.4.1.34380.1.3.13',
} as const;

export type PuppetExtensionName = keyof typeof PUPPET_EXTENSION_OIDS;

const NAME_BY_OID: ReadonlyMap<string, PuppetExtensionName> = new Map(
  Object.entries(PUPPET_EXTENSION_OIDS).map(([name, oid]) => [oid, name as PuppetExtensionName]),
);

export function extensionName(oid: string): string {
  return NAME_BY_OID.get(oid) ?? oid;
}

export function isPuppetExtensionName(name: string): name is PuppetExtensionName {
  return Object.hasOwn(PUPPET_EXTENSION_OIDS, name);
}

/** Extensions outside Puppet's arcs (key usage, SAN, ...) are X.509's business, not trusted facts. */
export function isPuppetArc(oid: string): boolean {
  return oid.startsWith('1.3.6.1.4.1.34380.1.');
}

/** Set by the node agent from instance metadata, and checked by the controller against AWS. */
const AGENT_SET: ReadonlySet<string> = new Set(['pp_instance_id', 'pp_region']);
/** A certificate carrying these is a CA administrator's, not a compile master's. */
const FORBIDDEN: ReadonlySet<string> = new Set(['pp_cli_auth']);

/**
 * Why an extension cannot be configured for every compile master's CSR, if it cannot. The CDK
 * context, the controller's EXPECTED_EXTENSIONS and the node agent's configuration all ask this,
 * so a value one accepts is never refused by another (the agent writes it into the CSR).
 */
export function configuredExtensionProblem(name: string, value: string): string | undefined {
  if (!isPuppetExtensionName(name)) return 'is not a Puppet extension short name this project knows (see lib/puppet/extensions.ts)';
  if (AGENT_SET.has(name)) return 'is set by the node agent from instance metadata and checked by the controller itself; remove it';
  if (FORBIDDEN.has(name)) return 'would ask for CA-administrator rights, which are never granted to a compile master';
  if (!/^[\x20-\x7e]{1,255}$/.test(value)) return 'needs a value of 1 to 255 printable ASCII characters';
  return undefined;
}
