import { setTimeout as sleep } from 'node:timers/promises';
import { request, type Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCertificate } from '../../lib/puppet';
import { requestCertificate } from '../../lab/csr';
import { labAgent, loadLab, orchestratorToken, readPems, setOrchestratorFaults, uniqueCertname, type LabDescription } from '../../lab/running-lab';

// The lab itself, over real mTLS: what every other integration test relies on.
let lab: LabDescription;
let lifecycle: Agent;
let forbidden: Agent;
let anonymous: Agent;

beforeAll(() => {
  lab = loadLab();
  const pems = readPems(lab);
  lifecycle = labAgent('lifecycle', pems);
  forbidden = labAgent('forbidden', pems);
  anonymous = labAgent('anonymous', pems);
});

afterAll(async () => {
  await Promise.all([lifecycle.close(), forbidden.close(), anonymous.close()]);
});

async function call(dispatcher: Agent, url: string, init: { method?: 'GET' | 'PUT' | 'POST'; body?: unknown; headers?: Record<string, string> } = {}) {
  const response = await request(url, {
    dispatcher,
    method: init.method ?? 'GET',
    headers: { ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await response.body.text();
  return { status: response.statusCode, text, json: () => JSON.parse(text) as unknown };
}

describe('Puppet Server CA', () => {
  it('lets the allow-listed lifecycle client list every certificate', async () => {
    const response = await call(lifecycle, `${lab.ca.url}/puppet-ca/v1/certificate_statuses/any`);
    expect(response.status).toBe(200);
    const names = (response.json() as { name: string }[]).map((status) => status.name);
    expect(names).toEqual(expect.arrayContaining([lab.primary.certname, lab.lifecycleClient.certname]));
  });

  it('forbids a valid certificate that is not allow-listed', async () => {
    const response = await call(forbidden, `${lab.ca.url}/puppet-ca/v1/certificate_statuses/any`);
    expect(response.status).toBe(403);
    expect(response.text).toContain('Forbidden request');
  });

  it('signs a CSR with alt names and Puppet extensions, which read back from the certificate', async () => {
    const certname = uniqueCertname();
    const extensions = { pp_instance_id: 'i-0abc1234def567890', pp_region: 'eu-west-1', pp_role: 'compile_master', pp_auth_role: 'pe_compiler' };
    await requestCertificate({ certname, dnsAltNames: [certname, 'puppet-nlb.example.com'], extensions }, lab);
    const statusUrl = `${lab.ca.url}/puppet-ca/v1/certificate_status/${certname}`;

    const pending = await call(lifecycle, statusUrl);
    expect(pending.json()).toMatchObject({ name: certname, state: 'requested', authorization_extensions: { pp_auth_role: 'pe_compiler' } });

    expect((await call(lifecycle, statusUrl, { method: 'PUT', body: { desired_state: 'signed' } })).status).toBe(204);
    const signed = await call(lifecycle, statusUrl);
    expect(signed.json()).toMatchObject({ state: 'signed' });
    expect((signed.json() as { subject_alt_names: string[] }).subject_alt_names.sort()).toEqual([`DNS:${certname}`, 'DNS:puppet-nlb.example.com']);

    const certificate = await call(anonymous, `${lab.ca.url}/puppet-ca/v1/certificate/${certname}`);
    expect(certificate.status).toBe(200);
    expect(readCertificate(certificate.text)).toMatchObject({
      commonName: certname,
      dnsAltNames: expect.arrayContaining([certname, 'puppet-nlb.example.com']),
      puppetExtensions: extensions,
    });
  });
});

describe('PuppetDB', () => {
  it('answers the lifecycle client', async () => {
    const response = await call(lifecycle, `${lab.puppetdb.url}/pdb/query/v4/nodes`);
    expect(response.status).toBe(200);
    expect(Array.isArray(response.json())).toBe(true);
  });

  it('rejects a certificate missing from its allow-list', async () => {
    const response = await call(forbidden, `${lab.puppetdb.url}/pdb/query/v4/nodes`);
    expect(response.status).toBe(403);
  });
});

describe('orchestrator double', () => {
  const deployUrl = () => `${lab.orchestrator.url}/orchestrator/v1/command/deploy`;
  const deployBody = () => ({ environment: lab.primary.environment, scope: { nodes: [lab.primary.certname] }, description: 'lab self-test' });

  it('refuses a missing or wrong RBAC token with PE error kinds', async () => {
    const missing = await call(anonymous, deployUrl(), { method: 'POST', body: deployBody() });
    expect(missing.status).toBe(401);
    expect(missing.json()).toMatchObject({ kind: 'puppetlabs.rbac/user-unauthenticated' });

    const wrong = await call(anonymous, deployUrl(), { method: 'POST', body: deployBody(), headers: { 'x-authentication': 'not-the-token' } });
    expect(wrong.status).toBe(401);
    expect(wrong.json()).toMatchObject({ kind: 'puppetlabs.rbac/invalid-token' });
  });

  it('refuses a scope naming more than one kind of target', async () => {
    const response = await call(anonymous, deployUrl(), {
      method: 'POST',
      body: { environment: 'production', scope: { nodes: [lab.primary.certname], node_group: 'abc' } },
      headers: { 'x-authentication': orchestratorToken(lab) },
    });
    expect(response.status).toBe(400);
    expect(response.json()).toMatchObject({ kind: 'puppetlabs.orchestrator/validation-error' });
  });

  it('can be switched to answer as if the token were revoked', async () => {
    const headers = { 'x-authentication': orchestratorToken(lab) };
    await setOrchestratorFaults({ token: 'revoked' }, lab);
    try {
      const refused = await call(anonymous, deployUrl(), { method: 'POST', body: deployBody(), headers });
      expect(refused.status).toBe(401);
      expect(refused.json()).toMatchObject({ kind: 'puppetlabs.rbac/token-revoked' });
    } finally {
      await setOrchestratorFaults({ token: 'valid' }, lab);
    }
    expect((await call(anonymous, `${lab.orchestrator.url}/orchestrator/v1/jobs`, { headers })).status).toBe(200);
  });

  it('runs a real Puppet run on the primary to finished, reported to PuppetDB', async () => {
    const headers = { 'x-authentication': orchestratorToken(lab) };
    const submitted = Date.now();
    const accepted = await call(anonymous, deployUrl(), { method: 'POST', body: deployBody(), headers });
    expect(accepted.status).toBe(202);
    const { job } = accepted.json() as { job: { id: string; name: string } };
    expect(job.id).toBe(`${lab.orchestrator.url}/orchestrator/v1/jobs/${job.name}`);

    let state = 'new';
    let details: { state: string; node_count: number; status: { state: string }[] } | undefined;
    for (const deadline = Date.now() + 180_000; !['finished', 'failed'].includes(state) && Date.now() < deadline; await sleep(1_000)) {
      details = (await call(anonymous, job.id, { headers })).json() as typeof details;
      state = details!.state;
    }
    expect(details).toMatchObject({ state: 'finished', node_count: 1 });
    expect(details!.status.map((entry) => entry.state)).toEqual(['new', 'ready', 'running', 'finished']);

    // The run really happened: the primary's report reached PuppetDB through Puppet Server.
    const node = await call(lifecycle, `${lab.puppetdb.url}/pdb/query/v4/nodes/${lab.primary.certname}`);
    expect(node.status).toBe(200);
    expect(Date.parse((node.json() as { report_timestamp: string }).report_timestamp)).toBeGreaterThanOrEqual(submitted - 1_000);
  });
});
