import { FLAVOR, type Flavor } from '../lib/flavor';
import type { Platform } from './platform';

/**
 * Where a new compile master's bootstrap gets puppet-agent when the image has none:
 * - primary: the PE primary's own `install.bash` (pe_repo), over TLS pinned to the Puppet CA;
 * - repository: the vendor's package repository, packages verified with a signing key the stack
 *   pins (agentRepositoryKeyFile), never one fetched at boot;
 * - ami: baked into the image; the bootstrap installs nothing and fails when it is missing.
 */
export const AGENT_SOURCES = ['primary', 'repository', 'ami'] as const;
export type AgentSource = (typeof AGENT_SOURCES)[number];

/** PE compilers must run the primary's agent version, which only pe_repo serves; the others have no pe_repo. */
const ALLOWED_SOURCES: Readonly<Record<Flavor, readonly [AgentSource, ...AgentSource[]]>> = {
  pe: ['primary', 'ami'],
  oss: ['repository', 'ami'],
  openvox: ['repository', 'ami'],
};

export function defaultAgentSource(flavor: Flavor): AgentSource {
  return ALLOWED_SOURCES[flavor][0];
}

/** Why `source` cannot provide a `flavor` compile master's agent, or undefined when it can. */
export function agentSourceProblem(flavor: Flavor, source: AgentSource): string | undefined {
  const allowed = ALLOWED_SOURCES[flavor];
  if (allowed.includes(source)) return undefined;
  return `${FLAVOR[flavor].title} compile masters cannot take puppet-agent from "${source}"; use ${allowed.map((s) => JSON.stringify(s)).join(' or ')}`;
}

/**
 * Where the bootstrap finds a vendor's agent package: a dnf baseurl (dnf expands $basearch), or an
 * apt source. Only URLs: the signing key is the operator's file, so the stack never vouches for a
 * key it did not get from them.
 */
export type VendorRepository =
  | { readonly packageManager: 'dnf'; readonly rpmBaseUrl: string }
  | { readonly packageManager: 'apt'; readonly aptUri: string; readonly aptSuite: string; readonly aptComponent: string };

const apt = (aptUri: string, aptSuite: string, aptComponent: string): VendorRepository => ({ packageManager: 'apt', aptUri, aptSuite, aptComponent });
const dnf = (rpmBaseUrl: string): VendorRepository => ({ packageManager: 'dnf', rpmBaseUrl });

/** Puppet's apt suites are Ubuntu's code names; Vox Pupuli's are `ubuntu<version>`. */
export const VENDOR_REPOSITORY: Readonly<Record<Exclude<Flavor, 'pe'>, Readonly<Record<Platform, VendorRepository>>>> = {
  oss: {
    al2023: dnf('https://yum.puppet.com/puppet8/amazon/2023/$basearch'),
    rhel9: dnf('https://yum.puppet.com/puppet8/el/9/$basearch'),
    ubuntu2204: apt('https://apt.puppet.com', 'jammy', 'puppet8'),
    ubuntu2404: apt('https://apt.puppet.com', 'noble', 'puppet8'),
  },
  openvox: {
    al2023: dnf('https://yum.voxpupuli.org/openvox8/amazon/2023/$basearch'),
    rhel9: dnf('https://yum.voxpupuli.org/openvox8/el/9/$basearch'),
    ubuntu2204: apt('https://apt.voxpupuli.org', 'ubuntu22.04', 'openvox8'),
    ubuntu2404: apt('https://apt.voxpupuli.org', 'ubuntu24.04', 'openvox8'),
  },
};
