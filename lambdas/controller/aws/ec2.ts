import { EC2Client, paginateDescribeInstances } from '@aws-sdk/client-ec2';
import type { Ec2Instance } from '../model';
import type { InstancesPort } from '../ports';
import { awsCall } from './call';

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
