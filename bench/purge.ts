/**
 * `npm run bench:purge`: purge 50 signed compile-master certificates (CA revoke + delete, PuppetDB
 * deactivate) three ways against the real lab, in one run:
 *   project          — the controller's own purge (lambdas/controller/puppet-purge.ts): a read of
 *                      each certificate at the CA (it is cleaned only if it is the one recorded),
 *                      one batched `clean` while PuppetDB deactivates each node, over kept-alive mTLS;
 *   reference style  — the blog post's scripts: per node a revoke PUT, a DELETE and a deactivate POST,
 *                      each a fresh curl process and connection (with --cacert, not -k);
 *   cli              — `puppetserver ca clean --certname` per node (CA only, as operators do by hand).
 *                      On Debian's puppetserver 7.9.5 each call stalls ~30 s after the revoke (the
 *                      CLI's HTTP client waits on the 204 answer until Jetty's idle timeout), so
 *                      by default it runs on a sample of BENCH_CLI_NODES nodes and `cli_s` is that
 *                      sample's time scaled to all nodes; the JSON says so.
 * Every method's end state is checked (serials in the CRL, CA entries gone, nodes deactivated)
 * before its time counts. Project and reference style run BENCH_ROUNDS times on fresh nodes and
 * the medians are reported. The last stdout line is JSON.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mapLimit } from '../lib/concurrency';
import { crlSerials, readCertificate } from '../lib/puppet';
import { PuppetApis } from '../lambdas/controller/puppet';
import { removeFromPuppet, type PurgeSubject } from '../lambdas/controller/puppet-purge';
import { eventually, labClients, type LabClients } from '../lab/clients';
import { enrollSimulatedNodes, type SimulatedNode } from '../test/support/fleet';
import { loadLab, type LabDescription } from '../lab/running-lab';
import ensureLab from '../lab/ensure-lab';

const run = promisify(execFile);
const NODES = Number(process.env.BENCH_NODES ?? 50);
const CLI_NODES = Math.min(NODES, Number(process.env.BENCH_CLI_NODES ?? 5));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

async function timed(work: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** The nodes as the registry knows them once verified: each one's certificate fingerprint (read before the clock starts). */
async function purgeSubjects(clients: LabClients, nodes: SimulatedNode[]): Promise<PurgeSubject[]> {
  const startedAt = new Date().toISOString();
  return mapLimit(nodes, 8, async (node) => ({
    instanceId: `i-${node.serial.toString(16).padStart(17, '0').slice(-17)}`,
    certname: node.certname,
    certificate: { kind: 'fingerprint' as const, sha256Fingerprint: readCertificate((await clients.ca.getCertificate(node.certname)) ?? '').sha256Fingerprint },
    startedAt,
    done: new Set(),
  }));
}

/** Exactly what the controller's purge executor does, through the same Puppet adapter (the registry writes aside). */
async function projectWay(lab: LabDescription, subjects: PurgeSubject[]): Promise<void> {
  const clients = labClients({ lab });
  try {
    const puppet = new PuppetApis(clients.ca, clients.puppetdb);
    await removeFromPuppet(puppet, subjects, { stepDone: async () => undefined, leftAlone: () => undefined });
  } finally {
    await clients.close();
  }
}

async function curl(lab: LabDescription, args: string[]): Promise<void> {
  const client = lab.lifecycleClient;
  await run('curl', ['--silent', '--show-error', '--fail', '--cacert', lab.caCertPath, '--cert', client.certPath, '--key', client.keyPath, ...args]);
}

async function referenceWay(lab: LabDescription, nodes: SimulatedNode[]): Promise<void> {
  for (const { certname } of nodes) {
    const status = `${lab.ca.url}/puppet-ca/v1/certificate_status/${certname}`;
    await curl(lab, ['-X', 'PUT', '-H', 'Content-Type: application/json', '--data', '{"desired_state":"revoked"}', status]);
    await curl(lab, ['-X', 'DELETE', status]);
    const body = JSON.stringify({ certname, producer_timestamp: new Date().toISOString() });
    await curl(lab, ['-X', 'POST', '-H', 'Content-Type: application/json', '--data', body, `${lab.puppetdb.url}/pdb/cmd/v1?command=deactivate_node&version=3&certname=${certname}`]);
  }
}

async function cliWay(lab: LabDescription, nodes: SimulatedNode[]): Promise<void> {
  const config = join(lab.primary.confdir, 'puppet.conf');
  for (const { certname } of nodes) {
    await run('puppetserver', ['ca', 'clean', '--certname', certname, '--config', config]);
  }
}

async function verifyPurged(clients: LabClients, nodes: SimulatedNode[], deactivated: boolean): Promise<void> {
  const crl = await clients.ca.getCrl();
  if (crl === 'not-modified') throw new Error('unexpected 304');
  const revoked = crlSerials(crl.pem);
  const notRevoked = nodes.filter((node) => !revoked.has(node.serial));
  if (notRevoked.length > 0) throw new Error(`${notRevoked.length} serial(s) missing from the CRL`);
  const remaining = await mapLimit(nodes, 8, (node) => clients.ca.getStatus(node.certname));
  if (remaining.some((status) => status !== undefined)) throw new Error('some certificates are still at the CA');
  if (deactivated) {
    await mapLimit(nodes, 8, (node) => eventually(async () => (await clients.puppetdb.getNode(node.certname))?.deactivated ?? undefined, `${node.certname} deactivated`));
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  await ensureLab();
  const lab = loadLab();
  const clients = labClients({ lab });
  try {
    const project: number[] = [];
    const reference: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      console.error(`round ${round}/${ROUNDS}: enrolling ${NODES * 2} simulated compile masters (not timed)…`);
      const forProject = await enrollSimulatedNodes(clients, NODES, `ip-10-2${round}-1`);
      const forReference = await enrollSimulatedNodes(clients, NODES, `ip-10-2${round}-2`);
      const subjects = await purgeSubjects(clients, forProject);
      project.push(await timed(() => projectWay(lab, subjects)));
      await verifyPurged(clients, forProject, true);
      reference.push(await timed(() => referenceWay(lab, forReference)));
      await verifyPurged(clients, forReference, true);
      console.error(`  project ${project.at(-1)!.toFixed(3)} s · reference style ${reference.at(-1)!.toFixed(3)} s`);
    }
    const forCli = await enrollSimulatedNodes(clients, CLI_NODES, 'ip-10-29-3');
    const cliSampleSeconds = await timed(() => cliWay(lab, forCli));
    await verifyPurged(clients, forCli, false);
    const cliSeconds = (cliSampleSeconds / CLI_NODES) * NODES;

    const projectSeconds = median(project);
    const referenceSeconds = median(reference);
    const round = (value: number) => Math.round(value * 1000) / 1000;
    console.error(
      `median of ${ROUNDS}: project ${round(projectSeconds)} s · reference style ${round(referenceSeconds)} s · ` +
        `puppetserver ca clean ${round(cliSampleSeconds)} s for ${CLI_NODES} node(s), ${round(cliSeconds)} s scaled to ${NODES} (CA only)`,
    );
    console.log(
      JSON.stringify({
        nodes: NODES,
        project_s: round(projectSeconds),
        reference_style_s: round(referenceSeconds),
        cli_s: round(cliSeconds),
        speedup_vs_reference_style: Math.round((referenceSeconds / projectSeconds) * 10) / 10,
        rounds: ROUNDS,
        cli_measured_nodes: CLI_NODES,
        cli_extrapolated: CLI_NODES !== NODES,
      }),
    );
  } finally {
    await clients.close();
  }
}

await main();
