import type { CertState, Ec2Instance, Member, RegistryEntry } from '../lambdas/controller/model';
import { LAUNCHING, SERVING } from '../lambdas/controller/vocabulary';
import type { PdbNode } from '../lib/puppet/puppetdb';

export type PdbState = 'active' | 'deactivated' | 'expired' | 'absent';

/** Everything `status` looks at; target health is unknown in the lab. */
export interface TierObservation {
  members: Member[];
  instances: ReadonlyMap<string, Ec2Instance>;
  registry: RegistryEntry[];
  /** Instance id → "port:state" per target group; undefined when there is no load balancer to ask. */
  targets: ReadonlyMap<string, string[]> | undefined;
  ca: ReadonlyMap<string, CertState>;
  puppetdb: ReadonlyMap<string, PdbState>;
}

export interface StatusRow {
  instanceId: string;
  lifecycle: string;
  certname: string;
  ca: string;
  puppetdb: string;
  targets: string;
  registry: string;
  drift: string[];
}

const LIVE_REGISTRY = new Set(['signed', 'converging', 'in-service']);
const NONE = '-';

/** Adds one "port:state" to an instance's target health, sorted so 8140 comes before 8142. */
export function addTarget(targets: Map<string, string[]>, instanceId: string, port: number | string, state: string): void {
  targets.set(instanceId, [...(targets.get(instanceId) ?? []), `${port}:${state}`].sort());
}

export function pdbState(node: PdbNode | undefined): PdbState {
  if (!node) return 'absent';
  if (node.deactivated) return 'deactivated';
  if (node.expired) return 'expired';
  return 'active';
}

/**
 * The certnames worth asking the CA and PuppetDB about: every member's (the registry's name, or
 * the EC2 private DNS name the controller derives it from) and every registry entry's.
 */
export function certnamesOf(observation: Pick<TierObservation, 'members' | 'instances' | 'registry'>): string[] {
  const names = new Set(observation.registry.map((entry) => entry.certname));
  for (const member of observation.members) {
    const name = expectedCertname(member.instanceId, observation);
    if (name) names.add(name);
  }
  return [...names];
}

function expectedCertname(instanceId: string, observation: Pick<TierObservation, 'instances' | 'registry'>): string | undefined {
  return observation.registry.find((entry) => entry.instanceId === instanceId)?.certname ?? observation.instances.get(instanceId)?.privateDnsName?.toLowerCase();
}

/**
 * One row per member and per registry entry. Purged entries of instances gone for good are left
 * out unless something of them survived (that is drift worth a row).
 */
export function statusRows(observation: TierObservation): StatusRow[] {
  const members = new Map(observation.members.map((member) => [member.instanceId, member.lifecycleState]));
  const ids = [...new Set([...members.keys(), ...observation.registry.map((entry) => entry.instanceId)])].sort();
  return ids
    .map((instanceId): StatusRow => {
      const entry = observation.registry.find((candidate) => candidate.instanceId === instanceId);
      const certname = expectedCertname(instanceId, observation);
      const lifecycle = members.get(instanceId);
      const ca = certname ? (observation.ca.get(certname) ?? 'absent') : undefined;
      const puppetdb = certname ? (observation.puppetdb.get(certname) ?? 'absent') : undefined;
      const targets = observation.targets?.get(instanceId);
      return {
        instanceId,
        lifecycle: lifecycle ?? `not a member${observation.instances.get(instanceId) ? ` (${observation.instances.get(instanceId)!.state})` : ''}`,
        certname: certname ?? NONE,
        ca: ca ?? NONE,
        puppetdb: puppetdb ?? NONE,
        targets: observation.targets === undefined ? 'n/a' : targets?.join(' ') || 'not registered',
        registry: entry?.state ?? NONE,
        drift: driftOf({ lifecycle, entry, ca, puppetdb, targets: observation.targets === undefined ? undefined : (targets ?? []), privateDnsName: observation.instances.get(instanceId)?.privateDnsName?.toLowerCase() }),
      };
    })
    .filter((row) => !(row.registry === 'purged' && row.lifecycle.startsWith('not a member') && row.drift.length === 0));
}

interface RowFacts {
  lifecycle: string | undefined;
  entry: RegistryEntry | undefined;
  ca: CertState | undefined;
  puppetdb: PdbState | undefined;
  targets: string[] | undefined;
  privateDnsName: string | undefined;
}

/** What disagrees with what the controller should have brought about. Pure, one rule a line. */
export function driftOf(row: RowFacts): string[] {
  const drift: string[] = [];
  const member = row.lifecycle !== undefined;
  const serving = member && SERVING.has(row.lifecycle!);
  if (serving && !row.entry) drift.push('in service but not enrolled by the controller (no registry entry)');
  if (serving && row.ca !== 'signed') drift.push(`in service without a signed certificate (CA: ${row.ca ?? 'unknown'})`);
  if (!member && row.ca === 'signed') drift.push('certificate signed at the CA but not a member of the group');
  if (!member && row.puppetdb === 'active') drift.push('active in PuppetDB but not a member of the group');
  if (!member && row.entry && LIVE_REGISTRY.has(row.entry.state)) drift.push(`registry says ${row.entry.state} but not a member of the group`);
  if (row.entry?.state === 'purged' && serving) drift.push('registry says purged while in service (the node agent should re-enroll it)');
  if (row.entry?.state === 'in-service' && row.lifecycle === LAUNCHING) drift.push('registry says in-service while the launch hook still waits');
  if (row.entry && row.privateDnsName && row.entry.certname !== row.privateDnsName) drift.push(`registry certname differs from the instance's private DNS name ${row.privateDnsName}`);
  if (row.lifecycle === 'InService' && row.targets !== undefined && !(row.targets.length > 0 && row.targets.every((target) => target.endsWith(':healthy')))) {
    drift.push(`in service but not healthy behind the load balancer (${row.targets.join(' ') || 'not registered'})`);
  }
  return drift;
}

/** Certificate-side rows when there is no group to compare with (the lab without a cloud snapshot). */
export function certificateRows(ca: ReadonlyMap<string, CertState>, puppetdb: ReadonlyMap<string, PdbState>): StatusRow[] {
  const names = [...new Set([...ca.keys(), ...puppetdb.keys()])].sort();
  return names.map((certname) => {
    const caState = ca.get(certname) ?? 'absent';
    const pdb = puppetdb.get(certname) ?? 'absent';
    const drift: string[] = [];
    if (pdb === 'active' && (caState === 'revoked' || caState === 'absent')) drift.push(`active in PuppetDB but ${caState} at the CA (a purge stopped half-way)`);
    if (caState === 'signed' && pdb === 'deactivated') drift.push('deactivated in PuppetDB but still signed at the CA (a purge stopped half-way)');
    return { instanceId: NONE, lifecycle: 'n/a', certname, ca: caState, puppetdb: pdb, targets: 'n/a', registry: 'n/a', drift };
  });
}

const COLUMNS: Array<[keyof StatusRow, string]> = [
  ['instanceId', 'INSTANCE'],
  ['lifecycle', 'LIFECYCLE'],
  ['certname', 'CERTNAME'],
  ['ca', 'CA'],
  ['puppetdb', 'PUPPETDB'],
  ['targets', 'TARGETS'],
  ['registry', 'REGISTRY'],
];

/** A plain table; rows with drift start with "!" and, on a terminal, are red, their drift listed under them. */
export function renderTable(rows: readonly StatusRow[], color: boolean): string {
  const cells = rows.map((row) => COLUMNS.map(([key]) => String(row[key])));
  const widths = COLUMNS.map(([, title], index) => Math.max(title.length, ...cells.map((line) => line[index]!.length)));
  const format = (values: string[]) => values.map((value, index) => value.padEnd(widths[index]!)).join('  ').trimEnd();
  const lines = [`  ${format(COLUMNS.map(([, title]) => title))}`];
  rows.forEach((row, index) => {
    const drifting = row.drift.length > 0;
    const line = `${drifting ? '! ' : '  '}${format(cells[index]!)}`;
    lines.push(drifting && color ? `\u001b[31m${line}\u001b[0m` : line);
    for (const drift of row.drift) lines.push(`    drift: ${drift}`);
  });
  const drifting = rows.filter((row) => row.drift.length > 0).length;
  lines.push('', `${rows.length} row(s), ${drifting} with drift.`);
  return `${lines.join('\n')}\n`;
}
