import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../lab/clients';
import { enrollAgents, realAgentRun, retireAgents, startFleet, type AgentIdentity, type FleetTarget } from '../../lab/fleet';
import { PRIMARY_CERTNAME } from '../../lab/layout';
import { loadLab, type LabDescription } from '../../lab/running-lab';

/**
 * The load fleet against the lab primary itself (a Puppet Server like any compile master): the
 * simulated agents' runs must be ones the real server accepts end to end — catalog compiled from
 * the lab_fleet class, file_metadata served, report stored in PuppetDB — and one real
 * `puppet agent --test` reaches it by a name only its private hosts file resolves.
 */
const PRIMARY: FleetTarget = { address: '127.0.0.1', port: 8140, servername: PRIMARY_CERTNAME };

interface PdbReport {
  certname: string;
  transaction_uuid: string;
  status: string;
}

async function reportsFor(lab: LabDescription, certnames: readonly string[]): Promise<PdbReport[]> {
  const query = JSON.stringify(['or', ...certnames.map((certname) => ['=', 'certname', certname])]);
  const response = await fetch(`${lab.puppetdb.plainUrl}/pdb/query/v4/reports?query=${encodeURIComponent(query)}`);
  expect(response.status).toBe(200);
  return (await response.json()) as PdbReport[];
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('agent fleet against the lab primary', () => {
  let lab: LabDescription;
  let identities: AgentIdentity[];
  const workDirs: string[] = [];

  beforeAll(async () => {
    lab = loadLab();
    // Three for the fleet, one for the real agent: one enrollment, two key pairs.
    identities = await enrollAgents({ count: 4, keyPairs: 2, lab });
  });

  afterAll(async () => {
    if (identities) await retireAgents(identities, lab);
    for (const dir of workDirs) await rm(dir, { recursive: true, force: true });
  });

  it('3 agents × 2 runs: every request answered 2xx by the primary, file metadata asked, reports in PuppetDB', async () => {
    const fleet = await startFleet({ agents: identities.slice(0, 3), concurrency: 3, runsPerAgent: 2, target: PRIMARY, lab, durationMs: 240_000 });
    await fleet.finished;

    expect(fleet.runs).toHaveLength(6);
    expect(fleet.runs.filter((run) => !run.ok)).toEqual([]);
    for (const agent of identities.slice(0, 3)) expect(fleet.runs.filter((run) => run.agent === agent.certname)).toHaveLength(2);

    for (const record of fleet.records) {
      expect(record.status, `${record.request} of ${record.agent}`).toBeGreaterThanOrEqual(200);
      expect(record.status).toBeLessThan(300);
      expect(record.ok).toBe(true);
      expect(record.answeredBy).toBe(PRIMARY_CERTNAME);
    }
    // Each run, in the agent's order: node, pluginsync (environment check, pluginfacts, plugins),
    // catalog, the two puppet:/// sources of lab_fleet, report.
    for (const run of fleet.runs) {
      const steps = fleet.records.filter((record) => record.runId === run.runId).map((record) => `${record.step} ${record.request}`);
      expect(steps).toEqual([
        `node GET /puppet/v3/node/${run.agent}`,
        'pluginsync GET /puppet/v3/file_metadatas/plugins',
        'pluginsync GET /puppet/v3/file_metadatas/pluginfacts',
        'pluginsync GET /puppet/v3/file_metadatas/plugins',
        `catalog POST /puppet/v3/catalog/${run.agent}`,
        'file_metadata GET /puppet/v3/file_metadata/modules/lab_fleet/motd.txt',
        'file_metadata GET /puppet/v3/file_metadata/modules/lab_fleet/fleet.conf',
        `report PUT /puppet/v3/report/${run.agent}`,
      ]);
    }

    const summary = fleet.summary();
    expect(summary.requests).toBe(48);
    expect(summary.failures).toBe(0);
    expect(summary.runs).toEqual({ started: 6, succeeded: 6, failed: 0 });
    expect(summary.catalog.count).toBe(6);
    expect(summary.catalog.p50Ms).toBeGreaterThan(0);
    expect(summary.catalog.p95Ms).toBeGreaterThanOrEqual(summary.catalog.p50Ms!);
    expect(summary.byCompileMaster).toEqual({ [PRIMARY_CERTNAME]: 48 });
    console.log(`catalog against the primary: p50 ${summary.catalog.p50Ms!.toFixed(0)} ms, p95 ${summary.catalog.p95Ms!.toFixed(0)} ms over ${summary.catalog.count}`);

    // PuppetDB stores reports asynchronously: every run's report arrives, with its lab_fleet notify.
    const certnames = identities.slice(0, 3).map((identity) => identity.certname);
    const reports = await eventually(async () => {
      const found = await reportsFor(lab, certnames);
      return found.length >= 6 ? found : undefined;
    }, 'the fleet reports in PuppetDB');
    expect(reports.map((report) => report.transaction_uuid).sort()).toEqual(fleet.runs.map((run) => run.runId).sort());
    expect(new Set(reports.map((report) => report.status))).toEqual(new Set(['changed']));
  });

  it('a closed port: every run fails at its first request with a connection error, at the requested rate', async () => {
    const fleet = await startFleet({
      agents: identities.slice(0, 2),
      runsPerMinute: 240,
      maxRuns: 3,
      target: { ...PRIMARY, port: await closedPort() },
      lab,
      durationMs: 30_000,
    });
    await fleet.finished;

    expect(fleet.runs).toHaveLength(3);
    for (const run of fleet.runs) expect(run).toMatchObject({ ok: false, failedStep: 'node' });
    expect(fleet.records).toHaveLength(3);
    for (const record of fleet.records) expect(record).toMatchObject({ step: 'node', status: 'connection-error', errorCode: 'ECONNREFUSED', ok: false });
    const starts = fleet.records.map((record) => record.startedAt).sort((a, b) => a - b);
    // 240 runs a minute: one every 250 ms.
    expect(starts.at(-1)! - starts[0]!).toBeGreaterThanOrEqual(450);
    const summary = fleet.summary();
    expect(summary.failures).toBe(3);
    expect(summary.failuresByStep).toEqual({ node: 3 });
    expect(summary.failuresByKind).toEqual({ 'connection-error:ECONNREFUSED': 3 });
    expect(summary.byCompileMaster).toEqual({});
  });

  it('a server whose certificate does not carry the name the agents ask for is refused', async () => {
    const fleet = await startFleet({ agents: identities.slice(0, 1), concurrency: 1, runsPerAgent: 1, target: { ...PRIMARY, servername: 'puppet.fleet.lab.test' }, lab });
    await fleet.finished;
    expect(fleet.records).toEqual([expect.objectContaining({ step: 'node', status: 'connection-error', errorCode: 'ERR_TLS_CERT_ALTNAME_INVALID', ok: false })]);
  });

  it('a real puppet agent --test reaches the server by a name only its private hosts file resolves', async () => {
    const hostsBefore = await readFile('/etc/hosts', 'utf8');
    // The lab primary's name is not in the machine's resolver: only the agent's hosts file has it.
    await expect(promisify(execFile)('getent', ['hosts', PRIMARY_CERTNAME])).rejects.toThrow();
    const workDir = await mkdtemp(join(tmpdir(), 'fleet-real-agent-'));
    workDirs.push(workDir);

    const result = await realAgentRun({ identity: identities[3]!, serverName: PRIMARY_CERTNAME, address: '127.0.0.1', port: 8140, workDir, lab });

    expect(result.ok, result.output).toBe(true);
    expect([0, 2]).toContain(result.exitCode);
    expect(result.record).toMatchObject({ agent: identities[3]!.certname, step: 'agent-run', ok: true });
    expect(result.record.latencyMs).toBe(result.durationMs);
    // lab_fleet converged in the agent's own vardir, with the files the file server serves.
    expect(await readFile(join(workDir, 'var', 'lab_fleet', 'motd.txt'), 'utf8')).toBe('This node is part of the compile-masters lab fleet.\n');
    expect(await readFile(join(workDir, 'var', 'lab_fleet', 'node.txt'), 'utf8')).toBe(`certname=${identities[3]!.certname}\nenvironment=production\n`);
    expect(await readFile('/etc/hosts', 'utf8')).toBe(hostsBefore);
    const report = await eventually(async () => (await reportsFor(lab, [identities[3]!.certname]))[0], 'the real agent report in PuppetDB');
    expect(report.transaction_uuid).toBe(result.transactionUuid);
  });
});
