import { DescribeTargetHealthCommand } from '@aws-sdk/client-elastic-load-balancing-v2';
import { join } from 'node:path';
import { AutoScalingGroup } from '../lambdas/controller/aws/auto-scaling';
import { awsCall } from '../lambdas/controller/aws/call';
import { Ec2Instances } from '../lambdas/controller/aws/ec2';
import { DynamoRegistry } from '../lambdas/controller/aws/registry';
import type { CertState } from '../lambdas/controller/model';
import { labDir } from '../lab/description';
import { ConfigError } from '../lib/errors';
import { CaClient } from '../lib/puppet/ca';
import { PuppetDbClient } from '../lib/puppet/puppetdb';
import type { CliDeps } from './deps';
import { readCloudSnapshot, SNAPSHOT_FILE } from './lab-snapshot';
import { addTarget, certificateRows, certnamesOf, pdbState, renderTable, statusRows, type PdbState, type StatusRow, type TierObservation } from './status-view';
import { stackTargetGroups } from './stack';
import type { Target } from './target';

export interface StatusResult {
  source: string;
  rows: StatusRow[];
}

/** Every certificate and node PuppetDB knows, deactivated ones included (hidden by default). */
const ALL_NODES = ['or', ['=', ['node', 'active'], true], ['=', ['node', 'active'], false]];

export async function status(target: Target, deps: Pick<CliDeps, 'warn'>): Promise<StatusResult> {
  const bundle = await target.secrets.clientBundle();
  const tls = { ca: bundle.ca, cert: bundle.cert, key: bundle.key };
  const ca = new CaClient({ baseUrl: target.endpoints.ca, tls });
  const puppetdb = new PuppetDbClient({ baseUrl: target.endpoints.puppetdb, tls });
  try {
    if (target.stack && target.aws) {
      const group = await observeAws(target, deps);
      return { source: `stack ${target.stack.stackName}`, rows: statusRows({ ...group, ...(await observePuppet(ca, puppetdb, certnamesOf(group))) }) };
    }
    if (target.lab) {
      const snapshot = readCloudSnapshot(labDir());
      if (snapshot) {
        return {
          source: `the lab's CA and PuppetDB, and its simulated group (${snapshot.file}, written ${snapshot.writtenAt})`,
          rows: statusRows({ ...snapshot, ...(await observePuppet(ca, puppetdb, certnamesOf(snapshot))) }),
        };
      }
      deps.warn(`No simulated group in the lab (${join(labDir(), SNAPSHOT_FILE)}, written by \`npm run lab\`): showing the CA's and PuppetDB's view of every certname but the lab's own.\n`);
      return { source: "the lab's CA and PuppetDB", rows: await certificatesOnly(ca, puppetdb, new Set([target.lab.primary.certname, target.lab.lifecycleClient.certname, target.lab.forbiddenClient.certname])) };
    }
    throw new ConfigError('status needs a group to look at', { hint: 'pass --stack NAME or --lab' });
  } finally {
    await Promise.all([ca.close(), puppetdb.close()]);
  }
}

export function reportStatus(result: StatusResult, options: { json: boolean }, deps: Pick<CliDeps, 'write' | 'color'>): number {
  if (options.json) deps.write(`${JSON.stringify({ source: result.source, rows: result.rows }, null, 2)}\n`);
  else deps.write(`Tier: ${result.source}\n\n${renderTable(result.rows, deps.color)}`);
  return 0;
}

async function observeAws(target: Target, deps: Pick<CliDeps, 'warn'>): Promise<Omit<TierObservation, 'ca' | 'puppetdb'>> {
  const { outputs } = target.stack!;
  const aws = target.aws!;
  // Read-only: this CLI never completes lifecycle actions, so it names no hooks.
  const group = new AutoScalingGroup(aws.autoScaling, { groupName: outputs.AutoScalingGroupName, launchHookName: '', terminateHookName: '' });
  const registry = new DynamoRegistry(aws.dynamo, outputs.RegistryTableName, (invalid) =>
    deps.warn(`Registry item ${String(invalid.instanceId)} in ${outputs.RegistryTableName} left out: it does not parse (${invalid.problem})\n`),
  );
  const [members, entries, targets] = await Promise.all([group.members(), registry.list().then((listing) => listing.entries), targetHealth(target)]);
  const instances = await new Ec2Instances(aws.ec2).describe([...new Set([...members.map((member) => member.instanceId), ...entries.map((entry) => entry.instanceId)])]);
  return { members, instances, registry: entries, targets };
}

/** "port:state" per instance and target group (8140 and 8142), as the load balancer sees them. */
async function targetHealth(target: Target): Promise<Map<string, string[]>> {
  const health = new Map<string, string[]>();
  for (const arn of await stackTargetGroups(target.aws!.cloudFormation, target.stack!.stackName)) {
    const answer = await awsCall('DescribeTargetHealth', () => target.aws!.elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn })));
    for (const description of answer.TargetHealthDescriptions ?? []) {
      const id = description.Target?.Id;
      if (!id) continue;
      addTarget(health, id, description.Target?.Port ?? '?', description.TargetHealth?.State ?? 'unknown');
    }
  }
  return health;
}

async function observePuppet(ca: CaClient, puppetdb: PuppetDbClient, certnames: readonly string[]): Promise<Pick<TierObservation, 'ca' | 'puppetdb'>> {
  const caStates = new Map<string, CertState>();
  const pdbStates = new Map<string, PdbState>();
  // A tier is tens of instances; the clients' connection pools bound what is in flight.
  await Promise.all(
    certnames.map(async (certname) => {
      const [cert, node] = await Promise.all([ca.getStatus(certname), puppetdb.getNode(certname)]);
      caStates.set(certname, cert?.state ?? 'absent');
      pdbStates.set(certname, pdbState(node));
    }),
  );
  return { ca: caStates, puppetdb: pdbStates };
}

async function certificatesOnly(ca: CaClient, puppetdb: PuppetDbClient, infrastructure: ReadonlySet<string>): Promise<StatusRow[]> {
  const [certs, nodes] = await Promise.all([ca.listStatuses(), puppetdb.queryNodes(ALL_NODES)]);
  const keep = (name: string) => !infrastructure.has(name);
  return certificateRows(
    new Map(certs.filter((cert) => keep(cert.name)).map((cert) => [cert.name, cert.state])),
    new Map(nodes.filter((node) => keep(node.certname)).map((node) => [node.certname, pdbState(node)])),
  );
}
