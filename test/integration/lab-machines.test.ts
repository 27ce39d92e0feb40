import { Agent, fetch } from 'undici';
import { describe, expect, it } from 'vitest';
import { loadLab, orchestratorToken, readPems, type LabDescription } from '../../lab/running-lab';
import { runScenario, scenarioWorkDir, type ScenarioResult } from '../../lab/scenario/scenario';

/** The run's figures on one line, for the CI log and the README's measured table. */
function printFigures(flavor: string, result: ScenarioResult): void {
  const { agents } = result;
  console.log(
    `lab scenario figures ${JSON.stringify({
      flavor,
      seconds: Math.round(result.seconds),
      agent_requests: agents?.requests,
      agent_failures: agents?.failures,
      catalog_p50_ms: agents?.catalogP50Ms,
      catalog_p95_ms: agents?.catalogP95Ms,
      time_to_serving_s: agents?.timeToServingS,
      primary_runs: result.primaryRuns,
      faults: result.faults.length,
      consistent: result.report.consistent,
    })}`,
  );
  // What each shutdown's drain did: how long agents still connected kept Puppet Server up.
  console.log(`lab scenario drains\n${result.timeline.split('\n').filter((line) => / readiness /.test(line)).join('\n')}`);
}

/**
 * `npm run lab -- --faults` on real machines: compile masters as Debian machines under
 * systemd-nspawn, each with its own Puppet Server behind HAProxy, and agents putting load on the
 * tier throughout, while the CA and PuppetDB stop, the orchestrator fails and hangs, AWS
 * throttles, the controller crashes and events are lost or repeated. What users pay for is
 * measured here: not one failed agent request while the tier scales out, reboots, scales in and
 * heals. The plain run is the same six steps without the faults, so CI runs this one on PE (~22 min),
 * and the plain one on open source (below).
 */
describe('the lab scenario on machines, with faults', () => {
  it('serves every agent request through scale-out, a reboot, a stop, a scale-in, replacements and every fault, and ends consistent', async () => {
    const lab = loadLab();
    const result = await runScenario({ lab, faults: true, flavor: 'pe', workDir: await scenarioWorkDir(lab) });
    printFigures('pe, faults', result);
    expect(result.report.problems, result.timeline).toEqual([]);
    expect(result.faults.length).toBeGreaterThan(0);
    expect(result.faults.filter((fault) => fault.recoveredAt === undefined), result.timeline).toEqual([]);
    expect(result.report).toMatchObject({ consistent: true, orphaned_certs: 0, wrong_purges: 0, pending_lifecycle_actions: 0, protected_untouched: true, targets_match: true });
    expect(result.steps.map((step) => step.number)).toEqual([1, 2, 3, 4, 5, 6]);
    const agents = result.agents;
    expect(agents, result.timeline).toBeDefined();
    expect(agents?.failures, JSON.stringify(agents)).toBe(0);
    expect(agents?.rebootIdentityKept).toBe(true);
    // Load really ran, on more than one compile master, and every launch served catalogs.
    expect(agents?.requests).toBeGreaterThan(200);
    expect(Object.keys(agents?.byCompileMaster ?? {}).length).toBeGreaterThan(1);
    expect(Object.values(agents?.timeToServingS ?? {}).every((seconds) => typeof seconds === 'number' && seconds > 0), JSON.stringify(agents?.timeToServingS)).toBe(true);
    expect(agents?.realAgentRuns.every((run) => run.exitCode === 0 || run.exitCode === 2), JSON.stringify(agents?.realAgentRuns)).toBe(true);
  }, 50 * 60_000);
});

/** How many jobs the lab's orchestrator double has run (it keeps them while it runs). */
async function orchestratorJobs(lab: LabDescription): Promise<number> {
  const dispatcher = new Agent({ connect: { ca: readPems(lab).ca } });
  try {
    const response = await fetch(`${lab.orchestrator.url}/orchestrator/v1/jobs`, { dispatcher, headers: { 'x-authentication': orchestratorToken(lab) } });
    expect(response.status).toBe(200);
    return ((await response.json()) as { pagination: { total: number } }).pagination.total;
  } finally {
    await dispatcher.close();
  }
}

/**
 * Open-source Puppet: no PCP broker behind the load balancer, and no orchestrator. The controller
 * converges the primary with its SSM Run Command adapter, against the lab's SSM endpoint double,
 * which runs the adapter's script (a real `puppet agent` run of the lab's primary). The plain run:
 * the faults are PE's run above.
 */
describe('the lab scenario on machines, open-source Puppet', () => {
  it('serves every agent request while the primary is converged through SSM Run Command, never the orchestrator', async () => {
    const lab = loadLab();
    const jobsBefore = await orchestratorJobs(lab);
    const result = await runScenario({ lab, faults: false, flavor: 'oss', workDir: await scenarioWorkDir(lab) });
    printFigures('oss', result);
    expect(result.report.problems, result.timeline).toEqual([]);
    expect(result.report).toMatchObject({ consistent: true, orphaned_certs: 0, wrong_purges: 0, pending_lifecycle_actions: 0, protected_untouched: true, targets_match: true });
    expect(result.steps.map((step) => step.number)).toEqual([1, 2, 3, 4, 5, 6]);
    // Launches complete only once the primary's run finished: SSM's runs did it, the orchestrator ran nothing.
    expect(result.primaryRuns).toBeGreaterThan(0);
    expect(await orchestratorJobs(lab)).toBe(jobsBefore);
    const agents = result.agents;
    expect(agents?.failures, JSON.stringify(agents)).toBe(0);
    expect(agents?.rebootIdentityKept).toBe(true);
    expect(agents?.requests).toBeGreaterThan(200);
    expect(Object.values(agents?.timeToServingS ?? {}).every((seconds) => typeof seconds === 'number' && seconds > 0), JSON.stringify(agents?.timeToServingS)).toBe(true);
    expect(agents?.realAgentRuns.every((run) => run.exitCode === 0 || run.exitCode === 2), JSON.stringify(agents?.realAgentRuns)).toBe(true);
  }, 40 * 60_000);
});
