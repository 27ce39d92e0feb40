import { parseArgs } from 'node:util';
import ensureLab from './ensure-lab';
import { loadLab } from './running-lab';
import { isLabFlavor, LAB_FLAVORS, type LabFlavor } from './scenario/flavor';
import { runScenario, scenarioWorkDir, type ScenarioResult } from './scenario/scenario';

/**
 * `npm run lab [-- --faults] [--flavor pe|oss] [--json]`: the whole lifecycle of a compile tier of real machines
 * against the Puppet lab (started if it is not running), under agent load, a timeline, and the
 * final consistency check. Exits 1 when the end state is not consistent or an agent request
 * failed, 2 when the scenario itself broke. The scenario takes the lab's lock itself.
 */
const USAGE = `usage: npm run lab [-- --faults] [--flavor ${LAB_FLAVORS.join('|')}] [--json]`;

function agentSummary(result: ScenarioResult): Record<string, unknown> {
  const agents = result.agents;
  if (!agents) return {};
  return {
    machines: agents.machines,
    agent_requests: agents.requests,
    agent_failures: agents.failures,
    agent_failures_by_step: agents.failuresByStep,
    ...(agents.failures > 0 ? { agent_failures_by_kind: agents.failuresByKind, agent_failure_details: agents.failureDetails } : {}),
    catalog_p50_ms: agents.catalogP50Ms,
    catalog_p95_ms: agents.catalogP95Ms,
    time_to_serving_s: agents.timeToServingS,
    reboot_identity_kept: agents.rebootIdentityKept,
    node_agent_boot_restarts: agents.bootRestarts,
    real_agent_runs: agents.realAgentRuns,
    requests_by_compile_master: agents.byCompileMaster,
  };
}

function summary(result: ScenarioResult, faults: boolean, flavor: LabFlavor): Record<string, unknown> {
  const { problems, ...report } = result.report;
  return {
    mode: faults ? 'faults' : 'plain',
    flavor,
    ...agentSummary(result),
    steps: result.steps.length,
    seconds: Math.round(result.seconds),
    faults_injected: result.faults.length,
    faults_survived: result.report.consistent ? result.faults.filter((fault) => fault.recoveredAt !== undefined).length : 0,
    primary_runs: result.primaryRuns,
    controller_passes: result.passes,
    events_dropped: result.eventsDropped,
    events_repeated: result.eventsRepeated,
    ...report,
    ...(problems.length > 0 ? { problems } : {}),
  };
}

function faultTable(result: ScenarioResult): string {
  const rows = result.faults.map((fault) => {
    const recovered = fault.recoveredAt === undefined ? 'not recovered' : `${(fault.recoveredAt - fault.injectedAt).toFixed(1)} s`;
    return `| ${fault.step} | ${fault.fault} | +${fault.injectedAt.toFixed(1)} s | ${recovered} | ${fault.recovery} |`;
  });
  return ['| step | fault | injected | recovered after | how |', '| --- | --- | --- | --- | --- |', ...rows].join('\n');
}

async function main(argv: readonly string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      options: { faults: { type: 'boolean', default: false }, flavor: { type: 'string', default: 'pe' }, json: { type: 'boolean', default: false } },
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const flavor = values.flavor;
  if (!isLabFlavor(flavor)) {
    console.error(`--flavor ${flavor} is not one the lab runs (${LAB_FLAVORS.join(', ')})\n${USAGE}`);
    return 2;
  }
  await ensureLab();
  const lab = loadLab();
  // LAB_TRACE=1: every controller log line as it happens, on stderr.
  const trace = process.env.LAB_TRACE ? (line: string) => console.error(`[controller] ${line}`) : undefined;
  const result = await runScenario({ trace, lab, faults: values.faults, flavor, workDir: await scenarioWorkDir(lab), progress: (line) => console.error(`[lab] ${line}`) });
  console.log(Object.entries(result.nodes).map(([label, node]) => `${label} = ${node.instanceId} ${node.certname}`).join('\n'));
  console.log(`\n${result.timeline}\n`);
  if (result.faults.length > 0) console.log(`${faultTable(result)}\n`);
  console.log(`controller log: ${result.log}\n`);
  const line = summary(result, values.faults, flavor);
  if (values.json) console.log(JSON.stringify(line));
  else console.log(Object.entries(line).map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join('\n'));
  const agentsClean = result.agents !== undefined && result.agents.failures === 0;
  return result.report.consistent && agentsClean ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(2);
  },
);
