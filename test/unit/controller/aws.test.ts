import {
  AutoScalingClient,
  CompleteLifecycleActionCommand,
  DescribeAutoScalingGroupsCommand,
  RecordLifecycleActionHeartbeatCommand,
} from '@aws-sdk/client-auto-scaling';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DeleteCommand, DynamoDBDocumentClient, GetCommand, PutCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AwsCallError, ConfigError } from '../../../lib/errors';
import { AutoScalingGroup } from '../../../lambdas/controller/aws/auto-scaling';
import { Ec2Instances } from '../../../lambdas/controller/aws/ec2';
import { DynamoRegistry, KEY_REPORT_PREFIX, RUN_KEY } from '../../../lambdas/controller/aws/registry';
import { SecretsManagerSecrets } from '../../../lambdas/controller/aws/secrets';
import { SqsQueue } from '../../../lambdas/controller/aws/sqs';
import { MemoryCloud } from '../../../lab/memory-cloud';

/** The SDK wiring: which command each port sends, with which input, and how answers map back. */

const names = { groupName: 'compile-masters', launchHookName: 'compile-master-launching', terminateHookName: 'compile-master-terminating' };
const sdkError = (name: string, message: string) => Object.assign(new Error(message), { name, $fault: 'client', $metadata: {} });

describe('AutoScalingGroup', () => {
  const asg = mockClient(AutoScalingClient);
  const group = new AutoScalingGroup(new AutoScalingClient({ region: 'us-west-2' }), names);
  afterEach(() => asg.reset());

  it('CompleteLifecycleAction gets the group, the right hook, the instance id and the result', async () => {
    asg.on(CompleteLifecycleActionCommand).resolves({});
    await expect(group.completeLifecycleAction('i-0123456789abcdef0', 'launch', 'CONTINUE')).resolves.toBe('completed');
    await expect(group.completeLifecycleAction('i-0123456789abcdef1', 'terminate', 'CONTINUE')).resolves.toBe('completed');
    await expect(group.completeLifecycleAction('i-0123456789abcdef2', 'launch', 'ABANDON')).resolves.toBe('completed');
    expect(asg.commandCalls(CompleteLifecycleActionCommand).map((call) => call.args[0].input)).toEqual([
      { AutoScalingGroupName: 'compile-masters', LifecycleHookName: 'compile-master-launching', InstanceId: 'i-0123456789abcdef0', LifecycleActionResult: 'CONTINUE' },
      { AutoScalingGroupName: 'compile-masters', LifecycleHookName: 'compile-master-terminating', InstanceId: 'i-0123456789abcdef1', LifecycleActionResult: 'CONTINUE' },
      { AutoScalingGroupName: 'compile-masters', LifecycleHookName: 'compile-master-launching', InstanceId: 'i-0123456789abcdef2', LifecycleActionResult: 'ABANDON' },
    ]);
  });

  it('treats "No active Lifecycle Action" as already completed, not as an error', async () => {
    asg.on(CompleteLifecycleActionCommand).rejects(sdkError('ValidationError', 'No active Lifecycle Action found with instance ID i-0123456789abcdef0'));
    await expect(group.completeLifecycleAction('i-0123456789abcdef0', 'terminate', 'CONTINUE')).resolves.toBe('already-completed');
  });

  it('surfaces any other failure as an AwsCallError naming the operation', async () => {
    asg.on(CompleteLifecycleActionCommand).rejects(sdkError('ValidationError', 'Unable to find a lifecycle hook'));
    const error = await group.completeLifecycleAction('i-0123456789abcdef0', 'terminate', 'CONTINUE').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AwsCallError);
    expect((error as Error).message).toMatch(/^CompleteLifecycleAction failed: ValidationError: Unable to find/);
    asg.on(CompleteLifecycleActionCommand).rejects(sdkError('Throttling', 'Rate exceeded'));
    await expect(group.completeLifecycleAction('i-0123456789abcdef0', 'launch', 'CONTINUE')).rejects.toThrow(/kept throttling/);
  });

  it('records heartbeats on the launch hook; a finished action is not an error', async () => {
    asg.on(RecordLifecycleActionHeartbeatCommand).resolvesOnce({}).rejectsOnce(sdkError('ValidationError', 'No active Lifecycle Action found with instance ID i-1'));
    await expect(group.recordHeartbeat('i-0123456789abcdef0', 'launch')).resolves.toBe('recorded');
    await expect(group.recordHeartbeat('i-0123456789abcdef0', 'launch')).resolves.toBe('no-active-action');
    expect(asg.commandCalls(RecordLifecycleActionHeartbeatCommand)[0]?.args[0].input).toEqual({
      AutoScalingGroupName: 'compile-masters',
      LifecycleHookName: 'compile-master-launching',
      InstanceId: 'i-0123456789abcdef0',
    });
  });

  it('lists members with their lifecycle states, and says so when the group is missing', async () => {
    asg.on(DescribeAutoScalingGroupsCommand).resolvesOnce({
      AutoScalingGroups: [
        {
          AutoScalingGroupName: 'compile-masters',
          Instances: [
            { InstanceId: 'i-0123456789abcdef0', LifecycleState: 'Pending:Wait' },
            { InstanceId: 'i-0123456789abcdef1', LifecycleState: 'InService' },
          ],
        } as never,
      ],
    });
    await expect(group.members()).resolves.toEqual([
      { instanceId: 'i-0123456789abcdef0', lifecycleState: 'Pending:Wait' },
      { instanceId: 'i-0123456789abcdef1', lifecycleState: 'InService' },
    ]);
    expect(asg.commandCalls(DescribeAutoScalingGroupsCommand)[0]?.args[0].input).toEqual({ AutoScalingGroupNames: ['compile-masters'] });
    asg.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [] });
    await expect(group.members()).rejects.toThrow(/group compile-masters does not exist.*GROUP_NAME/);
  });
});

describe('Ec2Instances', () => {
  const ec2 = mockClient(EC2Client);
  afterEach(() => ec2.reset());

  it('describes by instance-id filter, in chunks, so unknown ids are simply absent', async () => {
    ec2.on(DescribeInstancesCommand).callsFake((input: { Filters: Array<{ Values: string[] }> }) => ({
      Reservations: [
        {
          Instances: (input.Filters[0]?.Values ?? [])
            .filter((id) => id !== 'i-00000000000000005')
            .map((id) => ({ InstanceId: id, State: { Name: 'running' }, PrivateDnsName: `ip-${id.slice(-3)}.compute.internal`, PrivateIpAddress: '10.0.0.1', LaunchTime: new Date(0) })),
        },
      ],
    }));
    const ids = Array.from({ length: 150 }, (_, index) => `i-${index.toString(16).padStart(17, '0')}`);
    const found = await new Ec2Instances(new EC2Client({ region: 'us-west-2' })).describe(ids);
    expect(found.size).toBe(149);
    expect(found.get('i-00000000000000001')).toEqual({
      instanceId: 'i-00000000000000001',
      state: 'running',
      privateDnsName: 'ip-001.compute.internal',
      privateIp: '10.0.0.1',
      launchTime: new Date(0),
    });
    const calls = ec2.commandCalls(DescribeInstancesCommand).map((call) => call.args[0].input.Filters?.[0]);
    expect(calls.map((filter) => [filter?.Name, filter?.Values?.length])).toEqual([['instance-id', 100], ['instance-id', 50]]);
  });
});

describe('DynamoRegistry', () => {
  const ddb = mockClient(DynamoDBDocumentClient);
  const invalid = vi.fn();
  const registry = new DynamoRegistry(DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'us-west-2' })), 'registry', invalid);
  const now = new Date('2026-11-20T12:00:00Z');
  const conditionFailed = sdkError('ConditionalCheckFailedException', 'The conditional request failed');
  afterEach(() => {
    ddb.reset();
    invalid.mockReset();
  });

  const checked = { publicKeySha256: 'ab12', dnsAltNames: ['ip-10-0-0-1.compute.internal'], puppetExtensions: { pp_instance_id: 'i-0123456789abcdef0' } };

  it('takes ownership before signing with a conditional update that keeps createdAt, records the checked request and forgets the last certificate and purge', async () => {
    ddb.on(UpdateCommand).resolvesOnce({}).rejectsOnce(conditionFailed);
    await expect(registry.recordSigned('i-0123456789abcdef0', 'ip-10-0-0-1.compute.internal', { ...checked, commonName: 'extra' } as typeof checked, now)).resolves.toBe(true);
    await expect(registry.recordSigned('i-0123456789abcdef0', 'ip-10-0-0-1.compute.internal', checked, now)).resolves.toBe(false);
    const input = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
    expect(input).toMatchObject({
      TableName: 'registry',
      Key: { instanceId: 'i-0123456789abcdef0' },
      ConditionExpression: 'attribute_not_exists(instanceId) OR (certname = :certname AND NOT #state IN (:purging, :stalled))',
      ExpressionAttributeNames: { '#checked': 'checked', '#issued': 'issued', '#purge': 'purge' },
      ExpressionAttributeValues: { ':certname': 'ip-10-0-0-1.compute.internal', ':signed': 'signed', ':checked': checked },
    });
    expect(input?.UpdateExpression).toContain('createdAt = if_not_exists(createdAt, :now)');
    expect(input?.UpdateExpression).toMatch(/#checked = :checked.* REMOVE claimedAt, #issued, #purge$/);
  });

  it('records the verified certificate only on a live entry whose checked request is for its key', async () => {
    ddb.on(UpdateCommand).resolvesOnce({}).rejectsOnce(conditionFailed);
    const certificate = { serial: 0x1fn, sha256Fingerprint: 'AB:CD', publicKeySha256: 'ab12' };
    await expect(registry.recordIssued('i-0123456789abcdef0', certificate, now)).resolves.toBe(true);
    await expect(registry.recordIssued('i-0123456789abcdef0', certificate, now)).resolves.toBe(false);
    expect(ddb.commandCalls(UpdateCommand)[0]?.args[0].input).toMatchObject({
      UpdateExpression: 'SET #issued = :issued, updatedAt = :now',
      ConditionExpression: '#state IN (:live0, :live1, :live2, :live3) AND #checked.publicKeySha256 = :key',
      ExpressionAttributeValues: { ':key': 'ab12', ':issued': { serial: '31', sha256Fingerprint: 'AB:CD', verifiedAt: now.toISOString() } },
    });
  });

  it('records a purge step only while the entry is in the purge that started then', async () => {
    ddb.on(UpdateCommand).resolvesOnce({}).rejectsOnce(conditionFailed);
    await expect(registry.recordPurgeStep('i-0123456789abcdef0', '2026-11-20T11:50:00.000Z', 'puppetdb', now)).resolves.toBe(true);
    await expect(registry.recordPurgeStep('i-0123456789abcdef0', '2026-11-20T11:50:00.000Z', 'ca', now)).resolves.toBe(false);
    expect(ddb.commandCalls(UpdateCommand)[0]?.args[0].input).toMatchObject({
      UpdateExpression: 'SET #purge.#step = :now, updatedAt = :now',
      ConditionExpression: '#state = :purging AND #purge.startedAt = :startedAt',
      ExpressionAttributeNames: { '#purge': 'purge', '#step': 'puppetdb' },
      ExpressionAttributeValues: { ':startedAt': '2026-11-20T11:50:00.000Z' },
    });
  });

  it('claims a purge only from a live state or a stale claim, keeping an earlier start, and answers the claimed entry', async () => {
    const claimedItem = {
      instanceId: 'i-0123456789abcdef0',
      certname: 'a.compute.internal',
      state: 'purging',
      createdAt: 'x',
      updatedAt: 'y',
      claimedAt: now.toISOString(),
      purge: { startedAt: '2026-11-20T11:50:00.000Z', ca: '2026-11-20T11:50:01.000Z' },
    };
    ddb.on(UpdateCommand).resolvesOnce({ Attributes: claimedItem }).rejectsOnce(conditionFailed);
    await expect(registry.claimPurge('i-0123456789abcdef0', now, new Date('2026-11-20T11:57:30Z'))).resolves.toEqual(claimedItem);
    await expect(registry.claimPurge('i-0123456789abcdef0', now, new Date('2026-11-20T11:57:30Z'))).resolves.toBeUndefined();
    const input = ddb.commandCalls(UpdateCommand)[0]?.args[0].input;
    expect(input?.ConditionExpression).toBe(
      '#state IN (:live0, :live1, :live2, :live3) OR (#state = :purging AND (attribute_not_exists(claimedAt) OR claimedAt < :stale))',
    );
    expect(input?.UpdateExpression).toContain('#purge = if_not_exists(#purge, :purge)');
    expect(input?.ReturnValues).toBe('ALL_NEW');
    expect(input?.ExpressionAttributeValues).toMatchObject({ ':live0': 'signed', ':live3': 'stalled', ':stale': '2026-11-20T11:57:30.000Z', ':purge': { startedAt: now.toISOString() } });
  });

  it('moves an entry on only from the expected states, and answers false when it lost the race', async () => {
    ddb.on(UpdateCommand).rejects(conditionFailed);
    await expect(registry.transition('i-0123456789abcdef0', ['purging'], 'purged', now)).resolves.toBe(false);
    expect(ddb.commandCalls(UpdateCommand)[0]?.args[0].input).toMatchObject({
      UpdateExpression: 'SET #state = :to, updatedAt = :now REMOVE claimedAt',
      ConditionExpression: '#state IN (:from0)',
      ExpressionAttributeValues: { ':from0': 'purging', ':to': 'purged' },
    });
  });

  it('puts the run record with optimistic versioning', async () => {
    ddb.on(PutCommand).resolvesOnce({}).rejectsOnce(conditionFailed);
    await expect(registry.putRun({ pending: ['i-0123456789abcdef0'], job: undefined }, 0)).resolves.toBe(true);
    await expect(registry.putRun({ pending: [] }, 4)).resolves.toBe(false);
    const [first, second] = ddb.commandCalls(PutCommand).map((call) => call.args[0].input);
    expect(first).toEqual({
      TableName: 'registry',
      Item: { instanceId: RUN_KEY, pending: ['i-0123456789abcdef0'], version: 1 },
      ConditionExpression: 'attribute_not_exists(instanceId) OR version = :expected',
      ExpressionAttributeValues: { ':expected': 0 },
    });
    expect(second).toMatchObject({ Item: { version: 5 }, ConditionExpression: 'version = :expected', ExpressionAttributeValues: { ':expected': 4 } });
  });

  it('lists entries with consistent reads, skipping the run record and reporting damaged items apart', async () => {
    const item = { certname: 'a.compute.internal', state: 'in-service', createdAt: 'x', updatedAt: 'y' };
    ddb.on(ScanCommand).resolves({
      Items: [
        { instanceId: RUN_KEY, version: 3, pending: [] },
        { instanceId: `${KEY_REPORT_PREFIX}i-0123456789abcdef9`, publicKeySha256: 'ab'.repeat(32), reportedAt: 'z', expiresAt: 1 },
        { ...item, instanceId: 'i-0123456789abcdef0' },
        { ...item, instanceId: 'i-0123456789abcdef1', state: 'haunted' },
        { ...item, instanceId: 'i-0123456789abcdef2', certname: '../x' },
        { ...item, instanceId: 'i-0123456789abcdef3', certname: 'IP-10-0-0-1.Compute.Internal' },
        { ...item, instanceId: '../i-0123456789abcdef4' },
        { ...item, instanceId: 'i-0123456789abcdef5', checked: { publicKeySha256: 7 } },
      ],
    });
    const { entries, damaged } = await registry.list();
    expect(entries.map((entry) => entry.instanceId)).toEqual(['i-0123456789abcdef0']);
    expect(damaged).toEqual([
      { key: 'i-0123456789abcdef1', instanceId: 'i-0123456789abcdef1', problem: expect.stringMatching(/^it does not parse: .*state/s) },
      { key: 'i-0123456789abcdef2', instanceId: 'i-0123456789abcdef2', problem: expect.stringMatching(/^its certname "\.\.\/x" is not a lowercase DNS-style name/) },
      { key: 'i-0123456789abcdef3', instanceId: 'i-0123456789abcdef3', problem: expect.stringMatching(/^its certname "IP-10-0-0-1.Compute.Internal" is not/) },
      { key: '../i-0123456789abcdef4', problem: 'its key "../i-0123456789abcdef4" is not an instance id' },
      { key: 'i-0123456789abcdef5', instanceId: 'i-0123456789abcdef5', problem: expect.stringMatching(/^it does not parse: .*checked/s) },
    ]);
    expect(invalid).toHaveBeenCalledTimes(5);
    expect(ddb.commandCalls(ScanCommand)[0]?.args[0].input).toMatchObject({ TableName: 'registry', ConsistentRead: true });
  });

  it("keeps an instance's key report under its own key, never over a later one, with a TTL, and consumes it only while it is that key", async () => {
    const key = 'ab'.repeat(32);
    ddb.on(UpdateCommand).resolvesOnce({}).rejectsOnce(conditionFailed);
    await registry.recordKeyReport('i-0123456789abcdef0', { publicKeySha256: key, reportedAt: '2026-11-20T12:00:00.000Z' });
    // An older report arriving late is not an error: the newer one stays.
    await expect(registry.recordKeyReport('i-0123456789abcdef0', { publicKeySha256: 'cd'.repeat(32), reportedAt: '2026-11-20T11:00:00.000Z' })).resolves.toBeUndefined();
    expect(ddb.commandCalls(UpdateCommand)[0]?.args[0].input).toMatchObject({
      Key: { instanceId: `${KEY_REPORT_PREFIX}i-0123456789abcdef0` },
      ConditionExpression: 'attribute_not_exists(reportedAt) OR reportedAt <= :at',
      ExpressionAttributeNames: { '#ttl': 'expiresAt' },
      ExpressionAttributeValues: { ':key': key, ':at': '2026-11-20T12:00:00.000Z', ':ttl': Date.parse('2026-11-20T12:00:00Z') / 1000 + 14 * 24 * 3600 },
    });

    ddb.on(GetCommand).resolvesOnce({ Item: { instanceId: `${KEY_REPORT_PREFIX}i-0123456789abcdef0`, publicKeySha256: key, reportedAt: 'z' } }).resolvesOnce({});
    await expect(registry.keyReport('i-0123456789abcdef0')).resolves.toEqual({ publicKeySha256: key, reportedAt: 'z' });
    await expect(registry.keyReport('i-0123456789abcdef1')).resolves.toBeUndefined();

    ddb.on(DeleteCommand).resolvesOnce({}).rejectsOnce(conditionFailed);
    await registry.consumeKeyReport('i-0123456789abcdef0', key);
    await expect(registry.consumeKeyReport('i-0123456789abcdef0', key)).resolves.toBeUndefined();
    expect(ddb.commandCalls(DeleteCommand)[0]?.args[0].input).toMatchObject({ ConditionExpression: 'publicKeySha256 = :key', ExpressionAttributeValues: { ':key': key } });
  });

  it('reads the run record, or an empty one', async () => {
    ddb.on(GetCommand).resolvesOnce({}).resolvesOnce({ Item: { instanceId: RUN_KEY, version: 2, pending: ['i-1'], job: { name: '5', claimedAt: 'x', covers: ['i-1'], attempt: 1 } } });
    await expect(registry.getRun()).resolves.toEqual({ version: 0, pending: [] });
    await expect(registry.getRun()).resolves.toMatchObject({ version: 2, job: { name: '5' } });
  });
});

describe('MemoryRegistry, with the adapter\'s semantics', () => {
  const now = new Date('2026-11-20T12:00:00Z');
  const later = (seconds: number) => new Date(now.getTime() + seconds * 1000);
  const id = 'i-0123456789abcdef0';
  const checked = { publicKeySha256: 'ab12', dnsAltNames: ['a.compute.internal'], puppetExtensions: { pp_instance_id: id } };

  it('quarantines exactly the items the DynamoDB adapter quarantines', async () => {
    const ddb = mockClient(DynamoDBDocumentClient);
    const item = { certname: 'a.compute.internal', state: 'in-service', createdAt: 'x', updatedAt: 'y' };
    const items = [
      { ...item, instanceId: 'i-0123456789abcdef0' },
      { ...item, instanceId: 'i-0123456789abcdef1', state: 'haunted' },
      { ...item, instanceId: 'i-0123456789abcdef2', certname: 'a b' },
      { ...item, instanceId: 'I-0123456789ABCDEF3' },
      { ...item, instanceId: 'i-0123456789abcdef4', purge: { ca: 'x' } },
    ];
    ddb.on(ScanCommand).resolves({ Items: items });
    const adapter = await new DynamoRegistry(DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'us-west-2' })), 'registry', () => undefined).list();
    ddb.restore();
    const memory = new MemoryCloud().registry;
    for (const each of items) memory.seedItem(each);
    const listed = await memory.list();
    expect(listed).toEqual(adapter);
    expect(listed.damaged.map((damaged) => damaged.key)).toEqual(items.slice(1).map((each) => each.instanceId));
    await expect(memory.get('i-0123456789abcdef2')).resolves.toBeUndefined();
  });

  it('records ownership with the checked request and forgets the last certificate and purge; never over a purge or another certname', async () => {
    const registry = new MemoryCloud().registry;
    registry.seed({ instanceId: id, certname: 'a.compute.internal', state: 'purged', createdAt: 'c', updatedAt: 'u', issued: { serial: '1', sha256Fingerprint: 'F', verifiedAt: 'v' }, purge: { startedAt: 's', ca: 'x' } });
    await expect(registry.recordSigned(id, 'b.compute.internal', checked, now)).resolves.toBe(false);
    await expect(registry.recordSigned(id, 'a.compute.internal', checked, now)).resolves.toBe(true);
    expect(registry.peek(id)).toEqual({ instanceId: id, certname: 'a.compute.internal', state: 'signed', createdAt: 'c', updatedAt: now.toISOString(), checked });
    await registry.claimPurge(id, now, now);
    await expect(registry.recordSigned(id, 'a.compute.internal', checked, now)).resolves.toBe(false);
  });

  it('records the issued certificate only for the checked key, on a live entry', async () => {
    const registry = new MemoryCloud().registry;
    await registry.recordSigned(id, 'a.compute.internal', checked, now);
    const certificate = { serial: 31n, sha256Fingerprint: 'AB:CD', publicKeySha256: 'ab12' };
    await expect(registry.recordIssued(id, { ...certificate, publicKeySha256: 'other' }, now)).resolves.toBe(false);
    await expect(registry.recordIssued(id, certificate, now)).resolves.toBe(true);
    expect(registry.peek(id)?.issued).toEqual({ serial: '31', sha256Fingerprint: 'AB:CD', verifiedAt: now.toISOString() });
    await registry.transition(id, ['signed'], 'purged', now);
    await expect(registry.recordIssued(id, certificate, now)).resolves.toBe(false);
  });

  it('keeps a purge\'s start and steps across a stale re-claim, and records steps only within that purge', async () => {
    const registry = new MemoryCloud().registry;
    await registry.recordSigned(id, 'a.compute.internal', checked, now);
    const first = await registry.claimPurge(id, now, now);
    expect(first?.purge).toEqual({ startedAt: now.toISOString() });
    await expect(registry.claimPurge(id, later(10), now)).resolves.toBeUndefined();
    await expect(registry.recordPurgeStep(id, later(1).toISOString(), 'ca', later(10))).resolves.toBe(false);
    await expect(registry.recordPurgeStep(id, now.toISOString(), 'ca', later(10))).resolves.toBe(true);
    const retaken = await registry.claimPurge(id, later(300), later(200));
    expect(retaken).toMatchObject({ state: 'purging', claimedAt: later(300).toISOString(), purge: { startedAt: now.toISOString(), ca: later(10).toISOString() } });
    await registry.transition(id, ['purging'], 'purged', later(301));
    await expect(registry.recordPurgeStep(id, now.toISOString(), 'puppetdb', later(302))).resolves.toBe(false);
  });
});

describe('SqsQueue', () => {
  const sqs = mockClient(SQSClient);
  afterEach(() => sqs.reset());

  it('sends rechecks to the queue with SQS-bounded delays', async () => {
    sqs.on(SendMessageCommand).resolves({});
    const queue = new SqsQueue(new SQSClient({ region: 'us-west-2' }), 'https://sqs.us-west-2.amazonaws.com/123456789012/q');
    const message = { source: 'compile-masters.controller', version: 1, kind: 'recheck', reason: 'follow-run', runId: '7', attempt: 2 } as const;
    await queue.sendRecheck(message, 20);
    await queue.sendRecheck(message, 5_000);
    expect(sqs.commandCalls(SendMessageCommand).map((call) => call.args[0].input)).toEqual([
      { QueueUrl: 'https://sqs.us-west-2.amazonaws.com/123456789012/q', MessageBody: JSON.stringify(message), DelaySeconds: 20 },
      { QueueUrl: 'https://sqs.us-west-2.amazonaws.com/123456789012/q', MessageBody: JSON.stringify(message), DelaySeconds: 900 },
    ]);
  });
});

describe('SecretsManagerSecrets', () => {
  const sm = mockClient(SecretsManagerClient);
  const arns = { clientCert: 'arn:aws:secretsmanager:us-west-2:123456789012:secret:cert', rbacToken: 'arn:aws:secretsmanager:us-west-2:123456789012:secret:token' };
  const bundle = { cert: '-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----', key: '-----BEGIN PRIVATE KEY-----\nSECRETKEYMATERIAL\n-----END PRIVATE KEY-----', ca: '-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----' };
  afterEach(() => sm.reset());

  it('reads each secret once while it is fresh', async () => {
    sm.on(GetSecretValueCommand, { SecretId: arns.clientCert }).resolves({ SecretString: JSON.stringify(bundle) });
    sm.on(GetSecretValueCommand, { SecretId: arns.rbacToken }).resolves({ SecretString: 'TOKEN-0123456789\n' });
    const secrets = new SecretsManagerSecrets(new SecretsManagerClient({ region: 'us-west-2' }), arns);
    await expect(secrets.clientBundle()).resolves.toEqual(bundle);
    await expect(secrets.clientBundle()).resolves.toEqual(bundle);
    await expect(secrets.rbacToken()).resolves.toBe('TOKEN-0123456789');
    await secrets.rbacToken();
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(2);
  });

  it('has no token without a token secret (no orchestrator), and asks Secrets Manager for none', async () => {
    sm.on(GetSecretValueCommand, { SecretId: arns.clientCert }).resolves({ SecretString: JSON.stringify(bundle) });
    const secrets = new SecretsManagerSecrets(new SecretsManagerClient({ region: 'us-west-2' }), { clientCert: arns.clientCert });
    await expect(secrets.clientBundle()).resolves.toEqual(bundle);
    await expect(secrets.rbacToken()).rejects.toThrow(/No RBAC token secret is configured — only the orchestrator runner reads the token/);
    expect(sm.commandCalls(GetSecretValueCommand).map((call) => call.args[0].input.SecretId)).toEqual([arns.clientCert]);
  });

  it('reads a secret again once it is older than the maximum age, and keeps the last good value when that read fails', async () => {
    let now = 1_000_000;
    const stale: string[] = [];
    const secrets = new SecretsManagerSecrets(new SecretsManagerClient({ region: 'us-west-2' }), arns, { maxAgeMs: 60_000, now: () => now, onStale: (what, error) => stale.push(`${what}: ${(error as Error).message}`) });
    sm.on(GetSecretValueCommand, { SecretId: arns.rbacToken })
      .resolvesOnce({ SecretString: 'TOKEN-OLD' })
      .resolvesOnce({ SecretString: 'TOKEN-NEW' })
      .resolvesOnce({ SecretString: '{"token":"TOKEN-MALFORMED"}' })
      .rejectsOnce(sdkError('InternalServiceError', 'try again'))
      .resolvesOnce({ SecretString: 'TOKEN-NEWER' });
    await expect(secrets.rbacToken()).resolves.toBe('TOKEN-OLD');
    now += 59_999;
    await expect(secrets.rbacToken()).resolves.toBe('TOKEN-OLD');
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(1);
    now += 1;
    await expect(secrets.rbacToken()).resolves.toBe('TOKEN-NEW');
    now += 60_000;
    await expect(secrets.rbacToken()).resolves.toBe('TOKEN-NEW'); // the new value is malformed
    await expect(secrets.rbacToken()).resolves.toBe('TOKEN-NEW'); // Secrets Manager fails
    await expect(secrets.rbacToken()).resolves.toBe('TOKEN-NEWER'); // each use tries again until one works
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(5);
    expect(stale).toHaveLength(2);
    expect(stale[0]).toMatch(/^RBAC token: The RBAC token secret .* does not hold a bare token/);
    expect(stale.join('\n')).not.toContain('TOKEN-MALFORMED');
  });

  it('hands back the very object read before when a re-read finds the same value, so callers see a change by identity', async () => {
    let now = 0;
    const secrets = new SecretsManagerSecrets(new SecretsManagerClient({ region: 'us-west-2' }), arns, { maxAgeMs: 1_000, now: () => now });
    sm.on(GetSecretValueCommand, { SecretId: arns.clientCert })
      .resolvesOnce({ SecretString: JSON.stringify(bundle) })
      .resolvesOnce({ SecretString: JSON.stringify(bundle) })
      .resolvesOnce({ SecretString: JSON.stringify({ ...bundle, ca: bundle.cert }) });
    const first = await secrets.clientBundle();
    now += 1_000;
    expect(await secrets.clientBundle()).toBe(first);
    now += 1_000;
    const rotated = await secrets.clientBundle();
    expect(rotated).not.toBe(first);
    expect(rotated.ca).toBe(bundle.cert);
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(3);
  });

  it('refuses a missing, empty or malformed secret with a ConfigError that shows no value, and reads again next time', async () => {
    const secrets = new SecretsManagerSecrets(new SecretsManagerClient({ region: 'us-west-2' }), arns);
    sm.on(GetSecretValueCommand)
      .rejectsOnce(sdkError('ResourceNotFoundException', "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT"))
      .resolvesOnce({ SecretString: '  ' })
      .resolvesOnce({ SecretString: JSON.stringify({ ...bundle, key: 'SECRETKEYMATERIAL' }) })
      .resolvesOnce({ SecretString: '{"token":"TOKEN-0123456789"}' });
    await expect(secrets.clientBundle()).rejects.toThrow(ConfigError);
    await expect(secrets.clientBundle()).rejects.toThrow(/is empty.*put-secret-value/);
    const error = (await secrets.clientBundle().catch((e: unknown) => e)) as Error;
    expect(error.message).toMatch(/key must hold a PEM private key/);
    expect(error.message).not.toContain('SECRETKEYMATERIAL');
    const tokenError = (await secrets.rbacToken().catch((e: unknown) => e)) as Error;
    expect(tokenError).toBeInstanceOf(ConfigError);
    expect(tokenError.message).not.toContain('TOKEN-0123456789');
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(4);
  });
});
