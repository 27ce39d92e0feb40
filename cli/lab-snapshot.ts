import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod';
import type { Ec2Instance } from '../lambdas/controller/model';
import { ConfigError } from '../lib/errors';
import { addTarget, type TierObservation } from './status-view';

/**
 * The lab's simulated group, as `npm run lab` (lab/scenario) may leave it for `status --lab`:
 * `<lab dir>/scenario/cloud.json`, the memory cloud's members (`cloud.group.members()`), EC2
 * descriptions (`cloud.instances.describe(ids)`, launchTime as ISO text) and registry entries
 * (`cloud.registry.list()`), plus `writtenAt` and, where the scenario simulates it, target health.
 */
export const SNAPSHOT_FILE = join('scenario', 'cloud.json');

const SnapshotSchema = z.object({
  writtenAt: z.string(),
  members: z.array(z.object({ instanceId: z.string(), lifecycleState: z.string() })),
  instances: z.array(
    z.object({ instanceId: z.string(), state: z.string(), privateDnsName: z.string().optional(), privateIp: z.string().optional(), launchTime: z.string().optional() }),
  ),
  /** Target health as DescribeTargetHealth words it (healthy, unhealthy, draining, ...); omit when not simulated. */
  targets: z.array(z.object({ instanceId: z.string(), port: z.number().int(), state: z.string() })).optional(),
  registry: z.array(
    z.object({
      instanceId: z.string(),
      certname: z.string(),
      state: z.enum(['signed', 'converging', 'in-service', 'stalled', 'purging', 'purged']),
      createdAt: z.string(),
      updatedAt: z.string(),
      claimedAt: z.string().optional(),
    }),
  ),
});
export type CloudSnapshot = z.infer<typeof SnapshotSchema>;

/** The group side of the lab, when the scenario left a snapshot; undefined otherwise. */
export function readCloudSnapshot(labDir: string): (Pick<TierObservation, 'members' | 'instances' | 'registry' | 'targets'> & { file: string; writtenAt: string }) | undefined {
  const file = join(labDir, SNAPSHOT_FILE);
  if (!existsSync(file)) return undefined;
  let parsed: CloudSnapshot;
  try {
    parsed = SnapshotSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  } catch (cause) {
    throw new ConfigError(`The lab's cloud snapshot ${file} does not parse`, { cause, hint: 'run `npm run lab` again, or delete the file to see the certificates alone' });
  }
  const instances = new Map<string, Ec2Instance>(
    parsed.instances.map((instance) => [
      instance.instanceId,
      { ...instance, privateDnsName: instance.privateDnsName, privateIp: instance.privateIp, launchTime: instance.launchTime ? new Date(instance.launchTime) : undefined },
    ]),
  );
  let targets: Map<string, string[]> | undefined;
  if (parsed.targets) {
    targets = new Map();
    for (const target of parsed.targets) addTarget(targets, target.instanceId, target.port, target.state);
  }
  return { file, writtenAt: parsed.writtenAt, members: parsed.members, instances, registry: parsed.registry, targets };
}
