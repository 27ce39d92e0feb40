import { type Architecture, instanceArchitecture } from './platform';

/**
 * How the compile-master group buys its capacity: which instance types it may launch, and with
 * `spot` on, an on-demand base with spot above it. The rules between the keys live here, once;
 * config.ts reports what they find and the group construct builds from the result.
 */

/**
 * Without either key: four x86_64 families of one size (4 vCPU, 16 GiB), so spot finds several
 * capacity pools in each zone. The first is the launch template's type and the on-demand choice.
 */
export const DEFAULT_INSTANCE_TYPES: readonly string[] = ['m6i.xlarge', 'm6a.xlarge', 'm5.xlarge', 'm7i.xlarge'];

/** Auto Scaling's limit on a mixed instances policy's overrides. */
export const MAX_INSTANCE_TYPES = 40;

export interface CapacityKeys {
  readonly spot: boolean;
  readonly instanceType: string;
  readonly instanceTypes?: readonly string[];
}

export interface ResolvedCapacity {
  /** The launch template's type: always the first of instanceTypes. */
  readonly instanceType: string;
  /** What the group may launch, in priority order; exactly [instanceType] with spot off. */
  readonly instanceTypes: string[];
}

export interface CapacityIssue {
  readonly key: string;
  readonly message: string;
}

/** Keys that shape the spot policy: refused when spot is off, where they would silently do nothing. */
const SPOT_ONLY_KEYS = ['onDemandBaseCapacity', 'onDemandPercentageAboveBaseCapacity'] as const;

/**
 * Resolves `instanceType` and `instanceTypes` into one list, or says why they contradict each
 * other. `isSet` tells a key the operator gave from one left at its default: an `instanceType`
 * given alone means that type only (as before spot existed), not the default list.
 */
export function resolveCapacity(c: CapacityKeys, isSet: (key: string) => boolean): { capacity: ResolvedCapacity; issues: CapacityIssue[] } {
  const issues: CapacityIssue[] = [];
  const issue = (key: string, message: string) => issues.push({ key, message });
  const listed = [...(c.instanceTypes ?? (isSet('instanceType') ? [c.instanceType] : DEFAULT_INSTANCE_TYPES))];
  const first = listed[0] ?? c.instanceType;

  if (isSet('instanceType') && c.instanceTypes && c.instanceType !== first) {
    issue('instanceType', `must be the first of instanceTypes (${first}), or be left unset: the launch template's type is the list's first`);
  }
  if (listed.length > MAX_INSTANCE_TYPES) issue('instanceTypes', `lists ${listed.length} types; Auto Scaling takes at most ${MAX_INSTANCE_TYPES}`);
  const repeated = listed.filter((type, index) => listed.indexOf(type) !== index);
  if (repeated.length > 0) issue('instanceTypes', `names ${[...new Set(repeated)].join(', ')} more than once`);
  const architectures = new Map<string, string[]>();
  for (const type of listed) {
    const architecture = architectureOf(type);
    if (architecture === undefined) {
      issue('instanceTypes', `${type} is not an EC2 instance type whose architecture can be told from its name`);
      continue;
    }
    architectures.set(architecture, [...(architectures.get(architecture) ?? []), type]);
  }
  if (architectures.size > 1) {
    const described = [...architectures].map(([architecture, types]) => `${types.join(', ')} ${architecture}`).join('; ');
    issue('instanceTypes', `mixes architectures (${described}): one AMI serves the whole group, so list types of one architecture`);
  }

  if (!c.spot) {
    if (listed.length > 1 && c.instanceTypes) {
      issue('instanceTypes', `lists ${listed.length} types, but spot is false: an on-demand group launches its launch template's type only; set spot=true or list one type`);
    }
    for (const key of SPOT_ONLY_KEYS.filter(isSet)) issue(key, 'is only used with spot=true (spot is false)');
    return { capacity: { instanceType: first, instanceTypes: [first] }, issues };
  }
  return { capacity: { instanceType: first, instanceTypes: listed }, issues };
}

/** The architecture an instance type runs, from its name; undefined when the name does not tell. */
function architectureOf(type: string): Architecture | undefined {
  try {
    return instanceArchitecture(type);
  } catch {
    return undefined;
  }
}
