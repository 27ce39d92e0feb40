/**
 * `npm run bench:burst`: 50 compile masters terminate at once; the controller purges them against
 * the real Puppet lab (CA clean, PuppetDB deactivate) and completes their terminate lifecycle
 * actions, with AWS in memory. Batches arrive one after another, as the stack's reconcile lease
 * has them take turns. Timed: from the first batch until no lifecycle action is left pending. Then
 * the primary's run is let through and the end state is checked (serials in the CRL, nodes
 * deactivated) before the result counts. The last stdout line is JSON.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { crlSerials } from '../lib/puppet/x509';
import { handleBatch } from '../lambdas/controller/batch';
import { TIMING } from '../lambdas/controller/vocabulary';
import { reconcile, type ControllerContext } from '../lambdas/controller/reconcile';
import ensureLab from '../lab/ensure-lab';
import { eventually, labClients, labOrchestratorRun, labPuppetApis } from '../lab/clients';
import { mapLimit } from '../lib/concurrency';
import { enrollSimulatedNodes } from '../test/support/fleet';
import { loadLab } from '../lab/running-lab';
import { LAUNCH_CEILING_MINUTES } from '../lib/launch-budget';
import { ManualClock, MemoryCloud, QueueDriver } from '../lab/memory-cloud';
import { RecordingLogger, RecordingMetrics } from '../test/unit/controller/support';

const TERMINATIONS = Number(process.env.BENCH_TERMINATIONS ?? 50);
const BATCH_SIZE = 10;

async function main(): Promise<void> {
  await ensureLab();
  const lab = loadLab();
  const clients = labClients({ lab });

  console.log(`enrolling ${TERMINATIONS} simulated compile masters (not timed)…`);
  const nodes = await enrollSimulatedNodes(clients, TERMINATIONS, 'ip-10-40-0');

  const clock = new ManualClock();
  const cloud = new MemoryCloud({ clock: clock.now });
  const now = clock.now().toISOString();
  const instanceIds = nodes.map((node, index) => {
    const instanceId = `i-${(0xb0000000 + index).toString(16).padStart(17, '0')}`;
    cloud.addInService({ instanceId, privateDnsName: node.certname, privateIp: `10.40.${Math.floor(index / 250)}.${(index % 250) + 4}` });
    cloud.registry.seed({ instanceId, certname: node.certname, state: 'in-service', createdAt: now, updatedAt: now });
    return instanceId;
  });

  const puppet = labPuppetApis(lab);
  const primaryRun = labOrchestratorRun(lab);
  const jobs: string[] = [];
  const start = primaryRun.start.bind(primaryRun);
  primaryRun.start = async (description) => {
    const job = await start(description);
    jobs.push(job);
    return job;
  };
  const logger = new RecordingLogger();
  const metrics = new RecordingMetrics();
  const context: ControllerContext = {
    ports: cloud.ports(puppet, primaryRun),
    policy: { region: cloud.region, nlbDnsName: 'compile-masters.elb.amazonaws.com', extraAltNames: [], expectedExtensions: {}, protectedCertnames: new Set([lab.primary.certname, lab.lifecycleClient.certname]), replaceUnhealthyAfterSeconds: 900, launchCeilingSeconds: LAUNCH_CEILING_MINUTES.default * 60 },
    logger,
    metrics,
    clock: clock.now,
  };
  const driver = new QueueDriver(cloud, clock, (event) => handleBatch(event, { scope: cloud, logger, metrics: context.metrics, reconcile: (triggers) => reconcile(context, triggers) }), { batchSize: BATCH_SIZE });

  cloud.scaleIn(instanceIds);
  const started = process.hrtime.bigint();
  let invocations = 0;
  while (cloud.group.pendingActions().length > 0) {
    if (!(await driver.deliver())) throw new Error(`queue empty with ${cloud.group.pendingActions().length} lifecycle actions still pending`);
    invocations += 1;
  }
  const purgeAndCompleteSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(`all ${TERMINATIONS} terminate actions completed in ${purgeAndCompleteSeconds.toFixed(3)} s, ${invocations} invocation(s) of ${BATCH_SIZE} events`);

  // Untimed: the rest of the queue, the quiet period, then the primary's run, followed until it ends.
  await driver.settle(TIMING.runQuietSeconds + 1);
  const deadline = Date.now() + 300_000;
  while (cloud.registry.peekRun().job) {
    if (Date.now() > deadline) throw new Error("the primary's orchestrator run did not end within 5 minutes");
    await sleep(1_000);
    await driver.settle(TIMING.followRunSeconds);
  }

  const crl = await clients.ca.getCrl();
  if (crl === 'not-modified') throw new Error('unexpected 304 for the CRL');
  const revoked = crlSerials(crl.pem);
  const notRevoked = nodes.filter((node) => !revoked.has(node.serial));
  if (notRevoked.length > 0) throw new Error(`${notRevoked.length} serial(s) missing from the CRL, e.g. ${notRevoked[0]?.certname}`);
  await mapLimit(nodes, 8, (node) => eventually(async () => (await clients.puppetdb.getNode(node.certname))?.deactivated ?? undefined, `${node.certname} deactivated`));
  const notPurged = instanceIds.filter((id) => cloud.registry.peek(id)?.state !== 'purged');
  if (notPurged.length > 0) throw new Error(`${notPurged.length} registry entries not purged`);
  const cleanBatches = logger.lines.filter((line) => line.message === 'Purged').length;
  console.log(`verified: ${TERMINATIONS} serials in the CRL, ${TERMINATIONS} nodes deactivated in PuppetDB; ${cleanBatches} clean call(s); orchestrator job(s): ${jobs.join(', ') || 'none'}`);
  await clients.close();

  console.log(JSON.stringify({ terminations: TERMINATIONS, orchestrator_runs: jobs.length, purge_and_complete_s: Number(purgeAndCompleteSeconds.toFixed(3)) }));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
