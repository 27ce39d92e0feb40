import { createHash, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { issueServerCertificate, type AwsLabCa } from './ca';
import type { IssuedKey } from './credentials';
import { verifySigV4 } from './sigv4';

/**
 * SQS's SendMessage, over the wire protocol @aws-sdk/client-sqs speaks (3.1169: AWS JSON 1.0 with
 * awsQueryCompatible, see the client's runtimeConfig.shared.js), for the lab's machines: their
 * node agents sign with their instance credentials, this endpoint checks the signature as SQS
 * does and hands the message on with the SenderId SQS would record for those credentials.
 *
 * What the SDK sends: POST / to the queue URL's origin (middleware-sdk-sqs's queueUrlMiddleware,
 * useQueueUrlAsEndpoint, default on; the stack's queue URLs use the regional name anyway),
 * `Content-Type: application/x-amz-json-1.0`, `X-Amz-Target: AmazonSQS.SendMessage`,
 * `x-amzn-query-mode: true`, body {"QueueUrl","MessageBody"}, SigV4 for service `sqs` (with
 * x-amz-content-sha256 and x-amz-security-token among the signed headers). It checks
 * MD5OfMessageBody in the answer (middleware-sdk-sqs's send-message.js), and reads an error's
 * code from the `x-amzn-query-error: <code>;<Sender|Receiver>` header before the body's __type.
 */

export interface SqsMessage {
  queueUrl: string;
  body: string;
  /** `<role id>:<instance id>` of the credentials that signed the request. */
  senderId: string;
  sentAt: Date;
  messageId: string;
}

export interface SqsRefusal {
  status: number;
  code: string;
  message: string;
  accessKeyId?: string;
}

export interface SqsEndpointOptions {
  /** Where to listen; in the lab the bridge gateway address and 443, in tests 127.0.0.1 and 0. */
  host: string;
  port: number;
  region: string;
  /** The lab's AWS CA: the endpoint gets a certificate for the region's SQS names from it. */
  ca: AwsLabCa;
  credentials: { lookup(accessKeyId: string): IssuedKey | undefined };
  /** The queues that exist, by URL as the stack writes it (see `sqsQueueUrl`). */
  queueUrls: readonly string[];
  /** Takes an accepted message; a rejection answers 500, as SQS does when it could not store it. */
  deliver(message: SqsMessage): void | Promise<void>;
  /** Every refused request, for logs and tests. */
  onRefused?(refusal: SqsRefusal): void;
  clock?: () => Date;
}

export interface SqsEndpoint {
  host: string;
  port: number;
  close(): Promise<void>;
}

/** SigV4's replay window: a signature older or newer than this is refused. */
const MAX_SKEW_MS = 5 * 60_000;
/** SQS's largest message is 1 MiB; the JSON envelope and escaping may double it at most. */
const MAX_REQUEST_BYTES = 2 * 1024 * 1024 + 4096;
const MAX_MESSAGE_BYTES = 1024 * 1024;
const JSON_1_0 = 'application/x-amz-json-1.0';
/** The characters SQS accepts in a message body. */
const SQS_CHARACTERS = /^[\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;

/** The names the SDK resolves SQS to in a region: standard, FIPS, dual-stack, both. */
export function sqsHostNames(region: string): string[] {
  return [`sqs.${region}.amazonaws.com`, `sqs-fips.${region}.amazonaws.com`, `sqs.${region}.api.aws`, `sqs-fips.${region}.api.aws`];
}

/** A queue URL in the form CloudFormation's Ref of AWS::SQS::Queue gives (the stack's queueUrl). */
export function sqsQueueUrl(region: string, accountId: string, queueName: string): string {
  return `https://sqs.${region}.amazonaws.com/${accountId}/${queueName}`;
}

/** The /etc/hosts line a machine needs so the SQS names reach the endpoint at `address`. */
export function sqsHostsLine(address: string, region: string): string {
  return `${address} ${sqsHostNames(region).join(' ')}`;
}

/** Where a machine keeps the lab's AWS CA, and the node agent's drop-in that makes Node trust it. */
export const MACHINE_AWS_CA_PATH = '/usr/local/share/compile-masters-lab/aws-ca.pem';
const NODE_AGENT_DROP_IN = '/etc/systemd/system/compile-master-agent.service.d/lab-aws-ca.conf';

/**
 * What a machine needs to trust the endpoint: the CA PEM at `caPath` (copy `ca.certPath` there)
 * and the drop-in at `path`. NODE_EXTRA_CA_CERTS adds to Node's bundled roots rather than
 * replacing them, and only the node agent's unit gets it.
 */
export function sqsTrustDropIn(ca: AwsLabCa): { path: string; text: string; caPath: string; caPem: string; hostCaPath: string } {
  const text = [
    '# The lab: the node agent reaches SQS at the lab endpoint, whose certificate the lab AWS CA signs.',
    '[Service]',
    `Environment=NODE_EXTRA_CA_CERTS=${MACHINE_AWS_CA_PATH}`,
    '',
  ].join('\n');
  return { path: NODE_AGENT_DROP_IN, text, caPath: MACHINE_AWS_CA_PATH, caPem: ca.certPem, hostCaPath: ca.certPath };
}

export async function startSqsEndpoint(options: SqsEndpointOptions): Promise<SqsEndpoint> {
  const tls = await issueServerCertificate(options.ca, sqsHostNames(options.region));
  const clock = options.clock ?? (() => new Date());
  const queues = new Set(options.queueUrls);

  const refuse = (response: ServerResponse, refusal: SqsRefusal & { type: string; fault?: 'Sender' | 'Receiver' }) => {
    options.onRefused?.({ status: refusal.status, code: refusal.code, message: refusal.message, ...(refusal.accessKeyId ? { accessKeyId: refusal.accessKeyId } : {}) });
    answer(response, refusal.status, { __type: refusal.type, message: refusal.message }, { 'x-amzn-query-error': `${refusal.code};${refusal.fault ?? 'Sender'}` });
  };

  const handle = async (request: IncomingMessage, response: ServerResponse, body: Buffer) => {
    const now = clock();
    const verdict = verifySigV4(
      { method: request.method ?? 'GET', url: request.url ?? '/', rawHeaders: request.rawHeaders, body },
      { region: options.region, service: 'sqs', now, maxSkewMs: MAX_SKEW_MS },
      (accessKeyId) => options.credentials.lookup(accessKeyId),
    );
    if (!verdict.ok) {
      const accessKeyId = verdict.accessKeyId;
      switch (verdict.reason) {
        case 'missing':
          return refuse(response, { status: 403, code: 'MissingAuthenticationToken', type: 'com.amazon.coral.service#MissingAuthenticationTokenException', message: verdict.message });
        case 'unknown-key':
          return refuse(response, { status: 403, code: 'InvalidClientTokenId', type: 'com.amazon.coral.service#UnrecognizedClientException', message: verdict.message, accessKeyId });
        case 'malformed':
        case 'scope':
          return refuse(response, { status: 400, code: 'IncompleteSignature', type: 'com.amazon.coral.service#IncompleteSignatureException', message: verdict.message, accessKeyId });
        case 'mismatch':
        case 'skewed':
          return refuse(response, { status: 403, code: 'SignatureDoesNotMatch', type: 'com.amazon.coral.service#InvalidSignatureException', message: verdict.message, accessKeyId });
      }
    }
    const { key } = verdict;
    if (request.headers['x-amz-security-token'] !== key.token) {
      return refuse(response, { status: 403, code: 'InvalidClientTokenId', type: 'com.amazon.coral.service#UnrecognizedClientException', message: 'The security token included in the request is invalid.', accessKeyId: verdict.accessKeyId });
    }
    if (key.revoked || key.expiration <= now) {
      return refuse(response, { status: 403, code: 'ExpiredToken', type: 'com.amazon.coral.service#ExpiredTokenException', message: 'The security token included in the request is expired', accessKeyId: verdict.accessKeyId });
    }

    const target = request.headers['x-amz-target'];
    if (request.method !== 'POST' || request.headers['content-type'] !== JSON_1_0 || target !== 'AmazonSQS.SendMessage') {
      return refuse(response, { status: 400, code: 'InvalidAction', type: 'com.amazon.coral.service#UnknownOperationException', message: `This endpoint serves only SendMessage over ${JSON_1_0} (got ${request.method} ${String(target)})` });
    }
    const input = parseInput(body);
    if (typeof input === 'string') return refuse(response, { status: 400, code: 'InvalidParameterValue', type: 'com.amazonaws.sqs#InvalidParameterValue', message: input });
    if (!queues.has(input.QueueUrl)) {
      return refuse(response, { status: 400, code: 'AWS.SimpleQueueService.NonExistentQueue', type: 'com.amazonaws.sqs#QueueDoesNotExist', message: 'The specified queue does not exist.' });
    }
    if (!SQS_CHARACTERS.test(input.MessageBody)) {
      return refuse(response, { status: 400, code: 'InvalidMessageContents', type: 'com.amazonaws.sqs#InvalidMessageContents', message: 'Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF' });
    }
    const messageId = randomUUID();
    try {
      await options.deliver({ queueUrl: input.QueueUrl, body: input.MessageBody, senderId: key.senderId, sentAt: now, messageId });
    } catch (error) {
      return refuse(response, { status: 500, code: 'InternalFailure', type: 'com.amazon.coral.service#InternalFailure', message: (error as Error).message, fault: 'Receiver' });
    }
    answer(response, 200, { MD5OfMessageBody: createHash('md5').update(input.MessageBody, 'utf8').digest('hex'), MessageId: messageId });
  };

  const server: Server = createServer({ cert: tls.certPem, key: tls.keyPem }, (request, response) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) request.destroy();
      else chunks.push(chunk);
    });
    request.on('end', () => {
      handle(request, response, Buffer.concat(chunks)).catch((error: unknown) => {
        if (!response.headersSent) answer(response, 500, { __type: 'com.amazon.coral.service#InternalFailure', message: String(error) }, { 'x-amzn-query-error': 'InternalFailure;Receiver' });
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    host: address.address,
    port: address.port,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** SendMessage's input, or why it is not acceptable. */
function parseInput(body: Buffer): { QueueUrl: string; MessageBody: string } | string {
  let input: unknown;
  try {
    input = JSON.parse(body.toString('utf8'));
  } catch {
    return 'The request body is not JSON';
  }
  const { QueueUrl, MessageBody } = (input ?? {}) as Record<string, unknown>;
  if (typeof QueueUrl !== 'string') return 'Value for parameter QueueUrl is invalid. Reason: it is required.';
  if (typeof MessageBody !== 'string' || MessageBody === '') return 'The request must contain the parameter MessageBody.';
  if (Buffer.byteLength(MessageBody) > MAX_MESSAGE_BYTES) return `One or more parameters are invalid. Reason: Message must be shorter than ${MAX_MESSAGE_BYTES} bytes.`;
  return { QueueUrl, MessageBody };
}

function answer(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': JSON_1_0,
    'content-length': Buffer.byteLength(text),
    'x-amzn-requestid': randomUUID(),
    ...headers,
  });
  response.end(text);
}
