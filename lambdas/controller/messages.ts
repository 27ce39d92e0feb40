import * as z from 'zod';
import { NodeAgentNoticeSchema, instanceIdSchema as instanceId, senderInstanceId, sentByRole } from '../../lib/node-agent-notice';
import type { Trigger } from './model';
import { RUN_ID_PATTERN, RUN_ID_RULE, type LifecycleHook } from './ports';
import { GONE_EC2_STATES, isGoneEc2State } from './vocabulary';

/**
 * The queue's message bodies, each defined once: EventBridge events as delivered (lifecycle
 * actions, EC2 state changes, the reconcile schedule), node-agent notices (lib/node-agent-notice)
 * and the controller's own rechecks. The stack's rules, the controller and the lab all use these
 * definitions. Only the fields the controller uses are checked. Who sent a message is SQS's word,
 * not the body's: a node agent's notice counts only when the instance it names sent it, and
 * nothing but such a notice counts from a compile master (any instance of the tier may send to
 * the queue).
 */

// ---- EventBridge events --------------------------------------------------------------------

/** Auto Scaling's lifecycle-action events, one per hook. */
export const LIFECYCLE_ACTION = {
  source: 'aws.autoscaling',
  launch: { detailType: 'EC2 Instance-launch Lifecycle Action', transition: 'autoscaling:EC2_INSTANCE_LAUNCHING' },
  terminate: { detailType: 'EC2 Instance-terminate Lifecycle Action', transition: 'autoscaling:EC2_INSTANCE_TERMINATING' },
} as const satisfies { source: string } & Record<LifecycleHook, { detailType: string; transition: string }>;

/** EC2's state changes; only the gone states are forwarded and accepted. */
export const STATE_CHANGE = { source: 'aws.ec2', detailType: 'EC2 Instance State-change Notification', states: GONE_EC2_STATES } as const;

/** The reconcile schedule's event. */
export const SCHEDULE = { source: 'aws.events', detailType: 'Scheduled Event' } as const;

const HOOK_OF_DETAIL_TYPE = {
  [LIFECYCLE_ACTION.launch.detailType]: 'launch',
  [LIFECYCLE_ACTION.terminate.detailType]: 'terminate',
} as const satisfies Record<string, LifecycleHook>;

const LifecycleEvent = z.object({
  source: z.literal(LIFECYCLE_ACTION.source),
  'detail-type': z.enum([LIFECYCLE_ACTION.launch.detailType, LIFECYCLE_ACTION.terminate.detailType]),
  detail: z.object({
    AutoScalingGroupName: z.string(),
    LifecycleHookName: z.string(),
    EC2InstanceId: instanceId,
    LifecycleTransition: z.string(),
  }),
});

const StateChangeEvent = z.object({
  source: z.literal(STATE_CHANGE.source),
  'detail-type': z.literal(STATE_CHANGE.detailType),
  detail: z.object({ 'instance-id': instanceId, state: z.string() }),
});

const ScheduledEvent = z.object({
  source: z.literal(SCHEDULE.source),
  'detail-type': z.literal(SCHEDULE.detailType),
});

// ---- the controller's recheck --------------------------------------------------------------

const RECHECK_SOURCE = 'compile-masters.controller';
const RECHECK_REASONS = ['start-run', 'follow-run', 'await-node'] as const;
export type RecheckReason = (typeof RECHECK_REASONS)[number];

const Recheck = z.object({
  source: z.literal(RECHECK_SOURCE),
  version: z.literal(1),
  kind: z.literal('recheck'),
  reason: z.enum(RECHECK_REASONS),
  instanceId: instanceId.optional(),
  runId: z.string().regex(RUN_ID_PATTERN, RUN_ID_RULE).optional(),
  attempt: z.number().int().min(0).max(10_000),
});

/** A delayed message the controller sends itself, to look again at a run or a node. */
export type RecheckMessage = z.infer<typeof Recheck>;

export function recheckMessage(recheck: Omit<RecheckMessage, 'source' | 'version' | 'kind'>): RecheckMessage {
  return { source: RECHECK_SOURCE, version: 1, kind: 'recheck', ...recheck };
}

// ---- parsing -------------------------------------------------------------------------------

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
      const transition = HOOK_OF_DETAIL_TYPE[detailType];
      if (detail.LifecycleTransition !== LIFECYCLE_ACTION[transition].transition) {
        return { outcome: 'malformed', reason: `LifecycleTransition ${detail.LifecycleTransition} does not match "${detailType}"` };
      }
      if (detail.AutoScalingGroupName !== scope.groupName) return { outcome: 'ignored', reason: `lifecycle action of another group (${detail.AutoScalingGroupName})` };
      const hook = transition === 'launch' ? scope.launchHookName : scope.terminateHookName;
      if (detail.LifecycleHookName !== hook) return { outcome: 'ignored', reason: `lifecycle action of another hook (${detail.LifecycleHookName})` };
      return { outcome: 'trigger', trigger: { kind: 'lifecycle', transition, instanceId: detail.EC2InstanceId } };
    }
    case 'aws.ec2': {
      const state = message.detail.state;
      if (!isGoneEc2State(state)) return { outcome: 'ignored', reason: `EC2 state ${state} is not watched` };
      return { outcome: 'trigger', trigger: { kind: 'instance-state', instanceId: message.detail['instance-id'], state } };
    }
    case 'aws.events':
      return { outcome: 'trigger', trigger: { kind: 'schedule' } };
    case 'compile-masters.node-agent': {
      const { instanceId: id, event, publicKeySha256 } = message;
      const report = publicKeySha256 === undefined ? {} : { keyReport: { publicKeySha256, reportedAt: origin.sentAt } };
      // The agent says so after every boot: what keeps a reboot from counting as an unhealthy streak.
      const boot = event === 'booted' || event === 'enrolled' ? { bootedAt: origin.sentAt } : {};
      return { outcome: 'trigger', trigger: { kind: 'node-agent', instanceId: id, event, ...report, ...boot } };
    }
    case 'compile-masters.controller': {
      const { reason, instanceId: id, runId, attempt } = message;
      return { outcome: 'trigger', trigger: { kind: 'recheck', reason, attempt, ...(id ? { instanceId: id } : {}), ...(runId ? { runId } : {}) } };
    }
  }
}
