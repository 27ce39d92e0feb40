import { EC2Client, paginateDescribeInstances } from '@aws-sdk/client-ec2';
import type { Ec2Instance } from '../model';
import type { InstancesPort } from '../ports';
import { awsCall } from './call';

/*
 * Bundle cost: any import of @aws-sdk/client-ec2 (3.1169) keeps all of dist-es/schemas/schemas_0.js,
 * ~550 KB of the controller's 1.77 MB and ~80 ms of its cold import (bench:coldstart), for one
 * operation. Its schema objects use computed keys ({ [_xN]: ... }), which esbuild must assume have
 * side effects, so nothing in that file is tree-shaken: aws/aws-sdk-js-v3#7607, fix proposed in
 * smithy-lang/smithy-typescript#1889 (literal keys; the same file rewritten that way bundles to
 * ~30 KB with identical schemas). Evaluated and not taken: an EC2 client from before the change
 * (3.929) pins its own SDK core, credential chain and signer, +272 KB of duplicates; a lazy
 * import() grows the single-file bundle by 300 KB and moves the cost into the first invocation;
 * no other API fits: Auto Scaling and ELB do not report private DNS name, address and state, SSM
 * and AWS Config need an agent or a recorder and lag behind EC2.
 */

/** DescribeInstances accepts at most 200 values per filter; stay well below. */
const IDS_PER_CALL = 100;

export class Ec2Instances implements InstancesPort {
  constructor(private readonly client: EC2Client) {}

  /**
   * By `instance-id` filter rather than InstanceIds: an unknown id then simply does not come
   * back, instead of failing the whole call with InvalidInstanceID.NotFound.
   */
  async describe(instanceIds: readonly string[]): Promise<Map<string, Ec2Instance>> {
    const found = new Map<string, Ec2Instance>();
    for (let start = 0; start < instanceIds.length; start += IDS_PER_CALL) {
      const chunk = instanceIds.slice(start, start + IDS_PER_CALL);
      await awsCall('DescribeInstances', async () => {
        const pages = paginateDescribeInstances({ client: this.client }, { Filters: [{ Name: 'instance-id', Values: chunk }] });
        for await (const page of pages) {
          for (const instance of (page.Reservations ?? []).flatMap((reservation) => reservation.Instances ?? [])) {
            if (!instance.InstanceId) continue;
            found.set(instance.InstanceId, {
              instanceId: instance.InstanceId,
              state: instance.State?.Name ?? 'unknown',
              privateDnsName: instance.PrivateDnsName || undefined,
              privateIp: instance.PrivateIpAddress || undefined,
              launchTime: instance.LaunchTime,
            });
          }
        }
      });
    }
    return found;
  }
}
