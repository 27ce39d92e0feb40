import * as z from 'zod';
import { NodeAgentNoticeSchema, instanceIdSchema as instanceId, senderInstanceId, sentByRole } from '../../lib/node-agent-notice';
import type { Trigger } from './model';
import { RUN_ID_PATTERN, RUN_ID_RULE } from './ports';

/**
 * The queue's message bodies: EventBridge events as delivered (lifecycle actions, EC2 state
 * changes, the reconcile schedule), node-agent notices and the controller's own rechecks. Only
 * the fields the controller uses are checked. Who sent a message is SQS's word, not the body's:
 * a node agent's notice counts only when the instance it names sent it, and nothing but such a
 * notice counts from a compile master (any instance of the tier may send to the queue).
 */

export const LAUNCH_DETAIL_TYPE = 'EC2 Instance-launch Lifecycle Action';
export const TERMINATE_DETAIL_TYPE = 'EC2 Instance-terminate Lifecycle Action';
const TRANSITIONS = {
  [LAUNCH_DETAIL_TYPE]: 'autoscaling:EC2_INSTANCE_LAUNCHING',
  [TERMINATE_DETAIL_TYPE]: 'autoscaling:EC2_INSTANCE_TERMINATING',
} as const;

const LifecycleEvent = z.object({
  source: z.literal('aws.autoscaling'),
  'detail-type': z.enum([LAUNCH_DETAIL_TYPE, TERMINATE_DETAIL_TYPE]),
  detail: z.object({
    AutoScalingGroupName: z.string(),
    LifecycleHookName: z.string(),
    EC2InstanceId: instanceId,
    LifecycleTransition: z.string(),
  }),
});

const StateChangeEvent = z.object({
  source: z.literal('aws.ec2'),
  'detail-type': z.literal('EC2 Instance State-change Notification'),
  detail: z.object({ 'instance-id': instanceId, state: z.string() }),
});

const ScheduledEvent = z.object({
  source: z.literal('aws.events'),
  'detail-type': z.literal('Scheduled Event'),
});

const Recheck = z.object({
  source: z.literal('compile-masters.controller'),
  version: z.literal(1),
  kind: z.literal('recheck'),
  reason: z.enum(['start-run', 'follow-run', 'await-node']),
  instanceId: instanceId.optional(),
  runId: z.string().regex(RUN_ID_PATTERN, RUN_ID_RULE).optional(),
  attempt: z.number().int().min(0).max(10_000),
});

const Message = z.discriminatedUnion('source', [LifecycleEvent, StateChangeEvent, ScheduledEvent, NodeAgentNoticeSchema, Recheck]);

export interface MessageScope {
  groupName: string;
  launchHookName: string;
  terminateHookName: string;
  /** The unique id (AROA…) of the compile masters' instance role: SQS's SenderId starts with it. */
  compileMasterRoleId: string;
}

/** What SQS itself says about a message: attributes the sender cannot set. */
export interface MessageOrigin {
  senderId: string | undefined;
  /** SentTimestamp, as an ISO date. */
  sentAt: string;
}

export type ParsedMessage =
  | { outcome: 'trigger'; trigger: Trigger }
  /** Well-formed, but not for this controller (another group's hook, a state it does not watch). */
  | { outcome: 'ignored'; reason: string }
  /** Its sender may not say this: a compile master speaking for another instance, or as EventBridge. */
  | { outcome: 'forged'; reason: string }
  | { outcome: 'malformed'; reason: string };

export function parseMessage(body: string, scope: MessageScope, origin: MessageOrigin): ParsedMessage {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return { outcome: 'malformed', reason: 'body is not JSON' };
  }
  const parsed = Message.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { outcome: 'malformed', reason: `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'unrecognised message'}` };
  }
  const message = parsed.data;
  const sender = senderInstanceId(origin.senderId, scope.compileMasterRoleId);
  if (message.source === 'compile-masters.node-agent') {
    if (sender !== message.instanceId) {
      return { outcome: 'forged', reason: `a node-agent notice about ${message.instanceId} not sent by that instance (sender ${origin.senderId ?? 'unknown'})` };
    }
  } else if (sentByRole(origin.senderId, scope.compileMasterRoleId)) {
    return { outcome: 'forged', reason: `a ${message.source} message sent with a compile master's credentials (sender ${origin.senderId ?? 'unknown'})` };
  }
  switch (message.source) {
    case 'aws.autoscaling': {
      const { detail } = message;
      const detailType = message['detail-type'];
      const transition = detailType === LAUNCH_DETAIL_TYPE ? 'launch' : 'terminate';
      if (detail.LifecycleTransition !== TRANSITIONS[detailType]) {
        return { outcome: 'malformed', reason: `LifecycleTransition ${detail.LifecycleTransition} does not match "${detailType}"` };
      }
      if (detail.AutoScalingGroupName !== scope.groupName) return { outcome: 'ignored', reason: `lifecycle action of another group (${detail.AutoScalingGroupName})` };
      const hook = transition === 'launch' ? scope.launchHookName : scope.terminateHookName;
      if (detail.LifecycleHookName !== hook) return { outcome: 'ignored', reason: `lifecycle action of another hook (${detail.LifecycleHookName})` };
      return { outcome: 'trigger', trigger: { kind: 'lifecycle', transition, instanceId: detail.EC2InstanceId } };
    }
    case 'aws.ec2': {
      const state = message.detail.state;
      if (state !== 'shutting-down' && state !== 'terminated') return { outcome: 'ignored', reason: `EC2 state ${state} is not watched` };
      return { outcome: 'trigger', trigger: { kind: 'instance-state', instanceId: message.detail['instance-id'], state } };
    }
    case 'aws.events':
      return { outcome: 'trigger', trigger: { kind: 'schedule' } };
    case 'compile-masters.node-agent': {
      const { instanceId: id, event, publicKeySha256 } = message;
      const report = publicKeySha256 === undefined ? {} : { keyReport: { publicKeySha256, reportedAt: origin.sentAt } };
      return { outcome: 'trigger', trigger: { kind: 'node-agent', instanceId: id, event, ...report } };
    }
    case 'compile-masters.controller': {
      const { reason, instanceId: id, runId, attempt } = message;
      return { outcome: 'trigger', trigger: { kind: 'recheck', reason, attempt, ...(id ? { instanceId: id } : {}), ...(runId ? { runId } : {}) } };
    }
  }
}
