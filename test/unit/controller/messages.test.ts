import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseMessage, recheckMessage, type MessageOrigin } from '../../../lambdas/controller/messages';
import { instanceSenderId, nodeAgentNotice } from '../../../lib/node-agent-notice';
import { CONTROLLER_SENDER, EVENTBRIDGE_SENDER } from '../../../lab/memory-cloud';

const ROLE = 'AROAEXAMPLECOMPILEMASTR';
const scope = { groupName: 'compile-masters', launchHookName: 'compile-master-launching', terminateHookName: 'compile-master-terminating', compileMasterRoleId: ROLE };
const SENT_AT = '2026-11-27T12:00:00.000Z';
const sample = (name: string) => JSON.parse(readFileSync(new URL(`fixtures/${name}.json`, import.meta.url), 'utf8')) as Record<string, unknown> & { detail: Record<string, unknown> };
const from = (senderId: string | undefined): MessageOrigin => ({ senderId, sentAt: SENT_AT });
const parse = (body: unknown, origin: MessageOrigin = from(EVENTBRIDGE_SENDER)) => parseMessage(typeof body === 'string' ? body : JSON.stringify(body), scope, origin);
const ID = 'i-0123456789abcdef0';
const KEY = 'ab'.repeat(32);
/** Sent with instance `id`'s own instance-profile credentials. */
const byInstance = (id: string) => from(instanceSenderId(ROLE, id));

describe('parseMessage', () => {
  it('reads the sample EventBridge events as delivered', () => {
    expect(parse(sample('asg-launch-lifecycle'))).toEqual({ outcome: 'trigger', trigger: { kind: 'lifecycle', transition: 'launch', instanceId: 'i-1234567890abcdef0' } });
    expect(parse(sample('asg-terminate-lifecycle'))).toEqual({ outcome: 'trigger', trigger: { kind: 'lifecycle', transition: 'terminate', instanceId: 'i-1234567890abcdef0' } });
    expect(parse(sample('ec2-state-change-terminated'))).toEqual({ outcome: 'trigger', trigger: { kind: 'instance-state', instanceId: 'i-1234567890abcdef0', state: 'terminated' } });
    expect(parse({ source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} })).toEqual({ outcome: 'trigger', trigger: { kind: 'schedule' } });
  });

  it("reads a node-agent notice sent by the instance it names, with its key report or its boot stamped by SQS's SentTimestamp", () => {
    for (const event of ['enrolled', 'booted'] as const) {
      expect(parse(nodeAgentNotice(ID, event), byInstance(ID))).toEqual({ outcome: 'trigger', trigger: { kind: 'node-agent', instanceId: ID, event, bootedAt: SENT_AT } });
    }
    expect(parse(nodeAgentNotice(ID, 'enrolling', KEY), byInstance(ID))).toEqual({
      outcome: 'trigger',
      trigger: { kind: 'node-agent', instanceId: ID, event: 'enrolling', keyReport: { publicKeySha256: KEY, reportedAt: SENT_AT } },
    });
  });

  it.each([
    ['another instance of the tier', instanceSenderId(ROLE, 'i-0fffffffffffffff0')],
    ['the role without an instance session', `${ROLE}:attacker-session`],
    ['another role', instanceSenderId('AROAOTHERROLEEXAMPLE1', ID)],
    ['an IAM user', 'AIDAEXAMPLEUSER000001'],
    ['nobody SQS could name', undefined],
  ])('treats a node-agent notice as forged when %s sent it', (_who, senderId) => {
    expect(parse(nodeAgentNotice(ID, 'enrolling', KEY), from(senderId))).toMatchObject({ outcome: 'forged', reason: expect.stringMatching(/not sent by that instance/) });
  });

  it.each([
    ['a lifecycle action', sample('asg-terminate-lifecycle')],
    ['an EC2 state change', sample('ec2-state-change-terminated')],
    ['a schedule', { source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} }],
    ['a recheck', recheckMessage({ reason: 'start-run', attempt: 1 })],
  ])('treats %s sent with a compile master\'s credentials as forged', (_what, body) => {
    expect(parse(body, byInstance(ID))).toMatchObject({ outcome: 'forged', reason: expect.stringMatching(/compile master's credentials/) });
  });

  it.each([
    ['an orchestrator job number', '42'],
    ['an SSM command id', '5f0c3a1e-8b9d-4c2a-a7e6-0123456789ab'],
    ["the none runner's id", 'none'],
  ])('reads its own rechecks, naming the run by %s', (_kind, runId) => {
    expect(parse({ source: 'compile-masters.controller', version: 1, kind: 'recheck', reason: 'follow-run', runId, attempt: 3 }, from(CONTROLLER_SENDER))).toEqual({
      outcome: 'trigger',
      trigger: { kind: 'recheck', reason: 'follow-run', runId, attempt: 3 },
    });
  });

  it.each([
    [{ reason: 'start-run', attempt: 1 }],
    [{ reason: 'follow-run', runId: '42', attempt: 3 }],
    [{ reason: 'follow-run', runId: '0b1e2c3d-4f5a-6b7c-8d9e-0f1a2b3c4d5e', attempt: 1 }],
    [{ reason: 'await-node', instanceId: ID, attempt: 10 }],
    [{ reason: 'await-node', instanceId: undefined, runId: undefined, attempt: 0 }],
  ] satisfies Array<[Parameters<typeof recheckMessage>[0]]>)('reads back the recheck the builder makes of %o, and the body carries nothing else', (recheck) => {
    const body = JSON.stringify(recheckMessage(recheck));
    const given = Object.fromEntries(Object.entries(recheck).filter(([, value]) => value !== undefined));
    expect(Object.keys(JSON.parse(body) as object).sort()).toEqual(['kind', 'source', 'version', ...Object.keys(given)].sort());
    expect(parse(body, from(CONTROLLER_SENDER))).toEqual({ outcome: 'trigger', trigger: { kind: 'recheck', ...given } });
  });

  it('ignores well-formed messages that are not for this controller', () => {
    const other = sample('asg-terminate-lifecycle');
    expect(parse({ ...other, detail: { ...other.detail, AutoScalingGroupName: 'web' } })).toMatchObject({ outcome: 'ignored', reason: expect.stringMatching(/another group \(web\)/) });
    expect(parse({ ...other, detail: { ...other.detail, LifecycleHookName: 'someone-elses-hook' } })).toMatchObject({ outcome: 'ignored' });
    const state = sample('ec2-state-change-terminated');
    expect(parse({ ...state, detail: { ...state.detail, state: 'stopping' } })).toMatchObject({ outcome: 'ignored' });
  });

  it.each([
    ['not JSON', 'hello', /not JSON/],
    ['an unknown source', { source: 'aws.s3' }, /source/],
    ['a hostile instance id in a node-agent notice', { source: 'compile-masters.node-agent', version: 2, instanceId: '../../etc', event: 'enrolled' }, /instanceId: is not an EC2 instance id/],
    ['a node-agent notice of the version without key reports', { source: 'compile-masters.node-agent', version: 1, instanceId: ID, event: 'csr-submitted' }, /version/],
    ['an unknown node-agent event', { source: 'compile-masters.node-agent', version: 2, instanceId: ID, event: 'purge-me' }, /event/],
    ['an enrolling notice without its key', { source: 'compile-masters.node-agent', version: 2, instanceId: ID, event: 'enrolling' }, /publicKeySha256/],
    ['a key report that is not a SHA-256', { ...nodeAgentNotice(ID, 'csr-submitted', KEY), publicKeySha256: 'zz' }, /publicKeySha256/],
    ['a key report on an event that carries none', { ...nodeAgentNotice(ID, 'booted'), publicKeySha256: KEY }, /publicKeySha256/],
    ['a recheck naming a run by path', { source: 'compile-masters.controller', version: 1, kind: 'recheck', reason: 'follow-run', runId: '../1', attempt: 1 }, /runId: is not a primary run id/],
    ['a recheck naming a run with a space', { source: 'compile-masters.controller', version: 1, kind: 'recheck', reason: 'follow-run', runId: '7 OR 1', attempt: 1 }, /runId/],
    ['a recheck naming a run at length', { source: 'compile-masters.controller', version: 1, kind: 'recheck', reason: 'follow-run', runId: '7'.repeat(65), attempt: 1 }, /runId/],
    ['a recheck naming a run with a leading dash', { source: 'compile-masters.controller', version: 1, kind: 'recheck', reason: 'follow-run', runId: '-rf', attempt: 1 }, /runId/],
    ['a lifecycle event whose transition contradicts its type', { ...sample('asg-launch-lifecycle'), detail: { ...sample('asg-launch-lifecycle').detail, LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING' } }, /does not match/],
    ['a lifecycle event without an instance', { ...sample('asg-launch-lifecycle'), detail: { AutoScalingGroupName: 'compile-masters' } }, /detail/],
    ['an array', [1, 2], /body|source/],
  ])('refuses %s as malformed', (_name, body, reason) => {
    const fromNode = (body as { source?: unknown } | undefined)?.source === 'compile-masters.node-agent';
    expect(parse(body, fromNode ? byInstance(ID) : undefined)).toMatchObject({ outcome: 'malformed', reason: expect.stringMatching(reason) });
  });
});
