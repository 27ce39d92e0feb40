import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PuppetApiError } from '../../../lib/errors';
import { CaClient } from '../../../lib/puppet';
import { altNamesRefusal, fakePuppet, type FakePuppet } from '../../support/fake-puppet';
import { makeTestCa } from '../../support/pki';

/** Puppet Server's own 409 wording, replayed, must turn into the fix an operator can apply. */
describe('CaClient.sign refusals', () => {
  let server: FakePuppet;
  let ca: CaClient;
  beforeAll(async () => {
    const testCa = await makeTestCa();
    server = await fakePuppet(await testCa.issue({ commonName: 'localhost', dnsNames: ['localhost'] }), ({ path }) =>
      path.endsWith('/alt.lab.test')
        ? { status: 409, body: altNamesRefusal('alt.lab.test', 'DNS:nlb.example.com') }
        : { status: 409, body: "No certificate request for signed.lab.test" },
    );
    ca = new CaClient({ baseUrl: server.url, tls: { ca: testCa.cert } });
  });
  afterAll(async () => {
    await ca.close();
    await server.close();
  });

  it('names allow-subject-alt-names when the CA refuses alt names', async () => {
    const error = await ca.sign('alt.lab.test').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PuppetApiError);
    expect((error as Error).message).toMatch(/set 'allow-subject-alt-names: true' in ca\.conf on the primary/);
  });

  it('says there is nothing to sign for any other 409', async () => {
    const error = await ca.sign('signed.lab.test').catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/no pending CSR to sign/);
    expect((error as Error).message).not.toMatch(/allow-subject-alt-names: true/);
  });
});
