import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseMessage } from '../../../lambdas/controller/messages';

const scope = { groupName: 'compile-masters', launchHookName: 'compile-master-launching', terminateHookName: 'compile-master-terminating' };
const sample = (name: string) => JSON.parse(readFileSync(new URL(`fixtures/${name}.json`, import.meta.url), 'utf8')) as Record<string, unknown> & { detail: Record<string, unknown> };
const parse = (body: unknown) => parseMessage(typeof body === 'string' ? body : JSON.stringify(body), scope);

describe('parseMessage', () => {
  it('reads the sample EventBridge events as delivered', () => {
    expect(parse(sample('asg-launch-lifecycle'))).toEqual({ outcome: 'trigger', trigger: { kind: 'lifecycle', transition: 'launch', instanceId: 'i-1234567890abcdef0' } });
    expect(parse(sample('asg-terminate-lifecycle'))).toEqual({ outcome: 'trigger', trigger: { kind: 'lifecycle', transition: 'terminate', instanceId: 'i-1234567890abcdef0' } });
    expect(parse(sample('ec2-state-change-terminated'))).toEqual({ outcome: 'trigger', trigger: { kind: 'instance-state', instanceId: 'i-1234567890abcdef0', state: 'terminated' } });
    expect(parse({ source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} })).toEqual({ outcome: 'trigger', trigger: { kind: 'schedule' } });
  });

  it('reads node-agent notices and its own rechecks', () => {
    expect(parse({ source: 'compile-masters.node-agent', version: 1, instanceId: 'i-0123456789abcdef0', event: 'enrolled' })).toEqual({
      outcome: 'trigger',
      trigger: { kind: 'node-agent', instanceId: 'i-0123456789abcdef0', event: 'enrolled' },
    });
    expect(parse({ source: 'compile-masters.controller', version: 1, kind: 'recheck', reason: 'follow-run', jobName: '42', attempt: 3 })).toEqual({
      outcome: 'trigger',
      trigger: { kind: 'recheck', reason: 'follow-run', jobName: '42', attempt: 3 },
    });
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
    ['a hostile instance id in a node-agent notice', { source: 'compile-masters.node-agent', version: 1, instanceId: '../../etc', event: 'enrolled' }, /instanceId: is not an EC2 instance id/],
    ['a node-agent notice of a future version', { source: 'compile-masters.node-agent', version: 2, instanceId: 'i-0123456789abcdef0', event: 'enrolled' }, /version/],
    ['an unknown node-agent event', { source: 'compile-masters.node-agent', version: 1, instanceId: 'i-0123456789abcdef0', event: 'purge-me' }, /event/],
    ['a recheck with a non-numeric job', { source: 'compile-masters.controller', version: 1, kind: 'recheck', reason: 'follow-run', jobName: '../1', attempt: 1 }, /jobName/],
    ['a lifecycle event whose transition contradicts its type', { ...sample('asg-launch-lifecycle'), detail: { ...sample('asg-launch-lifecycle').detail, LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING' } }, /does not match/],
    ['a lifecycle event without an instance', { ...sample('asg-launch-lifecycle'), detail: { AutoScalingGroupName: 'compile-masters' } }, /detail/],
    ['an array', [1, 2], /body|source/],
  ])('refuses %s as malformed', (_name, body, reason) => {
    expect(parse(body)).toMatchObject({ outcome: 'malformed', reason: expect.stringMatching(reason) });
  });
});
