import { EC2Client, paginateDescribeInstances } from '@aws-sdk/client-ec2';
import { type AwsCall, sdkCall } from '../../../lib/aws-calls';
import type { Ec2Instance } from '../model';
import type { InstancesPort } from '../ports';
import { awsCall } from './call';

/*
 * Bundle cost: @aws-sdk/client-ec2 (3.1169) writes its schemas with computed keys, which esbuild
 * cannot tree-shake, so any one command would keep all ~550 KB of them (aws/aws-sdk-js-v3#7607).
 * scripts/aws-sdk-literal-keys.mjs rewrites them to literal keys at npm install, as upstream's
 * pending fix does, and the controller keeps ~30 KB of EC2. No other API fits: Auto Scaling and
 * ELB do not report private DNS name, address and state; SSM and AWS Config need an agent or a
 * recorder and lag behind EC2.
 */

/** The calls below, for the IAM simulation suite. */
export const EC2_CALLS: readonly AwsCall[] = [sdkCall('ec2:DescribeInstances', '*')];

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
