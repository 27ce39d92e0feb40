import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { AutoScalingClient, CompleteLifecycleActionCommand, DescribeAutoScalingGroupsCommand } from '@aws-sdk/client-auto-scaling';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, GetCommand, PutCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { toSqsEvent } from '../../../lab/memory-cloud';
import { makeTestCa, type Pem, type TestCa } from '../../support/pki';
import { VALID_ENV } from './support';

/**
 * The real entry point, as the stack deploys it: environment, SDK clients (mocked at the SDK
 * layer), secrets, and the Puppet clients over real mTLS against a small fake CA. Also the place
 * to prove that no secret reaches a log line.
 */
const TOKEN = 'RBAC-TOKEN-d41d8cd98f00b204e9800998ecf8427e';
const LIFECYCLE_CN = 'lifecycle-controller.corp.example.com';
const context = {
  functionName: 'controller',
  awsRequestId: 'req-1',
  invokedFunctionArn: 'arn:aws:lambda:us-west-2:123456789012:function:controller',
  getRemainingTimeInMillis: () => 119_000,
} as Context;

type Handler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

describe('handler', () => {
  let ca: TestCa;
  let client: Pem;
  let server: Server;
  let port: number;
  const seen: Array<{ path: string; clientCn: string | undefined }> = [];
  let output: string[] = [];
  const asg = mockClient(AutoScalingClient);
  const ec2 = mockClient(EC2Client);
  const ddb = mockClient(DynamoDBDocumentClient);
  const sqs = mockClient(SQSClient);
  const sm = mockClient(SecretsManagerClient);

  beforeAll(async () => {
    ca = await makeTestCa('Puppet CA: primary.corp.example.com');
    client = await ca.issue({ commonName: LIFECYCLE_CN });
    const serverPem = await ca.issue({ commonName: 'localhost', dnsNames: ['localhost'] });
    server = createServer({ cert: serverPem.cert, key: serverPem.key, ca: ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      seen.push({ path: req.url ?? '', clientCn: String((req.socket as TLSSocket).getPeerCertificate().subject?.CN) });
      if (req.url === '/puppet-ca/v1/certificate_statuses/any?state=requested') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('[]');
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  beforeEach(() => {
    vi.resetModules();
    for (const [name, value] of Object.entries({ ...VALID_ENV, PRIMARY_HOSTNAME: 'localhost', CA_PORT: String(port), POWERTOOLS_LOG_LEVEL: 'DEBUG' })) vi.stubEnv(name, value);
    vi.stubEnv('AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED', 'true');
    output = [];
    // Powertools writes info to stdout and warnings and errors to stderr.
    for (const stream of [process.stdout, process.stderr]) {
      vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
        output.push(String(chunk));
        return true;
      });
    }
    sm.on(GetSecretValueCommand, { SecretId: VALID_ENV.CLIENT_CERT_SECRET_ARN }).resolves({ SecretString: JSON.stringify({ cert: client.cert, key: client.key, ca: ca.cert }) });
    sm.on(GetSecretValueCommand, { SecretId: VALID_ENV.RBAC_TOKEN_SECRET_ARN }).resolves({ SecretString: TOKEN });
    asg.on(DescribeAutoScalingGroupsCommand).resolves({
      AutoScalingGroups: [{ AutoScalingGroupName: 'compile-masters', Instances: [{ InstanceId: 'i-0123456789abcdef0', LifecycleState: 'Pending:Wait' }] } as never],
    });
    asg.on(CompleteLifecycleActionCommand).resolves({});
    // An instance whose private DNS name is the controller's own certname: it must be refused.
    ec2.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: [{ InstanceId: 'i-0123456789abcdef0', State: { Name: 'running' }, PrivateDnsName: LIFECYCLE_CN, PrivateIpAddress: '10.0.0.9' }] }],
    });
    ddb.on(ScanCommand).resolves({ Items: [] });
    ddb.on(GetCommand).resolves({});
    ddb.on(PutCommand).resolves({});
    ddb.on(UpdateCommand).resolves({});
    sqs.on(SendMessageCommand).resolves({});
  });

  afterEach(() => {
    vi.restoreAllMocks();
    vi.unstubAllEnvs();
    for (const mock of [asg, ec2, ddb, sqs, sm]) mock.reset();
    seen.length = 0;
  });

  async function load(): Promise<Handler> {
    return (await import('../../../lambdas/controller/handler')).handler;
  }

  it("reconciles over mTLS with the secret's certificate, refusing to enroll the controller's own certname", async () => {
    const handler = await load();
    const response = await handler(toSqsEvent([{ body: JSON.stringify({ source: 'aws.events', 'detail-type': 'Scheduled Event' }) }]), context);
    expect(response).toEqual({ batchItemFailures: [] });
    expect(seen[0]).toEqual({ path: '/puppet-ca/v1/certificate_statuses/any?state=requested', clientCn: LIFECYCLE_CN });
    expect(asg.commandCalls(CompleteLifecycleActionCommand).map((call) => call.args[0].input)).toEqual([
      { AutoScalingGroupName: 'compile-masters', LifecycleHookName: 'compile-master-launching', InstanceId: 'i-0123456789abcdef0', LifecycleActionResult: 'ABANDON' },
    ]);
    const lines = output.join('').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.find((line) => line.message === 'Refused: abandoning the launch')).toMatchObject({
      service: 'controller',
      instanceId: 'i-0123456789abcdef0',
      reasons: [`${LIFECYCLE_CN} is a protected certname`],
    });
    expect(lines.some((line) => JSON.stringify(line).includes('"LifecycleActionsRefused"'))).toBe(true);
  });

  it('reads the secrets once, then again after ten minutes: a rotated certificate bundle takes over, a failed re-read keeps the old one', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const handler = await load();
      const event = () => toSqsEvent([{ body: JSON.stringify({ source: 'aws.events', 'detail-type': 'Scheduled Event' }) }]);
      await handler(event(), context);
      await handler(event(), context);
      // Only the bundle: the RBAC token is read by the orchestrator runner when a run starts or is followed.
      expect(sm.commandCalls(GetSecretValueCommand).map((call) => call.args[0].input.SecretId)).toEqual([VALID_ENV.CLIENT_CERT_SECRET_ARN]);

      const rotated = await ca.issue({ commonName: 'lifecycle-controller-2.corp.example.com' });
      sm.on(GetSecretValueCommand, { SecretId: VALID_ENV.CLIENT_CERT_SECRET_ARN }).resolves({ SecretString: JSON.stringify({ cert: rotated.cert, key: rotated.key, ca: ca.cert }) });
      vi.setSystemTime(Date.now() + 10 * 60_000 + 1);
      seen.length = 0;
      expect(await handler(event(), context)).toEqual({ batchItemFailures: [] });
      expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(2);
      expect(new Set(seen.map((request) => request.clientCn))).toEqual(new Set(['lifecycle-controller-2.corp.example.com']));
      expect(output.join('')).toContain('The client certificate bundle changed: the Puppet API clients now use the new one');

      sm.on(GetSecretValueCommand).rejects(Object.assign(new Error('connect ETIMEDOUT'), { name: 'TimeoutError' }));
      vi.setSystemTime(Date.now() + 10 * 60_000 + 1);
      seen.length = 0;
      expect(await handler(event(), context)).toEqual({ batchItemFailures: [] });
      expect(new Set(seen.map((request) => request.clientCn))).toEqual(new Set(['lifecycle-controller-2.corp.example.com']));
      expect(output.join('')).toMatch(/Could not read the lifecycle client certificate bundle secret again; still using the value read before/);
      expect(output.join('')).not.toContain(rotated.key.split('\n')[1] as string);
    } finally {
      vi.useRealTimers();
    }
  });

  it('holds the reconcile lease in the registry table for the pass, under its request id, and gives it back', async () => {
    const handler = await load();
    await handler(toSqsEvent([{ body: JSON.stringify({ source: 'aws.events', 'detail-type': 'Scheduled Event' }) }]), context);
    const leaseCalls = ddb
      .commandCalls(UpdateCommand)
      .map((call) => call.args[0].input)
      .filter((input) => input.Key?.instanceId === 'reconcile-lease');
    expect(leaseCalls.map((input) => [input.TableName, input.UpdateExpression, input.ExpressionAttributeValues?.[':holder']])).toEqual([
      ['registry', 'SET holder = :holder, leaseExpiresAt = :until REMOVE nextHolder, nextTurnUntil', 'req-1'],
      ['registry', 'REMOVE holder, leaseExpiresAt', 'req-1'],
    ]);
    // And the pass ran: it asked the CA.
    expect(seen.length).toBeGreaterThan(0);
  });

  it('fails the valid records, not the malformed one, when the Puppet CA cannot be reached', async () => {
    vi.stubEnv('CA_PORT', '1');
    const handler = await load();
    const event = toSqsEvent([{ body: '{"source":"compile-masters.node-agent"}' }, { body: JSON.stringify({ source: 'aws.events', 'detail-type': 'Scheduled Event' }) }]);
    const response = await handler(event, context);
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: event.Records[1]?.messageId }]);
    expect(output.join('')).toMatch(/Reconcile failed; its messages will be retried/);
  }, 30_000);

  it('never writes the token, the private key or any PEM to the log, also when secrets are wrong', async () => {
    const keyBody = client.key.split('\n')[1] as string;
    const handler = await load();
    await handler(toSqsEvent([{ body: JSON.stringify({ source: 'aws.events', 'detail-type': 'Scheduled Event' }) }]), context);

    sm.on(GetSecretValueCommand, { SecretId: VALID_ENV.CLIENT_CERT_SECRET_ARN }).resolves({ SecretString: JSON.stringify({ cert: client.cert, key: `${keyBody}-not-a-pem`, ca: ca.cert }) });
    vi.resetModules();
    const broken = await load();
    const response = await broken(toSqsEvent([{ body: JSON.stringify({ source: 'aws.events', 'detail-type': 'Scheduled Event' }) }]), context);
    expect(response.batchItemFailures).toHaveLength(1);

    const log = output.join('');
    expect(log).toMatch(/key must hold a PEM private key/);
    for (const secret of [TOKEN, keyBody, client.cert.split('\n')[1] as string, 'PRIVATE KEY-----']) expect(log).not.toContain(secret);
  });

  it('runs with the SSM runner and no RBAC token secret at all', async () => {
    vi.stubEnv('RBAC_TOKEN_SECRET_ARN', undefined);
    vi.stubEnv('FLAVOR', 'oss');
    vi.stubEnv('PRIMARY_RUN', 'ssm');
    vi.stubEnv('PRIMARY_INSTANCE_TAG', '{"key":"Role","value":"puppet-primary"}');
    const handler = await load();
    const response = await handler(toSqsEvent([{ body: JSON.stringify({ source: 'aws.events', 'detail-type': 'Scheduled Event' }) }]), context);
    expect(response).toEqual({ batchItemFailures: [] });
    expect(sm.commandCalls(GetSecretValueCommand).map((call) => call.args[0].input.SecretId)).toEqual([VALID_ENV.CLIENT_CERT_SECRET_ARN]);
  });

  it('fails the cold start with a ConfigError that names the variable', async () => {
    vi.stubEnv('EXPECTED_EXTENSIONS', '{"pp_role": 7}');
    const error = await load().catch((e: unknown) => e);
    // Its class comes from a fresh module graph, so compare by name.
    expect((error as Error).name).toBe('ConfigError');
    expect((error as Error).message).toMatch(/EXPECTED_EXTENSIONS at pp_role values must be strings \(example: EXPECTED_EXTENSIONS=\{"pp_role":"compile_master"\}\)/);
  });
});
