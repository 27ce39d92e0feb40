import type { Flavor } from '../../lib/flavor';

/**
 * The flavors the lab scenario runs: PE (the orchestrator double converges the primary) and
 * open-source Puppet, which is what the lab's machines and primary run. OpenVox differs from oss
 * only in package names, and the lab installs Debian's puppet packages, not openvox-*.
 */
export const LAB_FLAVORS = ['pe', 'oss'] as const satisfies readonly Flavor[];
export type LabFlavor = (typeof LAB_FLAVORS)[number];

export function isLabFlavor(text: string): text is LabFlavor {
  return (LAB_FLAVORS as readonly string[]).includes(text);
}
