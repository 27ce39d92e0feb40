import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local stand-in for the EC2 instance metadata service, IMDSv2 only: PUT /latest/api/token
 * hands out a session token, and every GET must carry it (401 otherwise), as on an instance with
 * HttpTokens=required. Paths answer 404 unless set.
 */
export interface ImdsDouble {
  /** http://127.0.0.1:<port>, for MetadataService({ endpoint }) or AWS_EC2_METADATA_SERVICE_ENDPOINT. */
  readonly url: string;
  /** Metadata path below /latest/meta-data/ → value; delete a key to make it answer 404. */
  readonly metadata: Map<string, string>;
  /** Switches: 'hang' accepts the request and never answers (an IMDS that times out). */
  behaviour: { token: 'ok' | 'hang' | 'forbidden'; metadata: 'ok' | 'hang' };
  /** Every request seen, "METHOD /path". */
  readonly requests: string[];
  close(): Promise<void>;
}

export interface ImdsIdentity {
  instanceId: string;
  region: string;
  localHostname: string;
  /** Absent: 404, as before the instance's first Auto Scaling transition. */
  targetLifecycleState?: string;
}

export async function startImdsDouble(identity: ImdsIdentity): Promise<ImdsDouble> {
  const tokens = new Set<string>();
  const metadata = new Map<string, string>([
    ['instance-id', identity.instanceId],
    ['placement/region', identity.region],
    ['local-hostname', identity.localHostname],
  ]);
  if (identity.targetLifecycleState !== undefined) metadata.set('autoscaling/target-lifecycle-state', identity.targetLifecycleState);
  const requests: string[] = [];

  const handle = (request: IncomingMessage, response: ServerResponse) => {
    // The SDK joins its endpoint's "/" to the path, so real requests may start with "//".
    const path = (request.url ?? '/').replace(/^\/+/, '/');
    requests.push(`${request.method} ${path}`);
    // Read on every request, so tests may replace the whole switch object.
    const { behaviour } = double;
    if (path === '/latest/api/token') {
      if (request.method !== 'PUT') return answer(response, 405, '');
      if (behaviour.token === 'hang') return;
      if (behaviour.token === 'forbidden') return answer(response, 403, '');
      const ttl = Number(request.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21_600) return answer(response, 400, '');
      const token = randomBytes(24).toString('base64');
      tokens.add(token);
      return answer(response, 200, token);
    }
    if (request.method !== 'GET') return answer(response, 405, '');
    if (!tokens.has(String(request.headers['x-aws-ec2-metadata-token'] ?? ''))) return answer(response, 401, '');
    if (behaviour.metadata === 'hang') return;
    const prefix = '/latest/meta-data/';
    const value = path.startsWith(prefix) ? metadata.get(path.slice(prefix.length)) : undefined;
    return value === undefined ? answer(response, 404, notFoundPage) : answer(response, 200, value);
  };

  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const double: ImdsDouble = {
    url: `http://127.0.0.1:${port}`,
    metadata,
    behaviour: { token: 'ok', metadata: 'ok' },
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return double;
}

const notFoundPage = '<?xml version="1.0" encoding="iso-8859-1"?>\n<title>404 - Not Found</title>';

function answer(response: ServerResponse, status: number, body: string): void {
  response.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  response.end(body);
}
