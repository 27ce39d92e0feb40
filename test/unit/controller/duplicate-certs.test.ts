import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PuppetUnavailableError } from '../../../lib/errors';
import { CaClient } from '../../../lib/puppet/ca';
import { PuppetDbClient } from '../../../lib/puppet/puppetdb';
import { METRIC } from '../../../lambdas/controller/vocabulary';
import { DUPLICATE_PROBE_MAX_AGE_MS, PuppetApis } from '../../../lambdas/controller/puppet';
import { altNamesRefusingCa, fakePuppet, type FakePuppet } from '../../support/fake-puppet';
import { makeTestCa } from '../../support/pki';
import { Harness } from './harness';
import { csrFacts } from './support';

/**
 * allow-duplicate-certs on the CA: anyone who reaches port 8140 can queue a CSR for a compile
 * master's certname, next to its signed certificate or in place of its pending CSR.
 */
describe('controller with a CA that accepts duplicate CSRs', () => {
  it('signs nothing while it is on, says why (error, metric, drift), and signs once it is off', async () => {
    const h = new Harness();
    h.puppet.allowDuplicateCerts = true;
    const { instanceId, privateDnsName } = h.cloud.launch();
    const certname = privateDnsName as string;
    await h.settle();

    h.nodeSubmitsCsr(instanceId);
    await h.settle();

    expect(h.puppet.calls).toContain('duplicateCertsAllowed');
    expect(h.puppet.calls).not.toContain('sign');
    expect(h.puppet.state(certname)).toBe('requested');
    expect(h.cloud.registry.peek(instanceId)).toBeUndefined();
    // Not refused: the launch waits for the CA to be fixed (or for its hook's timeout).
    expect(h.cloud.group.stateOf(instanceId)).toBe('Pending:Wait');
    expect(h.cloud.group.completions).toEqual([]);
    const suspended = h.logger.lines.filter((line) => line.level === 'error' && line.message === 'Signing suspended: no certificate request is signed this pass');
    expect(suspended.length).toBeGreaterThan(0);
    expect(suspended[0]?.attributes).toEqual({ reason: expect.stringMatching(/allow-duplicate-certs is on\): set it to false .*restart puppetserver/) });
    expect(h.metrics.get(METRIC.signingSuspended)).toBeGreaterThan(0);
    expect(h.logger.lines).toContainEqual({ level: 'warn', message: 'Drift', attributes: { instanceId, certname, detail: expect.stringMatching(/^CSR not signed: the CA accepts duplicate/) } });

    h.puppet.allowDuplicateCerts = false;
    h.notify(instanceId, 'csr-submitted');
    await h.settle();
    expect(h.puppet.state(certname)).toBe('signed');
    expect(h.cloud.registry.peek(instanceId)).toMatchObject({ certname, state: 'signed' });
  });

  it('fails closed when the probe fails: nothing signed this pass, and it says so', async () => {
    const h = new Harness();
    const { instanceId, privateDnsName } = h.cloud.launch();
    await h.settle();
    h.puppet.failing.add('duplicateCertsAllowed');

    h.nodeSubmitsCsr(instanceId);
    await h.settle();

    expect(h.puppet.calls).not.toContain('sign');
    expect(h.puppet.state(privateDnsName as string)).toBe('requested');
    const errors = h.logger.lines.filter((line) => line.level === 'error' && line.message.startsWith('Signing suspended'));
    expect(errors[0]?.attributes).toEqual({ reason: expect.stringMatching(/allow-duplicate-certs setting could not be checked \(ca duplicateCertsAllowed .*connection refused/) });
    expect(h.metrics.get(METRIC.signingSuspended)).toBeGreaterThan(0);
  });

  it('asks the CA only when there is a CSR to sign', async () => {
    const h = new Harness();
    await h.tier(2);
    const before = h.puppet.calls.filter((call) => call === 'duplicateCertsAllowed').length;
    expect(before).toBeGreaterThan(0);

    h.schedule();
    await h.settle();
    h.schedule();
    await h.settle();

    expect(h.puppet.calls.filter((call) => call === 'duplicateCertsAllowed')).toHaveLength(before);
  });

  it('never forgets an in-service member whose certificate is still signed because a CSR for its certname is pending, even after the setting is off again', async () => {
    const h = new Harness();
    const [instanceId] = await h.tier(1);
    const certname = h.cloud.instances.get(instanceId!)?.privateDnsName as string;
    const issued = h.puppet.certs.get(certname)?.issued;
    h.puppet.allowDuplicateCerts = true;
    // Someone on 8140 queues a CSR that passes every check but the key: the node's own facts.
    h.puppet.submit(certname, { ...csrFacts(1), commonName: certname, dnsAltNames: [certname], puppetExtensions: { pp_instance_id: instanceId!, pp_role: 'compile_master', pp_region: 'us-west-2' }, publicKeySha256: 'attacker-key' });
    const signs = h.puppet.calls.filter((call) => call === 'sign').length;

    h.schedule();
    await h.settle();
    h.puppet.allowDuplicateCerts = false;
    h.notify(instanceId!, 'booted');
    h.schedule();
    await h.settle();

    expect(h.cloud.registry.peek(instanceId!)?.state).toBe('in-service');
    expect(h.puppet.certs.get(certname)).toMatchObject({ state: 'signed', issued });
    expect(h.puppet.calls.filter((call) => call === 'sign')).toHaveLength(signs);
    expect(h.logger.messages()).not.toContain('Registry entry marked purged without touching Puppet');
    expect(h.puppet.cleans).toEqual([]);
  });
});

/** The Lambda's Puppet adapter: one probe per container at most every DUPLICATE_PROBE_MAX_AGE_MS. */
describe('PuppetApis.duplicateCertsAllowed', () => {
  const csrs = new Set<string>();
  const policy = { allowDuplicateCerts: false };
  let down = false;
  let server: FakePuppet;
  let apis: PuppetApis;
  let now = 0;
  beforeAll(async () => {
    const testCa = await makeTestCa();
    const route = altNamesRefusingCa(csrs, '', policy);
    server = await fakePuppet(await testCa.issue({ commonName: 'localhost', dnsNames: ['localhost'] }), (request) => (down ? { status: 503, body: 'down' } : route(request)));
    const options = { baseUrl: server.url, tls: { ca: testCa.cert }, retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 } };
    apis = new PuppetApis(new CaClient(options), new PuppetDbClient(options), () => now);
  });
  afterEach(() => {
    server.requests.length = 0;
  });
  afterAll(() => server.close());

  const probes = () => server.requests.filter((request) => request.startsWith('DELETE /puppet-ca/v1/certificate_status/controller-probe-')).length;

  it('probes once, keeps the answer for the cache period, then probes again', async () => {
    now = 1_000_000;
    expect(await apis.duplicateCertsAllowed()).toBe(false);
    expect(probes()).toBe(1);
    policy.allowDuplicateCerts = true;
    now += DUPLICATE_PROBE_MAX_AGE_MS - 1;
    expect(await apis.duplicateCertsAllowed()).toBe(false);
    expect(probes()).toBe(1);
    now += 1;
    expect(await apis.duplicateCertsAllowed()).toBe(true);
    expect(probes()).toBe(2);
    expect(csrs.size).toBe(0);
  });

  it('remembers no failure: the next call asks again', async () => {
    now += DUPLICATE_PROBE_MAX_AGE_MS;
    down = true;
    await expect(apis.duplicateCertsAllowed()).rejects.toBeInstanceOf(PuppetUnavailableError);
    server.requests.length = 0;
    down = false;
    policy.allowDuplicateCerts = false;
    expect(await apis.duplicateCertsAllowed()).toBe(false);
    expect(probes()).toBe(1);
  });
});
