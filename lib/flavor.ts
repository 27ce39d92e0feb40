/**
 * Which Puppet the site runs, and what follows from it. Defined once: the stack (ports, target
 * groups, IAM, the node agent's settings), the controller (how the primary is converged), the CLI
 * (primary-setup, doctor, secrets put) and the lab all read these tables, so a fact about a flavor
 * is never restated.
 */

export const FLAVORS = ['pe', 'oss', 'openvox'] as const;
export type Flavor = (typeof FLAVORS)[number];

/**
 * How the controller makes the primary see a change in the tier (a new compile master to classify,
 * a purged one's exported resources to drop):
 * - orchestrator: PE's orchestrator runs Puppet on the primary (RBAC token);
 * - ssm: SSM Run Command runs `puppet agent` on the primary's EC2 instance(s);
 * - none: nothing; the site's PuppetDB allow-list and auth rules admit the tier by role already.
 */
export const PRIMARY_RUN_MODES = ['orchestrator', 'ssm', 'none'] as const;
export type PrimaryRunMode = (typeof PRIMARY_RUN_MODES)[number];

export interface FlavorTraits {
  /** Human name, for messages. */
  readonly title: string;
  /** PE's PCP broker listens on 8142; open-source Puppet and OpenVox have none. */
  readonly pcpBroker: boolean;
  /** The compile master's Puppet Server systemd unit. */
  readonly serverService: string;
  /** The packages that make a node an agent and a Puppet Server. */
  readonly agentPackage: string;
  readonly serverPackage: string;
  /** Primary run modes the flavor can use; the first is the default. */
  readonly primaryRuns: readonly [PrimaryRunMode, ...PrimaryRunMode[]];
}

export const FLAVOR: Readonly<Record<Flavor, FlavorTraits>> = {
  pe: {
    title: 'Puppet Enterprise',
    pcpBroker: true,
    serverService: 'pe-puppetserver',
    agentPackage: 'puppet-agent',
    serverPackage: 'pe-puppetserver',
    primaryRuns: ['orchestrator', 'ssm', 'none'],
  },
  oss: {
    title: 'open-source Puppet',
    pcpBroker: false,
    serverService: 'puppetserver',
    agentPackage: 'puppet-agent',
    serverPackage: 'puppetserver',
    primaryRuns: ['ssm', 'none'],
  },
  openvox: {
    title: 'OpenVox',
    pcpBroker: false,
    serverService: 'puppetserver',
    agentPackage: 'openvox-agent',
    serverPackage: 'openvox-server',
    primaryRuns: ['ssm', 'none'],
  },
};

/** Why `mode` cannot converge a `flavor` primary, or undefined when it can. */
export function primaryRunProblem(flavor: Flavor, mode: PrimaryRunMode): string | undefined {
  const allowed = FLAVOR[flavor].primaryRuns;
  if (allowed.includes(mode)) return undefined;
  return `${FLAVOR[flavor].title} has no orchestrator; use ${allowed.map((m) => JSON.stringify(m)).join(' or ')}`;
}

export function defaultPrimaryRun(flavor: Flavor): PrimaryRunMode {
  return FLAVOR[flavor].primaryRuns[0];
}
