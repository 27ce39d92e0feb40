import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PuppetApiError } from '../../../lib/errors';
import { CaClient, readCsr } from '../../../lib/puppet';
import { probeCertname, probeCsr, probeDuplicateCerts } from '../../../lib/puppet/ca-probe';
import { altNamesRefusingCa, fakePuppet, type FakeAnswer, type FakePuppet } from '../../support/fake-puppet';
import { makeTestCa } from '../../support/pki';

describe('probe CSRs', () => {
  it('are well-formed requests for the certname (and alt names) whose signature does not verify', () => {
    const certname = probeCertname('doctor-probe');
    expect(certname).toMatch(/^doctor-probe-[0-9a-f]{12}\.compile-masters\.invalid$/);

    const plain = readCsr(probeCsr(certname));
    expect(plain).toMatchObject({ commonName: certname, dnsAltNames: [], puppetExtensions: {}, otherExtensionOids: [], signatureValid: false });

    const withAltNames = readCsr(probeCsr(certname, [certname, `alt-${certname}`]));
    expect(withAltNames).toMatchObject({ commonName: certname, dnsAltNames: [certname, `alt-${certname}`], signatureValid: false });
  });

  it('each has a key of its own', () => {
    expect(readCsr(probeCsr('a.compile-masters.invalid')).publicKeySha256).not.toBe(readCsr(probeCsr('a.compile-masters.invalid')).publicKeySha256);
  });
});

/**
 * Against a CA that answers as Puppet Server 7.9.5 does (certificate_authority.clj,
 * validate-duplicate-cert-policy!): a second CSR for a certname is refused with 400 while
 * allow-duplicate-certs is false and taken (200) while it is true. The real CA's answers are
 * checked in test/integration/puppet-clients.test.ts.
 */
describe('probeDuplicateCerts', () => {
  const csrs = new Set<string>();
  const policy = { allowDuplicateCerts: false };
  let secondAnswer: FakeAnswer | undefined;
  let server: FakePuppet;
  let ca: CaClient;
  beforeAll(async () => {
    const testCa = await makeTestCa();
    const route = altNamesRefusingCa(csrs, '', policy);
    server = await fakePuppet(await testCa.issue({ commonName: 'localhost', dnsNames: ['localhost'] }), (request) => {
      const resubmission = request.method === 'PUT' && request.path.includes('/certificate_request/') && csrs.has(request.path.split('/').pop()!);
      return (resubmission && secondAnswer) || route(request);
    });
    ca = new CaClient({ baseUrl: server.url, tls: { ca: testCa.cert }, retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 } });
  });
  afterEach(() => {
    policy.allowDuplicateCerts = false;
    secondAnswer = undefined;
    server.requests.length = 0;
  });
  afterAll(async () => {
    await ca.close();
    await server.close();
  });

  /** The probe's calls, with its certname replaced by NAME: the same one throughout. */
  function calls(): string[] {
    const name = /certificate_request\/([^/]+)$/.exec(server.requests[0] ?? '')?.[1];
    expect(name).toMatch(/^controller-probe-[0-9a-f]{12}\.compile-masters\.invalid$/);
    return server.requests.map((request) => request.replace(name!, 'NAME'));
  }

  it('answers false when the CA refuses the second CSR, and deletes the first', async () => {
    expect(await probeDuplicateCerts(ca, 'controller-probe')).toBe(false);
    expect(calls()).toEqual(['PUT /puppet-ca/v1/certificate_request/NAME', 'PUT /puppet-ca/v1/certificate_request/NAME', 'DELETE /puppet-ca/v1/certificate_status/NAME']);
    expect(csrs.size).toBe(0);
  });

  it('answers true when the CA takes the second CSR, and deletes it', async () => {
    policy.allowDuplicateCerts = true;
    expect(await probeDuplicateCerts(ca, 'controller-probe')).toBe(true);
    expect(calls()).toEqual(['PUT /puppet-ca/v1/certificate_request/NAME', 'PUT /puppet-ca/v1/certificate_request/NAME', 'DELETE /puppet-ca/v1/certificate_status/NAME']);
    expect(csrs.size).toBe(0);
  });

  it.each([
    ['another 400', { status: 400, body: 'Certificate names must be lower case.' }],
    ['a 403', { status: 403, body: 'Forbidden request: /puppet-ca/v1/certificate_request/x (method :put)' }],
    ['a 500', { status: 500, body: 'Internal Server Error' }],
  ])('throws on any other answer to the second CSR (%s): it cannot tell, and still deletes the CSR', async (_name, answer) => {
    secondAnswer = answer;
    await expect(probeDuplicateCerts(ca, 'controller-probe')).rejects.toBeInstanceOf(PuppetApiError);
    expect(calls().at(-1)).toBe('DELETE /puppet-ca/v1/certificate_status/NAME');
    expect(csrs.size).toBe(0);
  });
});
