import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local stand-in for the EC2 instance metadata service, IMDSv2 only: PUT /latest/api/token
 * hands out a session token, and every GET must carry it (401 otherwise), as on an instance with
 * HttpTokens=required. Paths answer 404 unless set. The request handling is defined once, in
 * imdsHandler: startImdsDouble serves one instance on a loopback port (unit and integration
 * tests of the node agent), lab/machines/imds.ts serves every lab machine on 169.254.169.254.
 */
export interface ImdsDouble {
  /** http://127.0.0.1:<port>, for MetadataService({ endpoint }) or AWS_EC2_METADATA_SERVICE_ENDPOINT. */
  readonly url: string;
  /** Metadata path below /latest/meta-data/ → value; delete a key to make it answer 404. */
  readonly metadata: Map<string, string>;
  /** Switches: 'hang' accepts the request and never answers (an IMDS that times out). */
  behaviour: ImdsBehaviour;
  /** Every request seen, "METHOD /path". */
  readonly requests: string[];
  close(): Promise<void>;
}

export interface ImdsBehaviour {
  token: 'ok' | 'hang' | 'forbidden';
  metadata: 'ok' | 'hang';
}

export interface ImdsIdentity {
  instanceId: string;
  region: string;
  localHostname: string;
  /** Absent: 404, as before the instance's first Auto Scaling transition. */
  targetLifecycleState?: string;
}

/** Temporary credentials of the instance profile's role, as STS issues them. */
export interface RoleCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration: Date;
}

/** What one instance's metadata service knows; the handler reads it on every request. */
export interface ImdsInstance {
  readonly metadata: Map<string, string>;
  behaviour: ImdsBehaviour;
  /** The instance profile's role, served under iam/security-credentials/ when set. */
  role?: { name: string; credentials: () => Promise<RoleCredentials> };
  /** Session tokens this instance handed out: a token is good only on the instance that issued it. */
  readonly tokens: Set<string>;
}

export function imdsInstance(identity: ImdsIdentity): ImdsInstance {
  const metadata = new Map<string, string>([
    ['instance-id', identity.instanceId],
    ['placement/region', identity.region],
    ['local-hostname', identity.localHostname],
  ]);
  if (identity.targetLifecycleState !== undefined) metadata.set('autoscaling/target-lifecycle-state', identity.targetLifecycleState);
  return { metadata, behaviour: { token: 'ok', metadata: 'ok' }, tokens: new Set() };
}

/**
 * The IMDSv2 protocol over `instanceFor(request)`: which instance is asking (one fixed instance,
 * or the one at the request's source address). A request from no known instance is refused with
 * 403, nothing else said.
 */
export function imdsHandler(
  instanceFor: (request: IncomingMessage) => ImdsInstance | undefined,
  record: (line: string, request: IncomingMessage) => void,
): RequestListener {
  return (request, response) => {
    // The SDK joins its endpoint's "/" to the path, so real requests may start with "//".
    const path = (request.url ?? '/').replace(/^\/+/, '/');
    record(`${request.method} ${path}`, request);
    const instance = instanceFor(request);
    if (!instance) return answer(response, 403, '');
    // Read on every request, so tests may replace the whole switch object.
    const { behaviour } = instance;
    if (path === '/latest/api/token') {
      if (request.method !== 'PUT') return answer(response, 405, '');
      if (behaviour.token === 'hang') return;
      if (behaviour.token === 'forbidden') return answer(response, 403, '');
      const ttl = Number(request.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21_600) return answer(response, 400, '');
      const token = randomBytes(24).toString('base64');
      instance.tokens.add(token);
      return answer(response, 200, token);
    }
    if (request.method !== 'GET') return answer(response, 405, '');
    if (!instance.tokens.has(String(request.headers['x-aws-ec2-metadata-token'] ?? ''))) return answer(response, 401, '');
    if (behaviour.metadata === 'hang') return;
    const prefix = '/latest/meta-data/';
    if (!path.startsWith(prefix)) return answer(response, 404, notFoundPage);
    const key = path.slice(prefix.length);
    if (key.startsWith(CREDENTIALS_PREFIX) && instance.role) return void answerCredentials(response, instance.role, key.slice(CREDENTIALS_PREFIX.length));
    const value = instance.metadata.get(key);
    return value === undefined ? answer(response, 404, notFoundPage) : answer(response, 200, value);
  };
}

const CREDENTIALS_PREFIX = 'iam/security-credentials/';

/** The document IMDS answers at /latest/meta-data/iam/security-credentials/<role name>. */
export interface ImdsCredentialsDocument {
  Code: 'Success';
  LastUpdated: string;
  Type: 'AWS-HMAC';
  AccessKeyId: string;
  SecretAccessKey: string;
  Token: string;
  Expiration: string;
}

export function imdsCredentialsDocument(credentials: RoleCredentials, lastUpdated = new Date()): ImdsCredentialsDocument {
  return {
    Code: 'Success',
    LastUpdated: isoSeconds(lastUpdated),
    Type: 'AWS-HMAC',
    AccessKeyId: credentials.accessKeyId,
    SecretAccessKey: credentials.secretAccessKey,
    Token: credentials.sessionToken,
    Expiration: isoSeconds(credentials.expiration),
  };
}

/** The listing names the role; the role's path answers the document EC2 serves, fresh each time. */
async function answerCredentials(response: ServerResponse, role: NonNullable<ImdsInstance['role']>, rest: string): Promise<void> {
  if (rest === '') return answer(response, 200, role.name);
  if (rest !== role.name) return answer(response, 404, notFoundPage);
  try {
    const document = imdsCredentialsDocument(await role.credentials());
    answer(response, 200, JSON.stringify(document, null, 2));
  } catch {
    answer(response, 500, '');
  }
}

/** EC2 writes its timestamps without milliseconds: 2024-05-01T12:00:00Z. */
function isoSeconds(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

export async function startImdsDouble(identity: ImdsIdentity): Promise<ImdsDouble> {
  const instance = imdsInstance(identity);
  const requests: string[] = [];
  const server = createServer(imdsHandler(() => instance, (line) => requests.push(line)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    metadata: instance.metadata,
    get behaviour() {
      return instance.behaviour;
    },
    set behaviour(value) {
      instance.behaviour = value;
    },
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const notFoundPage = '<?xml version="1.0" encoding="iso-8859-1"?>\n<title>404 - Not Found</title>';

/**
 * Each connection is closed after its answer. Kept alive, an idle socket to this server held the
 * node agent's process open until Node's 5 s server idle timeout: its shutdown step had logged
 * its decision but delayed every lab machine's reboot and poweroff by 5 s.
 */
function answer(response: ServerResponse, status: number, body: string): void {
  response.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), connection: 'close' });
  response.end(body);
}
