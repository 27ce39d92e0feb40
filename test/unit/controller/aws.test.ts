import {
  AutoScalingClient,
  CompleteLifecycleActionCommand,
  DescribeAutoScalingGroupsCommand,
  RecordLifecycleActionHeartbeatCommand,
  SetInstanceHealthCommand,
} from '@aws-sdk/client-auto-scaling';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DeleteCommand, DynamoDBDocumentClient, GetCommand, PutCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { AwsCallError, ConfigError, SecretMissingError } from '../../../lib/errors';
import { AutoScalingGroup } from '../../../lambdas/controller/aws/auto-scaling';
import { Ec2Instances } from '../../../lambdas/controller/aws/ec2';
import { DynamoRegistry } from '../../../lambdas/controller/aws/registry';
import { SecretsManagerSecrets } from '../../../lambdas/controller/aws/secrets';
import { SqsQueue } from '../../../lambdas/controller/aws/sqs';
import { recheckMessage } from '../../../lambdas/controller/messages';

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

  it('marks a member Unhealthy without the grace period; a refusal is an AwsCallError', async () => {
    asg.on(SetInstanceHealthCommand).resolvesOnce({}).rejectsOnce(sdkError('ValidationError', 'Instance Id not found'));
    await expect(group.setUnhealthy('i-0123456789abcdef0')).resolves.toBeUndefined();
    expect(asg.commandCalls(SetInstanceHealthCommand)[0]?.args[0].input).toEqual({ InstanceId: 'i-0123456789abcdef0', HealthStatus: 'Unhealthy', ShouldRespectGracePeriod: false });
    await expect(group.setUnhealthy('i-0123456789abcdef0')).rejects.toThrow(AwsCallError);
  });

  it('lists members with their lifecycle and health states, and says so when the group is missing', async () => {
    asg.on(DescribeAutoScalingGroupsCommand).resolvesOnce({
      AutoScalingGroups: [
        {
          AutoScalingGroupName: 'compile-masters',
          Instances: [
            { InstanceId: 'i-0123456789abcdef0', LifecycleState: 'Pending:Wait' },
            { InstanceId: 'i-0123456789abcdef1', LifecycleState: 'InService', HealthStatus: 'Healthy' },
            { InstanceId: 'i-0123456789abcdef2', LifecycleState: 'InService', HealthStatus: 'Unhealthy' },
          ],
        } as never,
      ],
    });
    await expect(group.members()).resolves.toEqual([
      { instanceId: 'i-0123456789abcdef0', lifecycleState: 'Pending:Wait' },
      { instanceId: 'i-0123456789abcdef1', lifecycleState: 'InService', healthStatus: 'Healthy' },
      { instanceId: 'i-0123456789abcdef2', lifecycleState: 'InService', healthStatus: 'Unhealthy' },
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
  // What the engine cannot show: the registry's behaviour is the contract suite's, on a real
  // engine (registry-contract.test.ts); dynalite is always consistent and never throttles.
  const ddb = mockClient(DynamoDBDocumentClient);
  const registry = new DynamoRegistry(DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'us-west-2' })), 'registry', () => undefined);
  const now = new Date('2026-11-20T12:00:00Z');
  const id = 'i-0123456789abcdef0';
  const checked = { publicKeySha256: 'ab12', dnsAltNames: [], puppetExtensions: {} };
  afterEach(() => ddb.reset());

  it('reads with strong consistency: an ownership decision never rests on a stale read', async () => {
    ddb.on(GetCommand).resolves({}).on(ScanCommand).resolves({ Items: [] });
    await registry.get(id);
    await registry.getRun();
    await registry.keyReport(id);
    await registry.list();
    expect(ddb.commandCalls(GetCommand).map((call) => call.args[0].input.ConsistentRead)).toEqual([true, true, true]);
    expect(ddb.commandCalls(ScanCommand)[0]?.args[0].input.ConsistentRead).toBe(true);
  });

  it('throws an AwsCallError naming the operation for any failure but a lost condition: a throttled write is never taken for a lost race', async () => {
    const throttled = sdkError('ProvisionedThroughputExceededException', 'Rate of requests exceeds the allowed throughput');
    ddb.on(UpdateCommand).rejects(throttled).on(PutCommand).rejects(throttled).on(DeleteCommand).rejects(throttled).on(GetCommand).rejects(throttled);
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['UpdateItem', () => registry.recordSigned(id, 'a.compute.internal', checked, now)],
      ['UpdateItem', () => registry.recordIssued(id, { serial: 1n, sha256Fingerprint: 'AB', publicKeySha256: 'ab12' }, now)],
      ['UpdateItem', () => registry.transition(id, ['signed'], 'converging', now)],
      ['UpdateItem', () => registry.claimPurge(id, now, now)],
      ['UpdateItem', () => registry.recordPurgeStep(id, now.toISOString(), 'ca', now)],
      ['UpdateItem', () => registry.recordKeyReport(id, { publicKeySha256: 'ab12', reportedAt: now.toISOString() })],
      ['DeleteItem', () => registry.consumeKeyReport(id, 'ab12')],
      ['PutItem', () => registry.putRun({ pending: [] }, 0)],
      ['GetItem', () => registry.get(id)],
    ];
    for (const [operation, call] of calls) {
      const error = await call().then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(AwsCallError);
      expect((error as Error).message).toMatch(new RegExp(`^${operation} failed: ProvisionedThroughputExceededException`));
    }
  });
});

describe('SqsQueue', () => {
  const sqs = mockClient(SQSClient);
  afterEach(() => sqs.reset());

  it('sends rechecks to the queue with SQS-bounded delays', async () => {
    sqs.on(SendMessageCommand).resolves({});
    const queue = new SqsQueue(new SQSClient({ region: 'us-west-2' }), 'https://sqs.us-west-2.amazonaws.com/123456789012/q');
    const message = recheckMessage({ reason: 'follow-run', runId: '7', attempt: 2 });
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
    // Missing and empty are an operator's step not taken yet (the controller waits); malformed is not.
    await expect(secrets.clientBundle()).rejects.toThrow(SecretMissingError);
    await expect(secrets.clientBundle()).rejects.toMatchObject({ name: 'SecretMissingError', secretArn: arns.clientCert, message: expect.stringMatching(/is empty.*put-secret-value/) });
    const error = (await secrets.clientBundle().catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).not.toBeInstanceOf(SecretMissingError);
    expect(error.message).toMatch(/key must hold a PEM private key/);
    expect(error.message).not.toContain('SECRETKEYMATERIAL');
    const tokenError = (await secrets.rbacToken().catch((e: unknown) => e)) as Error;
    expect(tokenError).toBeInstanceOf(ConfigError);
    expect(tokenError.message).not.toContain('TOKEN-0123456789');
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(4);
  });
});
