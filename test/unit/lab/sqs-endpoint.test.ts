import { createHash } from 'node:crypto';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QueueDoesNotExist, SQSClient, SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { nodeAgentNotice, senderInstanceId } from '../../../lib/node-agent-notice';
import { labAwsCa, type AwsLabCa } from '../../../lab/aws/ca';
import { InstanceCredentials, type ImdsCredentialsDocument } from '../../../lab/aws/credentials';
import { sqsQueueUrl, sqsTrustDropIn, startSqsEndpoint, type SqsEndpoint, type SqsMessage, type SqsRefusal } from '../../../lab/aws/sqs-endpoint';
import { startImdsDouble, type ImdsDouble } from '../../../lab/imds-double';
import { messageBody, sqsNotifier } from '../../../node-agent/src/notify';
import { memoryLog } from '../node-agent/fakes';

const REGION = 'us-west-2';
const ROLE_ID = 'AROAEXAMPLECOMPILEMASTR';
const QUEUE_URL = sqsQueueUrl(REGION, '123456789012', 'compile-masters-lifecycle');
const CM1 = 'i-0000000000a000001';
const CM2 = 'i-0000000000a000002';

/**
 * Sends every connection to the test endpoint, whatever name the SDK resolved: what the
 * machine's /etc/hosts line does in the lab. The Host header, the TLS server name and so the
 * signed host stay `sqs.us-west-2.amazonaws.com`.
 */
class EndpointAgent extends Agent {
  constructor(
    private readonly endpoint: { host: string; port: number },
    ca: string,
  ) {
    super({ ca, keepAlive: false });
  }

  override createConnection(options: RequestOptions, callback?: (error: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    return super.createConnection({ ...options, host: this.endpoint.host, port: this.endpoint.port }, callback);
  }
}

let dir: string;
let ca: AwsLabCa;
let registry: InstanceCredentials;
let endpoint: SqsEndpoint;
const delivered: SqsMessage[] = [];
const refused: SqsRefusal[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sqs-endpoint-'));
  ca = await labAwsCa(dir);
  registry = new InstanceCredentials({ roleId: ROLE_ID });
  endpoint = await startSqsEndpoint({
    host: '127.0.0.1',
    port: 0,
    region: REGION,
    ca,
    credentials: registry,
    queueUrls: [QUEUE_URL],
    deliver: (message) => void delivered.push(message),
    onRefused: (refusal) => void refused.push(refusal),
  });
});

afterAll(async () => {
  await endpoint?.close();
  await rm(dir, { recursive: true, force: true });
});

afterEach(() => {
  delivered.length = 0;
  refused.length = 0;
  vi.unstubAllEnvs();
});

/** The client as node-agent/src/cli.ts builds it; only the connection (name → endpoint, lab CA) and the test's credentials differ. */
function sqsClient(config: Partial<ConstructorParameters<typeof SQSClient>[0]> = {}): SQSClient {
  return new SQSClient({ region: REGION, requestHandler: { httpsAgent: new EndpointAgent(endpoint, ca.certPem) }, ...config });
}

function staticCredentials(document: ImdsCredentialsDocument, override: { secretAccessKey?: string } = {}) {
  return { accessKeyId: document.AccessKeyId, secretAccessKey: override.secretAccessKey ?? document.SecretAccessKey, sessionToken: document.Token };
}

async function refusal(client: SQSClient, body = messageBody(nodeAgentNotice(CM1, 'booted')), queueUrl = QUEUE_URL): Promise<Error & { $metadata: { httpStatusCode?: number } }> {
  try {
    await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));
  } catch (error) {
    return error as Error & { $metadata: { httpStatusCode?: number } };
  } finally {
    client.destroy();
  }
  throw new Error('SQS took the message');
}

describe('the node agent tells the controller through the lab SQS endpoint', () => {
  let imds: ImdsDouble;
  afterEach(async () => imds?.close());

  it("delivers the real notifier's message with the SenderId of the instance whose IMDS credentials signed it", async () => {
    // The instance's IMDS serves the role's credentials; the SDK's default chain finds them there,
    // as on EC2 (no keys in the environment or in files).
    imds = await startImdsDouble({ instanceId: CM1, region: REGION, localHostname: 'ip-10-0-0-4.us-west-2.compute.internal' });
    imds.metadata.set('iam/security-credentials/', registry.roleName);
    imds.metadata.set(`iam/security-credentials/${registry.roleName}`, JSON.stringify(registry.credentialsFor(CM1)));
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_CONTAINER_CREDENTIALS_FULL_URI', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI']) vi.stubEnv(name, undefined);
    vi.stubEnv('AWS_CONFIG_FILE', join(dir, 'no-config'));
    vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', join(dir, 'no-credentials'));
    vi.stubEnv('AWS_EC2_METADATA_SERVICE_ENDPOINT', imds.url);

    const client = sqsClient();
    const before = Date.now();
    const notice = nodeAgentNotice(CM1, 'enrolling', 'ab'.repeat(32));
    try {
      await sqsNotifier({ client, queueUrl: QUEUE_URL, log: memoryLog() }).send(notice);
    } finally {
      client.destroy();
    }

    expect(imds.requests).toContain(`GET /latest/meta-data/iam/security-credentials/${registry.roleName}`);
    expect(delivered).toHaveLength(1);
    const [message] = delivered;
    expect(message).toMatchObject({ queueUrl: QUEUE_URL, body: messageBody(notice), senderId: `${ROLE_ID}:${CM1}` });
    expect(senderInstanceId(message?.senderId, ROLE_ID)).toBe(CM1);
    expect(message?.sentAt.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(refused).toEqual([]);
  });
});

describe('who sent it is the key, never the body', () => {
  it("records cm2 as the sender of a notice that claims to be cm1's", async () => {
    const client = sqsClient({ credentials: staticCredentials(registry.credentialsFor(CM2)) });
    try {
      await sqsNotifier({ client, queueUrl: QUEUE_URL, log: memoryLog() }).send(nodeAgentNotice(CM1, 'booted'));
    } finally {
      client.destroy();
    }
    expect(delivered.map((message) => senderInstanceId(message.senderId, ROLE_ID))).toEqual([CM2]);
  });
});

describe('refusals: nothing is delivered', () => {
  it("refuses cm1's key signed with cm2's secret: SignatureDoesNotMatch", async () => {
    const client = sqsClient({ maxAttempts: 1, credentials: staticCredentials(registry.credentialsFor(CM1), { secretAccessKey: registry.credentialsFor(CM2).SecretAccessKey }) });
    const error = await refusal(client);
    expect(error.name).toBe('SignatureDoesNotMatch');
    expect(error.$metadata.httpStatusCode).toBe(403);
    expect(delivered).toEqual([]);
  });

  it("refuses a request whose body was changed after the SDK signed it (raw request, SQS's JSON error shape)", async () => {
    const notice = messageBody(nodeAgentNotice(CM1, 'booted'));
    const captured = await signedRequest(registry.credentialsFor(CM1), notice);
    const tampered = captured.body.replace(CM1, CM2);
    expect(tampered).not.toBe(captured.body);
    const response = await raw({ ...captured, body: tampered });
    expect(response.status).toBe(403);
    expect(response.headers['x-amzn-query-error']).toBe('SignatureDoesNotMatch;Sender');
    expect(response.headers['content-type']).toBe('application/x-amz-json-1.0');
    expect(JSON.parse(response.body)).toMatchObject({ __type: expect.stringMatching(/#InvalidSignatureException$/), message: expect.stringMatching(/does not match/) });
    // The SDK signs x-amz-content-sha256 too: a tamperer who also fixes that header still breaks the signature.
    expect(captured.headers['x-amz-content-sha256']).toBe(sha256(captured.body));
    const rehashed = await raw({ headers: { ...captured.headers, 'x-amz-content-sha256': sha256(tampered) }, body: tampered });
    expect(rehashed.status).toBe(403);
    expect(rehashed.headers['x-amzn-query-error']).toBe('SignatureDoesNotMatch;Sender');
    // The untouched request goes through: the refusal was the tampering, not the replay harness.
    expect((await raw(captured)).status).toBe(200);
    expect(delivered.map((message) => message.body)).toEqual([notice]);
  });

  it('refuses a revoked key (terminated instance): ExpiredToken, and the instance gets no more credentials', async () => {
    const instance = 'i-0000000000a0000aa';
    const credentials = staticCredentials(registry.credentialsFor(instance));
    registry.revoke(instance);
    const error = await refusal(sqsClient({ maxAttempts: 1, credentials }), messageBody(nodeAgentNotice(instance, 'booted')));
    expect(error.name).toBe('ExpiredToken');
    expect(error.$metadata.httpStatusCode).toBe(403);
    expect(() => registry.credentialsFor(instance)).toThrow(/terminated/);
    expect(delivered).toEqual([]);
  });

  it('refuses an expired key: ExpiredToken', async () => {
    const sevenHoursAgo = new Date(Date.now() - 7 * 3600 * 1000);
    const old = new InstanceCredentials({ roleId: ROLE_ID, clock: () => sevenHoursAgo });
    const issued = old.credentialsFor(CM1);
    const oldEndpoint = await startSqsEndpoint({ host: '127.0.0.1', port: 0, region: REGION, ca, credentials: old, queueUrls: [QUEUE_URL], deliver: (message) => void delivered.push(message) });
    try {
      const client = new SQSClient({ region: REGION, maxAttempts: 1, credentials: staticCredentials(issued), requestHandler: { httpsAgent: new EndpointAgent(oldEndpoint, ca.certPem) } });
      const error = await refusal(client);
      expect(error.name).toBe('ExpiredToken');
      expect(delivered).toEqual([]);
    } finally {
      await oldEndpoint.close();
    }
  });

  it('refuses a key no instance was given: InvalidClientTokenId', async () => {
    const client = sqsClient({ maxAttempts: 1, credentials: { accessKeyId: 'ASIAEXAMPLEUNKNOWN00', secretAccessKey: 'x'.repeat(40), sessionToken: 'token' } });
    const error = await refusal(client);
    expect(error.name).toBe('InvalidClientTokenId');
    expect(error.$metadata.httpStatusCode).toBe(403);
    expect(delivered).toEqual([]);
  });

  it("refuses cm1's key with another session token: InvalidClientTokenId", async () => {
    const client = sqsClient({ maxAttempts: 1, credentials: { ...staticCredentials(registry.credentialsFor(CM1)), sessionToken: registry.credentialsFor(CM2).Token } });
    expect((await refusal(client)).name).toBe('InvalidClientTokenId');
    expect(delivered).toEqual([]);
  });

  it('refuses a signature made ten minutes ago (replay window): SignatureDoesNotMatch', async () => {
    const client = sqsClient({ maxAttempts: 1, systemClockOffset: -10 * 60_000, credentials: staticCredentials(registry.credentialsFor(CM1)) });
    const error = await refusal(client);
    expect(error.name).toBe('SignatureDoesNotMatch');
    expect(error.message).toMatch(/Signature expired/);
    expect(delivered).toEqual([]);
  });

  it('answers QueueDoesNotExist for another queue name, which the SDK maps to its modelled error', async () => {
    const client = sqsClient({ maxAttempts: 1, credentials: staticCredentials(registry.credentialsFor(CM1)) });
    const error = await refusal(client, undefined, sqsQueueUrl(REGION, '123456789012', 'another-queue'));
    expect(error).toBeInstanceOf(QueueDoesNotExist);
    expect(error.$metadata.httpStatusCode).toBe(400);
    expect(delivered).toEqual([]);
    expect(refused.map((entry) => entry.code)).toEqual(['AWS.SimpleQueueService.NonExistentQueue']);
  });

  it('refuses an unsigned request: MissingAuthenticationToken', async () => {
    const captured = await signedRequest(registry.credentialsFor(CM1), messageBody(nodeAgentNotice(CM1, 'booted')));
    const headers = Object.fromEntries(Object.entries(captured.headers).filter(([name]) => name.toLowerCase() !== 'authorization'));
    const response = await raw({ ...captured, headers });
    expect(response.status).toBe(403);
    expect(response.headers['x-amzn-query-error']).toBe('MissingAuthenticationToken;Sender');
    expect(delivered).toEqual([]);
  });
});

describe('the instance credentials', () => {
  it('are the document IMDS serves, field for field, and stay the same until close to expiry', () => {
    let now = new Date('2026-03-01T10:00:00.123Z');
    const credentials = new InstanceCredentials({ roleId: ROLE_ID, roleName: 'compile-master-role', clock: () => now });
    const first = credentials.credentialsFor(CM1);
    expect(Object.keys(first)).toEqual(['Code', 'LastUpdated', 'Type', 'AccessKeyId', 'SecretAccessKey', 'Token', 'Expiration']);
    expect(first).toMatchObject({ Code: 'Success', Type: 'AWS-HMAC', LastUpdated: '2026-03-01T10:00:00Z', Expiration: '2026-03-01T16:00:00Z' });
    expect(first.AccessKeyId).toMatch(/^ASIA[A-Z2-7]{16}$/);
    expect(credentials.lookup(first.AccessKeyId)).toMatchObject({ instanceId: CM1, senderId: `${ROLE_ID}:${CM1}`, secret: first.SecretAccessKey, token: first.Token, revoked: false });
    expect(credentials.credentialsFor(CM2).AccessKeyId).not.toBe(first.AccessKeyId);

    now = new Date('2026-03-01T15:40:00Z');
    expect(credentials.credentialsFor(CM1)).toEqual(first);
    now = new Date('2026-03-01T15:50:00Z');
    const renewed = credentials.credentialsFor(CM1);
    expect(renewed.AccessKeyId).not.toBe(first.AccessKeyId);
    // The old key works until it expires, as EC2's do.
    expect(credentials.lookup(first.AccessKeyId)?.revoked).toBe(false);
    expect(credentials.lookup('ASIAAAAAAAAAAAAAAAAA')).toBeUndefined();
  });

  it('revoking an instance revokes every key it was given, and no other', () => {
    let now = new Date('2026-03-01T10:00:00Z');
    const credentials = new InstanceCredentials({ roleId: ROLE_ID, clock: () => now });
    const first = credentials.credentialsFor(CM1);
    now = new Date('2026-03-01T15:55:00Z');
    const second = credentials.credentialsFor(CM1);
    const other = credentials.credentialsFor(CM2);
    credentials.revoke(CM1);
    expect([first, second, other].map((document) => credentials.lookup(document.AccessKeyId)?.revoked)).toEqual([true, true, false]);
  });
});

describe('the lab CA and the machine side', () => {
  it('keeps one CA under the lab directory, whoever asks first', async () => {
    const fresh = await mkdtemp(join(tmpdir(), 'aws-ca-'));
    try {
      const [a, b] = await Promise.all([labAwsCa(fresh), labAwsCa(fresh)]);
      expect(a.certPem).toBe(b.certPem);
      expect((await labAwsCa(fresh)).certPem).toBe(a.certPem);
      expect(a.certPath).toBe(join(fresh, 'aws-ca', 'ca.pem'));
    } finally {
      await rm(fresh, { recursive: true, force: true });
    }
  });

  it("gives the node agent's unit the CA through NODE_EXTRA_CA_CERTS", () => {
    const dropIn = sqsTrustDropIn(ca);
    expect(dropIn.path).toBe('/etc/systemd/system/compile-master-agent.service.d/lab-aws-ca.conf');
    expect(dropIn.text).toContain(`[Service]\nEnvironment=NODE_EXTRA_CA_CERTS=${dropIn.caPath}\n`);
    expect(dropIn.caPem).toBe(ca.certPem);
  });
});

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

interface CapturedRequest {
  headers: Record<string, string>;
  body: string;
}

/** A SendMessage exactly as the SDK signs it, taken off the client before it is sent. */
async function signedRequest(document: ImdsCredentialsDocument, body: string): Promise<CapturedRequest> {
  const client = sqsClient({ maxAttempts: 1, credentials: staticCredentials(document) });
  let captured: CapturedRequest | undefined;
  class Captured extends Error {}
  client.middlewareStack.add(
    () => async (args) => {
      const request = args.request as { headers: Record<string, string>; body: string | Uint8Array };
      captured = { headers: { ...request.headers }, body: typeof request.body === 'string' ? request.body : new TextDecoder().decode(request.body) };
      throw new Captured();
    },
    { step: 'deserialize', priority: 'low' },
  );
  await expect(client.send(new SendMessageCommand({ QueueUrl: QUEUE_URL, MessageBody: body }))).rejects.toBeInstanceOf(Captured);
  client.destroy();
  if (!captured) throw new Error('no request captured');
  return captured;
}

async function raw(request: CapturedRequest): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const headers = { ...request.headers, 'content-length': String(Buffer.byteLength(request.body)) };
  return new Promise((resolve, reject) => {
    const outgoing = httpsRequest({ method: 'POST', host: `sqs.${REGION}.amazonaws.com`, path: '/', headers, agent: new EndpointAgent(endpoint, ca.certPem) }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    outgoing.on('error', reject);
    outgoing.end(request.body);
  });
}
