import { isValidCertname } from '../../lib/certname';
import { RefusedInputError } from '../../lib/errors';
import { mapLimit } from '../../lib/concurrency';
import type { CertState, CsrObservation, KeyReport, Observed, RunObservation } from './model';
import { awaitsVerification } from './planner';
import type { Ports } from './ports';
import { IN_SERVICE, LAUNCHING, SERVING } from './vocabulary';

/** Calls in flight per kind of observation (CA statuses, CSRs, node health). */
const OBSERVE_CONCURRENCY = 8;

/**
 * Gathers what the planner needs, in two rounds: the wide view (group, registry, run record, the
 * CA's pending requests), then only the certificates, CSRs and nodes that view makes relevant.
 * A big site's CA holds thousands of agents: listing them all on every pass would cost more than
 * asking about the few dozen compile masters by name.
 */
export async function observe(ports: Ports, now: Date): Promise<Observed> {
  const [members, { entries: registry, damaged }, run, requested] = await Promise.all([
    ports.group.members(),
    ports.registry.list(),
    ports.registry.getRun(),
    ports.puppet.requestedCertnames(),
  ]);
  // An instance with a damaged registry item is left alone, so nothing is asked about it either.
  const quarantined = new Set(damaged.flatMap((item) => (item.instanceId ? [item.instanceId] : [])));
  const memberIds = new Set(members.map((member) => member.instanceId));
  const entries = new Map(registry.map((entry) => [entry.instanceId, entry]));
  const instances = await ports.instances.describe([
    ...new Set([...memberIds, ...registry.filter((entry) => entry.state !== 'purged').map((entry) => entry.instanceId)]),
  ]);

  // Certnames of launching members (from EC2) and of owned serving members (from the registry).
  const interesting = new Set<string>();
  /** Certname → the instance whose CSR it would be. */
  const csrWanted = new Map<string, string>();
  // Certnames whose certificate a member holds, as far as the registry knows.
  const holding = new Set<string>();
  for (const member of members) {
    if (quarantined.has(member.instanceId)) continue;
    const entry = entries.get(member.instanceId);
    if (entry && entry.state !== 'purged') holding.add(entry.certname);
    if (member.lifecycleState === LAUNCHING) {
      const certname = instances.get(member.instanceId)?.privateDnsName?.toLowerCase();
      if (certname && isValidCertname(certname)) {
        interesting.add(certname);
        csrWanted.set(certname, member.instanceId);
      }
    } else if (SERVING.has(member.lifecycleState) && entry) {
      interesting.add(entry.certname);
      if (entry.state === 'purged') csrWanted.set(entry.certname, member.instanceId);
    }
  }
  // A pending CSR means 'requested' only where no member holds a certificate. A CA that accepts
  // duplicate CSRs lists one next to a signed certificate, which is still valid: for those, ask
  // the CA by name, and it answers with the certificate's state.
  const certs = new Map<string, CertState>();
  await mapLimit([...interesting], OBSERVE_CONCURRENCY, async (certname) => {
    certs.set(certname, requested.has(certname) && !holding.has(certname) ? 'requested' : await ports.puppet.certState(certname));
  });

  const csrs = new Map<string, CsrObservation>();
  const keyReports = new Map<string, KeyReport>();
  await mapLimit(
    [...csrWanted].filter(([certname]) => certs.get(certname) === 'requested'),
    OBSERVE_CONCURRENCY,
    async ([certname, instanceId]) => {
      const [observation, report] = await Promise.all([readCsr(ports, certname), ports.registry.keyReport(instanceId)]);
      if (observation) csrs.set(certname, observation);
      if (report) keyReports.set(instanceId, report);
    },
  );

  // Nodes waiting to be converged, and serving ones: a lasting failure of those gets them replaced.
  // A launch not enrolled yet shows it is alive by its key report: only such launches are
  // heartbeated (launch-heartbeats.ts).
  const unheard = members.filter(
    ({ instanceId, lifecycleState }) =>
      lifecycleState === LAUNCHING && !quarantined.has(instanceId) && !keyReports.has(instanceId) && (entries.get(instanceId)?.state ?? 'purged') === 'purged',
  );
  await mapLimit(unheard, OBSERVE_CONCURRENCY, async ({ instanceId }) => {
    const report = await ports.registry.keyReport(instanceId);
    if (report) keyReports.set(instanceId, report);
  });

  const health = new Map<string, boolean>();
  const inService = new Set(members.filter((member) => member.lifecycleState === IN_SERVICE).map((member) => member.instanceId));
  const probed = registry.filter(
    (entry) =>
      !awaitsVerification(entry) &&
      certs.get(entry.certname) === 'signed' &&
      ((entry.state === 'signed' && memberIds.has(entry.instanceId)) || (entry.state === 'in-service' && inService.has(entry.instanceId))),
  );
  await mapLimit(probed, OBSERVE_CONCURRENCY, async (entry) => {
    const privateIp = instances.get(entry.instanceId)?.privateIp;
    if (privateIp) health.set(entry.instanceId, await ports.health.isHealthy({ certname: entry.certname, privateIp }));
  });

  // The CA is probed only when there is something it might be asked to sign: a readable CSR made
  // with the key its instance reported.
  const signable = [...csrWanted].some(([certname, instanceId]) => {
    const csr = csrs.get(certname);
    return csr?.ok === true && csr.facts.publicKeySha256 === keyReports.get(instanceId)?.publicKeySha256;
  });
  const signingSuspended = signable ? await signingSuspension(ports) : undefined;

  const runState = run.job?.name ? await observeRun(ports, run.job.name) : undefined;
  return { now, members, instances, registry, damaged, run, certs, csrs, keyReports, health, runState, signingSuspended };
}

/**
 * With allow-duplicate-certs on, anyone who reaches port 8140 can replace a compile master's
 * pending CSR, or queue one for a certname that holds a signed certificate, and signing would
 * issue it. A CA that cannot say is treated the same: nothing is signed until it can.
 */
async function signingSuspension(ports: Ports): Promise<string | undefined> {
  try {
    return (await ports.puppet.duplicateCertsAllowed())
      ? 'the CA accepts duplicate certificate requests (allow-duplicate-certs is on): set it to false on the primary and restart puppetserver'
      : undefined;
  } catch (error) {
    return `the CA's allow-duplicate-certs setting could not be checked (${error instanceof Error ? error.message : String(error)})`;
  }
}

async function readCsr(ports: Ports, certname: string): Promise<CsrObservation | undefined> {
  try {
    const facts = await ports.puppet.readCsr(certname);
    return facts && { ok: true, facts };
  } catch (error) {
    if (error instanceof RefusedInputError) return { ok: false, problem: error.message };
    throw error;
  }
}

/** A runner that cannot answer must not stop purges: the run's fate is simply unknown this pass. */
async function observeRun(ports: Ports, runId: string): Promise<RunObservation> {
  try {
    const state = await ports.primaryRun.state(runId);
    return state ? { kind: 'state', state } : { kind: 'missing' };
  } catch (error) {
    return { kind: 'unreachable', problem: error instanceof Error ? error.message : String(error) };
  }
}
