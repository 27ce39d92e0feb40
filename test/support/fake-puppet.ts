import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface FakeAnswer {
  status: number;
  body?: string | object;
}

export type FakeRoute = (request: { method: string; path: string; body: string; headers: Record<string, string | string[] | undefined> }) => FakeAnswer | undefined;

export interface FakePuppet {
  url: string;
  /** "METHOD /path" of every request, in order. */
  requests: string[];
  close(): Promise<void>;
}

/**
 * A small HTTPS server answering like a Puppet service for the routes given (404 otherwise):
 * for what the lab cannot be made to do without reconfiguring it.
 */
export async function fakePuppet(tls: { cert: string; key: string }, route: FakeRoute): Promise<FakePuppet> {
  const requests: string[] = [];
  const server = createServer({ cert: tls.cert, key: tls.key }, (request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const path = request.url ?? '/';
      requests.push(`${request.method} ${path}`);
      const answer = route({ method: request.method ?? 'GET', path, body: Buffer.concat(chunks).toString('utf8'), headers: request.headers }) ?? { status: 404, body: 'Not Found' };
      const json = typeof answer.body === 'object';
      response.writeHead(answer.status, { 'content-type': json ? 'application/json' : 'text/plain; charset=utf-8' });
      response.end(answer.body === undefined ? '' : json ? JSON.stringify(answer.body) : answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, resolve));
  return {
    url: `https://localhost:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * Puppet Server 7.9.5's 409 body for signing a CSR with alt names while allow-subject-alt-names is
 * false (certificate_authority.clj, ensure-subject-alt-names-allowed!), word for word.
 */
export function altNamesRefusal(certname: string, altNames: string): string {
  return `CSR '${certname}' contains extra subject alternative names (${altNames}), which are disallowed. To allow subject alternative names, set allow-subject-alt-names to true in your ca.conf file. Then restart the puppetserver and try signing this certificate again.`;
}

/**
 * Puppet Server 7.9.5's 400 for a CSR whose certname already has a CSR while allow-duplicate-certs
 * is false (certificate_authority.clj, validate-duplicate-cert-policy!), word for word; with it
 * true the same submission answers 200 with an empty body.
 */
export function duplicateRefusal(certname: string): string {
  return `${certname} already has a requested certificate; ignoring certificate request`;
}

/**
 * The CA API routes the doctor's probes use, answering as Puppet Server does with
 * allow-subject-alt-names false, and allow-duplicate-certs as `policy` says when asked (false
 * unless set); `csrs` holds the pending requests, so a test sees the cleanup.
 */
export function altNamesRefusingCa(csrs: Set<string>, crl: string, policy: { allowDuplicateCerts?: boolean } = {}): FakeRoute {
  return ({ method, path }) => {
    if (path === '/puppet-ca/v1/certificate_revocation_list/ca') return { status: 200, body: crl };
    if (path === '/puppet-ca/v1/certificate_statuses/any?state=requested') return { status: 200, body: [...csrs].map((name) => ({ name, state: 'requested' })) };
    const request = /^\/puppet-ca\/v1\/certificate_request\/(.+)$/.exec(path);
    if (method === 'PUT' && request) {
      if (csrs.has(request[1]!) && !policy.allowDuplicateCerts) return { status: 400, body: duplicateRefusal(request[1]!) };
      csrs.add(request[1]!);
      return { status: 200, body: '' };
    }
    const status = /^\/puppet-ca\/v1\/certificate_status\/(.+)$/.exec(path);
    if (!status) return undefined;
    const certname = status[1]!;
    if (method === 'PUT') return { status: 409, body: altNamesRefusal(certname, `DNS:alt-${certname}`) };
    if (method === 'GET') return csrs.has(certname) ? { status: 200, body: { name: certname, state: 'requested' } } : { status: 404 };
    if (method === 'DELETE') return csrs.delete(certname) ? { status: 204 } : { status: 404 };
    return undefined;
  };
}
