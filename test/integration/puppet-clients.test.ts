import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PuppetApiError, PuppetUnavailableError, RefusedInputError } from '../../lib/errors';
import { CaClient, certificateFacts, crlSerials, readCsr } from '../../lib/puppet';
import { probeCertname, probeCsr, probeDuplicateCerts } from '../../lib/puppet/ca-probe';
import { eventually, labClients, labPuppetApis, storeFacts, type LabClients } from '../../lab/clients';
import { requestCertificate } from '../../lab/csr';
import { loadLab, readPems, uniqueCertname } from '../../lab/running-lab';

/** The shared Puppet API clients against the real lab: Puppet Server 7 CA, PuppetDB 7, the orchestrator double. */
describe('Puppet API clients against the real lab', () => {
  let clients: LabClients;
  beforeAll(() => {
    clients = labClients();
  });
  afterAll(() => clients.close());

  async function signedCert(options: Parameters<typeof requestCertificate>[0] = { certname: uniqueCertname() }) {
    await requestCertificate(options);
    await clients.ca.sign(options.certname);
    const status = await clients.ca.getStatus(options.certname);
    expect(status?.state).toBe('signed');
    return status!;
  }

  it('signs a CSR with alt names and trusted extensions; what the CA issued reads back the same', async () => {
    const certname = uniqueCertname();
    const extensions = { pp_instance_id: 'i-0123456789abcdef0', pp_region: 'us-west-2', pp_role: 'compile_master' };
    await requestCertificate({ certname, dnsAltNames: [certname, 'compile-nlb.example.com'], extensions });
    expect((await clients.ca.getStatus(certname))?.state).toBe('requested');
    const csrFacts = await readCsr((await clients.ca.getCsr(certname))!);
    expect(csrFacts.puppetExtensions).toEqual(extensions);

    await clients.ca.sign(certname);

    const status = await clients.ca.getStatus(certname);
    expect(status?.state).toBe('signed');
    expect(status?.dns_alt_names).toEqual(expect.arrayContaining([`DNS:${certname}`, 'DNS:compile-nlb.example.com']));
    const cert = await certificateFacts((await clients.ca.getCertificate(certname))!);
    expect(cert.subjectCommonName).toBe(certname);
    expect(cert.publicKeySha256).toBe(csrFacts.publicKeySha256);
    expect(cert.sha256Fingerprint).toBe(status?.fingerprint);
  });

  it('clean revokes (serial in the CRL) and deletes, in one call for many; cleaning again succeeds', async () => {
    const a = await signedCert();
    const b = await signedCert();

    const result = await clients.ca.clean([a.name, b.name]);

    expect(result.missing).toEqual([]);
    const crl = await clients.ca.getCrl();
    if (crl === 'not-modified') throw new Error('unexpected 304 without If-Modified-Since');
    const revoked = crlSerials(crl.pem);
    expect(revoked.has(BigInt(a.serial_number!))).toBe(true);
    expect(revoked.has(BigInt(b.serial_number!))).toBe(true);
    expect(await clients.ca.getStatus(a.name)).toBeUndefined();
    expect(await clients.ca.getCertificate(b.name)).toBeUndefined();

    const again = await clients.ca.clean([a.name]);
    expect(again.missing).toEqual([a.name]);
  });

  it('a CRL fetched with the previous validator never misses a later revocation', async () => {
    const before = await clients.ca.getCrl();
    if (before === 'not-modified') throw new Error('unexpected 304 without If-Modified-Since');
    const status = await signedCert();
    await clients.ca.revoke(status.name);

    const after = await clients.ca.getCrl(before.lastModified);

    if (after === 'not-modified') throw new Error('a revocation was hidden behind a 304');
    expect(crlSerials(after.pem).has(BigInt(status.serial_number!))).toBe(true);
    const future = new Date(Date.now() + 3_600_000).toUTCString();
    expect(await clients.ca.getCrl(future)).toBe('not-modified');
  });

  it('revoke and delete separately: the reference scripts\' way works too, and repeats harmlessly', async () => {
    const status = await signedCert();
    await clients.ca.revoke(status.name);
    await clients.ca.revoke(status.name);
    expect((await clients.ca.getStatus(status.name))?.state).toBe('revoked');
    expect(await clients.ca.delete(status.name)).toBe(true);
    expect(await clients.ca.delete(status.name)).toBe(false);
  });

  it('deactivate_node really deactivates the node in PuppetDB; repeating it is harmless', async () => {
    const certname = uniqueCertname();
    await storeFacts(clients.puppetdb, certname);
    await eventually(async () => ((await clients.puppetdb.getNode(certname))?.deactivated === null ? true : undefined), 'node stored');

    await clients.puppetdb.deactivateNode(certname);
    const deactivated = await eventually(async () => (await clients.puppetdb.getNode(certname))?.deactivated ?? undefined, 'node deactivated');
    expect(Date.parse(deactivated)).not.toBeNaN();

    await clients.puppetdb.deactivateNode(certname);
    const node = await eventually(async () => clients.puppetdb.getNode(certname), 'node still there');
    expect(node.deactivated).toBeTruthy();
  });

  it('a client certificate that is not allowed gets the typed 403 with the fix', async () => {
    const forbidden = labClients({ identity: 'forbidden' });
    try {
      const caError = await forbidden.ca.listStatuses().catch((e: unknown) => e);
      expect(caError).toBeInstanceOf(PuppetApiError);
      expect((caError as PuppetApiError).status).toBe(403);
      expect((caError as Error).message).toMatch(/auth\.conf.*pp_cli_auth|generate --ca-client/);

      const pdbError = await forbidden.puppetdb.getNode('primary.lab.test').catch((e: unknown) => e);
      expect(pdbError).toBeInstanceOf(PuppetApiError);
      expect((pdbError as PuppetApiError).status).toBe(403);
      expect((pdbError as Error).message).toMatch(/certificate-allowlist/);
    } finally {
      await forbidden.close();
    }
  });

  it('a stopped server gets retries, then a clear error naming the server', async () => {
    const lab = loadLab();
    let sleeps = 0;
    const ca = new CaClient({
      baseUrl: 'https://localhost:1', // nothing listens there: connection refused, as for a stopped CA
      tls: { ca: readPems(lab).ca },
      retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 20 },
      sleep: async () => {
        sleeps++;
      },
    });
    const error = await ca.listStatuses().catch((e: unknown) => e);
    await ca.close();
    expect(error).toBeInstanceOf(PuppetUnavailableError);
    expect((error as Error).message).toMatch(/^ca certificate_statuses at https:\/\/localhost:1.*gave up after 3 attempt.*check that the ca service/);
    expect(sleeps).toBe(2);
  });

  it('the orchestrator refuses a wrong RBAC token with the typed 401 and runs the primary with the right one', async () => {
    const wrong = labClients({ token: 'not-the-token' });
    try {
      const error = await wrong.orchestrator.deploy({ environment: 'production', nodes: ['primary.lab.test'], description: 'test' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PuppetApiError);
      expect((error as PuppetApiError).status).toBe(401);
      expect((error as Error).message).toMatch(/RBAC token/);
      expect((error as Error).message).not.toContain('not-the-token');
    } finally {
      await wrong.close();
    }

    const job = await clients.orchestrator.deploy({ environment: 'production', nodes: ['primary.lab.test'], description: 'client test' });
    const done = await clients.orchestrator.waitForJob(job.name, { timeoutMs: 180_000, pollMs: 500 });
    expect(done.state).toBe('finished');
  });

  it('a second CSR for a certname is refused with the 400 the allow-duplicate-certs probe reads (the lab CA has it off)', async () => {
    const certname = probeCertname('it-duplicate');
    const csr = probeCsr(certname);
    await clients.ca.submitCsr(certname, csr);
    try {
      const error = await clients.ca.submitCsr(certname, csr).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PuppetApiError);
      expect((error as PuppetApiError).status).toBe(400);
      expect((error as PuppetApiError).summary).toMatch(new RegExp(`\\(HTTP 400\\): ${certname.replaceAll('.', '\\.')} already has a requested certificate; ignoring certificate request$`));
    } finally {
      expect(await clients.ca.delete(certname)).toBe(true);
    }
  });

  it('probeDuplicateCerts answers false on the lab CA, directly and through the controller\'s adapter, and leaves no probe CSR', async () => {
    const prefix = `it-probe-${Date.now().toString(36)}`;
    expect(await probeDuplicateCerts(clients.ca, prefix)).toBe(false);
    expect(await labPuppetApis().duplicateCertsAllowed()).toBe(false);
    const left = (await clients.ca.listStatuses()).map((status) => status.name).filter((name) => name.startsWith(`${prefix}-`));
    expect(left).toEqual([]);
  });

  it('refuses hostile certnames before any request is made', async () => {
    for (const name of ['../x', 'a%2Fb', 'a b', 'x'.repeat(300)]) {
      await expect(clients.ca.getStatus(name)).rejects.toThrow(RefusedInputError);
      await expect(clients.ca.clean([name])).rejects.toThrow(RefusedInputError);
      await expect(clients.puppetdb.deactivateNode(name)).rejects.toThrow(RefusedInputError);
    }
  });
});
