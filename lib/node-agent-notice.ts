import * as z from 'zod';

/**
 * The node agent's message to the controller, defined once: the node agent builds it, the
 * controller parses it, the tests and the lab send it. Its body proves nothing by itself; what
 * makes it the instance's own word is who SQS says sent it (see `senderInstanceId`).
 */

const INSTANCE_ID_PATTERN = /^i-[0-9a-f]{8,17}$/;
export const instanceIdSchema = z.string().regex(INSTANCE_ID_PATTERN, 'is not an EC2 instance id');

/** The hex SHA-256 of a public key, as lib/puppet/csr.ts computes it (`publicKeySha256`). */
const keySha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'is not a hex SHA-256');

/**
 * enrolling: a new key exists and its CSR is about to be submitted (carries the key's hash);
 * csr-submitted: the CSR is at the CA (carries the key's hash again);
 * enrolled / booted: the node serves, after enrolling or with the identity it kept.
 */
const NODE_AGENT_EVENTS = ['enrolling', 'csr-submitted', 'enrolled', 'booted'] as const;
export type NodeAgentEvent = (typeof NODE_AGENT_EVENTS)[number];
const KEYED_EVENTS: ReadonlySet<NodeAgentEvent> = new Set(['enrolling', 'csr-submitted']);

const NODE_AGENT_SOURCE = 'compile-masters.node-agent';

export const NodeAgentNoticeSchema = z
  .object({
    source: z.literal(NODE_AGENT_SOURCE),
    version: z.literal(2),
    instanceId: instanceIdSchema,
    event: z.enum(NODE_AGENT_EVENTS),
    publicKeySha256: keySha256Schema.optional(),
  })
  .refine((notice) => KEYED_EVENTS.has(notice.event) === (notice.publicKeySha256 !== undefined), {
    message: 'publicKeySha256 comes with enrolling and csr-submitted, and only with them',
    path: ['publicKeySha256'],
  });
export type NodeAgentNotice = z.infer<typeof NodeAgentNoticeSchema>;

export function nodeAgentNotice(instanceId: string, event: 'enrolling' | 'csr-submitted', publicKeySha256: string): NodeAgentNotice;
export function nodeAgentNotice(instanceId: string, event: 'enrolled' | 'booted'): NodeAgentNotice;
export function nodeAgentNotice(instanceId: string, event: NodeAgentEvent, publicKeySha256?: string): NodeAgentNotice {
  return { source: NODE_AGENT_SOURCE, version: 2, instanceId, event, ...(publicKeySha256 === undefined ? {} : { publicKeySha256 }) };
}

/**
 * SQS's SenderId for a message sent with an instance profile's credentials is
 * `<role id>:<role session name>`, and EC2 names that session after the instance
 * (ReceiveMessage's documented example: "ABCDE1F2GH3I4JK5LMNOP:i-a123b456"). Only that instance
 * can get those credentials, and SQS sets the attribute itself: the body cannot forge it.
 * Answers the instance id when `senderId` is an instance under `roleId`, else undefined.
 */
export function senderInstanceId(senderId: string | undefined, roleId: string): string | undefined {
  if (!senderId?.startsWith(`${roleId}:`)) return undefined;
  const session = senderId.slice(roleId.length + 1);
  return INSTANCE_ID_PATTERN.test(session) ? session : undefined;
}

/** Whether a message was sent with any credentials of the compile masters' role. */
export function sentByRole(senderId: string | undefined, roleId: string): boolean {
  return senderId === roleId || (senderId?.startsWith(`${roleId}:`) ?? false);
}

/** The SenderId SQS records for an instance's own credentials: for the lab and tests. */
export function instanceSenderId(roleId: string, instanceId: string): string {
  return `${roleId}:${instanceId}`;
}
