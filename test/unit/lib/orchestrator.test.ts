import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PuppetUnavailableError } from '../../../lib/errors';
import { OrchestratorClient } from '../../../lib/puppet';
import { fakePuppet, type FakePuppet } from '../../support/fake-puppet';
import { makeTestCa } from '../../support/pki';

/** A repeated deploy would start a second run on the primary; a repeated job read is harmless. */
describe('OrchestratorClient', () => {
  let server: FakePuppet;
  let orchestrator: OrchestratorClient;
  beforeAll(async () => {
    const testCa = await makeTestCa();
    server = await fakePuppet(await testCa.issue({ commonName: 'localhost', dnsNames: ['localhost'] }), ({ path }) => (path.endsWith('/jobs/404') ? { status: 404, body: { kind: 'puppetlabs.orchestrator/unknown-job' } } : { status: 503, body: 'busy' }));
    orchestrator = new OrchestratorClient({ baseUrl: server.url, tls: { ca: testCa.cert }, token: 'token', retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 1 } });
  });
  afterAll(async () => {
    await orchestrator.close();
    await server.close();
  });

  it('asks for a deploy once, whatever the answer', async () => {
    server.requests.length = 0;
    await expect(orchestrator.deploy({ environment: 'production', nodes: ['puppet.lab.test'], description: 'test' })).rejects.toThrow(PuppetUnavailableError);
    expect(server.requests).toEqual(['POST /orchestrator/v1/command/deploy']);
  });

  it('answers undefined for a job it does not have, as the other clients do for a 404', async () => {
    await expect(orchestrator.getJob('404')).resolves.toBeUndefined();
  });

  it('reads a job again after a 5xx', async () => {
    server.requests.length = 0;
    await expect(orchestrator.getJob('7')).rejects.toThrow(PuppetUnavailableError);
    expect(server.requests).toEqual(Array(3).fill('GET /orchestrator/v1/jobs/7'));
  });
});
