import {
  AutoScalingClient,
  CompleteLifecycleActionCommand,
  DescribeAutoScalingGroupsCommand,
  RecordLifecycleActionHeartbeatCommand,
  SetInstanceHealthCommand,
} from '@aws-sdk/client-auto-scaling';
import { type AwsCall, sdkCall } from '../../../lib/aws-calls';
import { AwsCallError } from '../../../lib/errors';
import type { Member } from '../model';
import type { GroupPort, LifecycleHook } from '../ports';
import { awsCall, errorName, toAwsCallError } from './call';

export interface GroupNames {
  groupName: string;
  launchHookName: string;
  terminateHookName: string;
}

/** The calls below, for the IAM simulation suite. */
export const AUTO_SCALING_CALLS: readonly AwsCall[] = [
  sdkCall('autoscaling:DescribeAutoScalingGroups', '*'),
  sdkCall('autoscaling:CompleteLifecycleAction', 'autoScalingGroup'),
  sdkCall('autoscaling:RecordLifecycleActionHeartbeat', 'autoScalingGroup'),
  sdkCall('autoscaling:SetInstanceHealth', 'autoScalingGroup'),
];

/** AWS answers this when the action was completed already, timed out, or never existed. */
const NO_ACTIVE_ACTION = /No active Lifecycle Action/i;

export class AutoScalingGroup implements GroupPort {
  constructor(
    private readonly client: AutoScalingClient,
    private readonly names: GroupNames,
  ) {}

  async members(): Promise<Member[]> {
    const { groupName } = this.names;
    const answer = await awsCall('DescribeAutoScalingGroups', () =>
      this.client.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [groupName] })),
    );
    const group = answer.AutoScalingGroups?.find((candidate) => candidate.AutoScalingGroupName === groupName);
    if (!group) throw new AwsCallError(`Auto Scaling group ${groupName} does not exist`, { hint: 'check GROUP_NAME against the deployed stack' });
    return (group.Instances ?? []).flatMap((instance) =>
      instance.InstanceId && instance.LifecycleState
        ? [
            {
              instanceId: instance.InstanceId,
              lifecycleState: instance.LifecycleState,
              ...(instance.HealthStatus === 'Healthy' || instance.HealthStatus === 'Unhealthy' ? { healthStatus: instance.HealthStatus } : {}),
            },
          ]
        : [],
    );
  }

  async completeLifecycleAction(instanceId: string, hook: LifecycleHook, result: 'CONTINUE' | 'ABANDON'): Promise<'completed' | 'already-completed'> {
    try {
      await this.client.send(
        new CompleteLifecycleActionCommand({
          AutoScalingGroupName: this.names.groupName,
          LifecycleHookName: this.hookName(hook),
          InstanceId: instanceId,
          LifecycleActionResult: result,
        }),
      );
      return 'completed';
    } catch (error) {
      if (isNoActiveAction(error)) return 'already-completed';
      throw toAwsCallError('CompleteLifecycleAction', error);
    }
  }

  async recordHeartbeat(instanceId: string, hook: LifecycleHook): Promise<'recorded' | 'no-active-action'> {
    try {
      await this.client.send(
        new RecordLifecycleActionHeartbeatCommand({
          AutoScalingGroupName: this.names.groupName,
          LifecycleHookName: this.hookName(hook),
          InstanceId: instanceId,
        }),
      );
      return 'recorded';
    } catch (error) {
      if (isNoActiveAction(error)) return 'no-active-action';
      throw toAwsCallError('RecordLifecycleActionHeartbeat', error);
    }
  }

  async setUnhealthy(instanceId: string): Promise<void> {
    await awsCall('SetInstanceHealth', () =>
      // Not the grace period: the controller has already waited longer than any reboot may take.
      this.client.send(new SetInstanceHealthCommand({ InstanceId: instanceId, HealthStatus: 'Unhealthy', ShouldRespectGracePeriod: false })),
    );
  }

  private hookName(hook: LifecycleHook): string {
    return hook === 'launch' ? this.names.launchHookName : this.names.terminateHookName;
  }
}

function isNoActiveAction(error: unknown): boolean {
  return errorName(error) === 'ValidationError' && error instanceof Error && NO_ACTIVE_ACTION.test(error.message);
}
