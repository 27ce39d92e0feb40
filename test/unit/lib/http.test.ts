import { createServer, type Server } from 'node:https';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PuppetApiError, PuppetTlsError, PuppetUnavailableError } from '../../../lib/errors';
import { backoffDelay, PuppetEndpoint } from '../../../lib/puppet';
import { makeTestCa, type TestCa } from '../../support/pki';
import AgentClass from 'undici/lib/dispatcher/agent.js';
import request from 'undici/lib/api/api-request.js';

/** A real TLS server whose answers the test scripts, to observe retries over a real connection. */
describe('PuppetEndpoint', () => {
  let ca: TestCa;
  let server: Server;
  let baseUrl: string;
  let script: Array<{ status: number; body: string }> = [];
  let hits = 0;
  let lastHost: string | undefined;
  const noSleep = async () => {};

  beforeAll(async () => {
    ca = await makeTestCa();
    const leaf = await ca.issue({ commonName: 'localhost', dnsNames: ['localhost'] });
    server = createServer({ cert: leaf.cert, key: leaf.key }, (req, res) => {
      hits++;
      lastHost = req.headers.host;
      const next = script.shift() ?? { status: 200, body: '{}' };
      res.writeHead(next.status, { 'content-type': 'application/json' });
      res.end(next.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `https://localhost:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  function endpoint(overrides: Partial<ConstructorParameters<typeof PuppetEndpoint>[0]> = {}) {
    hits = 0;
    return new PuppetEndpoint({ server: 'ca', baseUrl, tls: { ca: ca.cert }, sleep: noSleep, ...overrides });
  }

  it('retries 5xx and returns the first acceptable answer', async () => {
    script = [{ status: 503, body: 'busy' }, { status: 500, body: 'oops' }, { status: 200, body: '{"ok":true}' }];
    const result = await endpoint().call({ operation: 'probe', method: 'GET', path: '/x', accept: [200] });
    expect(result.text).toBe('{"ok":true}');
    expect(hits).toBe(3);
  });

  it('never retries a 4xx and gives the operator hint for a CA 403', async () => {
    script = [{ status: 403, body: 'Forbidden request: /puppet-ca/v1/clean (method :put)' }];
    const error = await endpoint().call({ operation: 'clean', method: 'PUT', path: '/puppet-ca/v1/clean', body: {}, accept: [200] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PuppetApiError);
    expect(error).not.toBeInstanceOf(PuppetUnavailableError);
    expect((error as PuppetApiError).status).toBe(403);
    expect((error as Error).message).toMatch(/auth\.conf/);
    expect(hits).toBe(1);
  });

  it('gives up after the configured attempts with a PuppetUnavailableError', async () => {
    script = Array.from({ length: 5 }, () => ({ status: 502, body: 'bad gateway' }));
    const error = await endpoint({ retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 1 } })
      .call({ operation: 'probe', method: 'GET', path: '/x', accept: [200] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PuppetUnavailableError);
    expect((error as Error).message).toMatch(/gave up after 3 attempt/);
    expect(hits).toBe(3);
    script = [];
  });

  it('refuses a server whose certificate is not signed by the pinned CA', async () => {
    const otherCa = await makeTestCa('Some other CA');
    const error = await endpoint({ tls: { ca: otherCa.cert } })
      .call({ operation: 'probe', method: 'GET', path: '/x', accept: [200] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PuppetTlsError);
    expect(error).not.toBeInstanceOf(PuppetUnavailableError);
    expect((error as Error).message).toMatch(/TLS verification failed \(\w+\).*pinned CA/);
    expect(hits).toBe(0);
  });

  it('verifies a server reached by address against the given servername', async () => {
    const byAddress = baseUrl.replace('localhost', '127.0.0.1');
    script = [{ status: 200, body: 'running' }];
    const result = await endpoint({ baseUrl: byAddress, servername: 'localhost' }).call({ operation: 'probe', method: 'GET', path: '/x', accept: [200] });
    expect(result.text).toBe('running');
    // Puppet Server (Jetty) answers 400 "Host does not match SNI" when the two differ.
    expect(lastHost).toBe(`localhost:${new URL(baseUrl).port}`);
    const error = await endpoint({ baseUrl: byAddress, servername: 'someone-else.lab.test' })
      .call({ operation: 'probe', method: 'GET', path: '/x', accept: [200] })
      .catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/TLS verification failed \(ERR_TLS_CERT_ALTNAME_INVALID\)/);
    expect(hits).toBe(0);
  });

  it('refuses plain http URLs', () => {
    expect(() => new PuppetEndpoint({ server: 'ca', baseUrl: 'http://localhost:8140', tls: { ca: '' } })).toThrow(/https/);
  });
});

/**
 * http.ts imports undici's Agent and request API from their own modules rather than undici's
 * index (a fifth of the controller bundle). Runs after the endpoint tests above, so those have
 * spoken to a real server without the index ever loaded.
 */
describe('the undici modules http.ts imports', () => {
  it('did their job without undici\'s index', () => {
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    expect(loaded.some((file) => file.endsWith('/undici/lib/dispatcher/agent.js'))).toBe(true);
    expect(loaded.some((file) => /\/undici\/index\.js$/.test(file))).toBe(false);
    expect(AgentClass.prototype.request).toBe(request);
  });

  it('are the very Agent and request API undici exports (guards an undici upgrade)', async () => {
    const undici = await import('undici');
    expect(AgentClass).toBe(undici.Agent);
    expect(request).toBe(undici.Dispatcher.prototype.request);
  });
});

describe('backoffDelay', () => {
  it('grows exponentially up to the cap, scaled by jitter', () => {
    const policy = { attempts: 5, baseDelayMs: 100, maxDelayMs: 1_000 };
    expect(backoffDelay(0, policy, () => 0.999)).toBe(99);
    expect(backoffDelay(3, policy, () => 0.5)).toBe(400);
    expect(backoffDelay(10, policy, () => 0.999)).toBe(999);
    expect(backoffDelay(2, policy, () => 0)).toBe(0);
  });
});
