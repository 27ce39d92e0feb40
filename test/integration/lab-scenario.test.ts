import { describe, expect, it } from 'vitest';
import { runScenario, scenarioWorkDir } from '../../lab/scenario/scenario';
import { loadLab } from '../../lab/running-lab';

/**
 * `npm run lab` end to end: the real controller and real node agents against the Puppet lab, six
 * steps, then the consistency check — once plain (~4.5 min) and once with faults (~7 min): both
 * belong in every CI run, which has 90 minutes and needs ~10 for the rest.
 */
describe('the lab scenario', () => {
  it('plays scale out, reboots, scale in, an outside termination, lost and repeated events and a forged CSR, and ends consistent', async () => {
    const lab = loadLab();
    const result = await runScenario({ lab, faults: false, workDir: await scenarioWorkDir(lab) });
    expect(result.report.problems, result.timeline).toEqual([]);
    expect(result.report).toMatchObject({ consistent: true, orphaned_certs: 0, wrong_purges: 0, pending_lifecycle_actions: 0, protected_untouched: true, targets_match: true });
    expect(result.steps.map((step) => step.number)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(result.timeline).toMatch(/Refused a certificate request — i-\w+; reasons: i-\w+ is not a member of the group/);
  }, 480_000);

  it('ends consistent through CA and PuppetDB outages, orchestrator 500s and hangs, throttling, a crash and lost events', async () => {
    const lab = loadLab();
    const result = await runScenario({ lab, faults: true, workDir: await scenarioWorkDir(lab) });
    expect(result.report.problems, result.timeline).toEqual([]);
    expect(result.faults.length).toBeGreaterThan(0);
    expect(result.faults.filter((fault) => fault.recoveredAt === undefined)).toEqual([]);
    expect(result.report).toMatchObject({ consistent: true, orphaned_certs: 0, wrong_purges: 0 });
  }, 720_000);
});
