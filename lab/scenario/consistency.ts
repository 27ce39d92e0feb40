import type { CaClient, PuppetDbClient } from '../../lib/puppet';

/** What the check looks at, gathered at the end of a run. */
export interface TierObservation {
  /** Certnames of the group's members (from EC2), whatever their lifecycle state. */
  members: string[];
  /** Instance ids the load balancer sends traffic to, and those in service. */
  targets: string[];
  inService: string[];
  /** Certnames of the tier the CA holds a signed certificate for. */
  caSigned: string[];
  /** Certnames of the tier PuppetDB holds as active nodes. */
  puppetdbActive: string[];
  pendingLifecycleActions: string[];
  /** Protected certname → its CA status (state and serial) before and after the run. */
  protectedBefore: Record<string, string>;
  protectedAfter: Record<string, string>;
  /** Purges the controller made of certnames nobody had given it a reason to purge. */
  wrongPurges: string[];
  /** Members whose own certificate is not the one the CA has signed for them. */
  identityMismatches: string[];
  /** Why the scenario could not play to its end, if it could not. */
  scenarioFailure?: string | undefined;
}

export interface ConsistencyReport {
  consistent: boolean;
  orphaned_certs: number;
  missing_certs: number;
  stale_puppetdb_nodes: number;
  missing_puppetdb_nodes: number;
  wrong_purges: number;
  pending_lifecycle_actions: number;
  protected_untouched: boolean;
  targets_match: boolean;
  identity_mismatches: number;
  /** One line per failed check, for the operator. */
  problems: string[];
}

const minus = (a: readonly string[], b: readonly string[]) => a.filter((item) => !b.includes(item));

/** The final check: the CA, PuppetDB and the load balancer agree with the group, and nothing is left half done. */
export function checkConsistency(o: TierObservation): ConsistencyReport {
  const orphaned = minus(o.caSigned, o.members);
  const missing = minus(o.members, o.caSigned);
  const stale = minus(o.puppetdbActive, o.members);
  const absent = minus(o.members, o.puppetdbActive);
  const protectedChanged = Object.keys(o.protectedBefore).filter((name) => o.protectedBefore[name] !== o.protectedAfter[name]);
  const targetsMatch = minus(o.targets, o.inService).length === 0 && minus(o.inService, o.targets).length === 0;
  const problems = [
    ...(o.scenarioFailure ? [o.scenarioFailure] : []),
    ...orphaned.map((name) => `orphaned certificate: ${name} is signed but no member holds it`),
    ...missing.map((name) => `member ${name} has no signed certificate`),
    ...stale.map((name) => `stale PuppetDB node: ${name} is active but no member`),
    ...absent.map((name) => `member ${name} is not an active PuppetDB node`),
    ...o.wrongPurges.map((name) => `wrong purge: ${name}`),
    ...o.pendingLifecycleActions.map((id) => `lifecycle action of ${id} still pending`),
    ...protectedChanged.map((name) => `protected certname ${name} changed: ${o.protectedBefore[name]} → ${o.protectedAfter[name]}`),
    ...(targetsMatch ? [] : [`load balancer targets [${o.targets.join(', ')}] are not the in-service members [${o.inService.join(', ')}]`]),
    ...o.identityMismatches.map((name) => `member ${name} does not hold the certificate the CA signed for it`),
  ];
  return {
    consistent: problems.length === 0,
    orphaned_certs: orphaned.length,
    missing_certs: missing.length,
    stale_puppetdb_nodes: stale.length,
    missing_puppetdb_nodes: absent.length,
    wrong_purges: o.wrongPurges.length,
    pending_lifecycle_actions: o.pendingLifecycleActions.length,
    protected_untouched: protectedChanged.length === 0,
    targets_match: targetsMatch,
    identity_mismatches: o.identityMismatches.length,
    problems,
  };
}

/** The tier's certnames as the CA and PuppetDB know them: every name under the scenario's own prefix. */
export async function observePuppetSide(ca: CaClient, puppetdb: PuppetDbClient, prefix: string): Promise<{ caSigned: string[]; puppetdbActive: string[] }> {
  const [statuses, nodes] = await Promise.all([ca.listStatuses('signed'), puppetdb.queryNodes(['~', 'certname', `^${prefix.replaceAll('.', '\\.')}`])]);
  return {
    caSigned: statuses.map((status) => status.name).filter((name) => name.startsWith(prefix)).sort(),
    puppetdbActive: nodes.filter((node) => !node.deactivated && !node.expired).map((node) => node.certname).sort(),
  };
}

/** A protected certname's identity at the CA: state and serial, or 'absent'. */
export async function protectedState(ca: CaClient, certname: string): Promise<string> {
  const status = await ca.getStatus(certname);
  return status ? `${status.state} serial ${status.serial_number ?? '?'}` : 'absent';
}
