import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { isValidCertname } from '../../../lib/certname';
import { SecretMissingError } from '../../../lib/errors';
import { SecretsManagerSecrets } from '../../../lambdas/controller/aws/secrets';
import { handleBatch } from '../../../lambdas/controller/batch';
import { execute } from '../../../lambdas/controller/execute';
import { METRIC } from '../../../lambdas/controller/vocabulary';
import type { Plan } from '../../../lambdas/controller/model';
import { createLogger } from '../../../lambdas/controller/logging';
import { toSqsEvent } from '../../../lab/memory-cloud';
import { makeTestCa, type Pem } from '../../support/pki';
import { Harness } from '../controller/harness';
import { POLICY, RecordingMetrics, VALID_ENV, csrFacts, entry, keyOf } from '../controller/support';
import { nodeAgentNotice } from '../../../lib/node-agent-notice';

/**
 * DESIGN rule 7: hostile input gets a clear, logged refusal and changes nothing. Each case goes in
 * through the queue, as it would arrive, and is judged by what the controller logged and by what
 * it asked of Puppet and of the group: never a signature, a clean, a deactivation, a run, or a
 * CONTINUE.
 */
const PRIMARY = [...POLICY.protectedCertnames][0] as string;

/** What would change something: none of these may happen for hostile input. */
function changes(h: Harness): string[] {
  const puppet = [...h.puppet.calls.filter((call) => ['sign', 'clean', 'deactivate'].includes(call)), ...h.primaryRun.calls.filter((call) => call === 'start')];
  // An ABANDONed launch terminates, and completing that terminate hook is right; a launch CONTINUE is not.
  const continued = h.cloud.group.completions.filter((c) => c.hook === 'launch' && c.result === 'CONTINUE').map((c) => `CONTINUE ${c.instanceId}`);
  const registered = h.cloud.callsOf('registry.recordSigned').map(() => 'recordSigned');
  return [...puppet, ...continued, ...registered];
}

function logged(h: Harness, message: string): Array<Record<string, unknown>> {
  return h.logger.lines.filter((line) => line.message === message).map((line) => line.attributes as Record<string, unknown>);
}

describe('malformed and foreign messages', () => {
  const lifecycle = (detail: Record<string, unknown>, detailType = 'EC2 Instance-launch Lifecycle Action') =>
    JSON.stringify({
      source: 'aws.autoscaling',
      'detail-type': detailType,
      detail: {
        AutoScalingGroupName: 'compile-masters',
        LifecycleHookName: 'compile-master-launching',
        EC2InstanceId: 'i-0123456789abcdef0',
        LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING',
        ...detail,
      },
    });

  const malformed: Array<[string, string, RegExp]> = [
    ['not JSON', '{"source":', /body is not JSON/],
    ['a JSON array', '[1,2,3]', /body: /],
    ['an unknown source', JSON.stringify({ source: 'aws.s3', 'detail-type': 'Object Created' }), /source/],
    ['a path in the instance id', lifecycle({ EC2InstanceId: 'i-../../x' }), /EC2InstanceId: is not an EC2 instance id/],
    ['an encoded slash in the instance id', lifecycle({ EC2InstanceId: 'i-a%2Fb' }), /is not an EC2 instance id/],
    ['a transition that contradicts the detail type', lifecycle({ LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING' }), /does not match/],
    ['a node-agent notice of an unknown version', JSON.stringify({ source: 'compile-masters.node-agent', version: 3, instanceId: 'i-0123456789abcdef0', event: 'enrolled' }), /version/],
    ['a node-agent notice with an unknown event', JSON.stringify({ source: 'compile-masters.node-agent', version: 2, instanceId: 'i-0123456789abcdef0', event: 'purge-me' }), /event/],
    ['a recheck naming a run by path', JSON.stringify({ source: 'compile-masters.controller', version: 1, kind: 'recheck', reason: 'follow-run', runId: '../1', attempt: 1 }), /runId: is not a primary run id/],
    ['a recheck with an overlong run id', JSON.stringify({ source: 'compile-masters.controller', version: 1, kind: 'recheck', reason: 'follow-run', runId: 'a'.repeat(65), attempt: 1 }), /runId: is not a primary run id/],
    ['a 1 MB body', JSON.stringify({ source: 'x'.repeat(1_000_000) }), /source/],
  ];

  it.each(malformed)('drops %s with the reason logged (the body truncated) and changes nothing', async (_name, body, reason) => {
    const h = new Harness();
    h.cloud.queue.enqueue(body);
    const response = await h.deliver();
    expect(response?.batchItemFailures).toEqual([]);
    const [drop] = logged(h, 'Malformed message dropped');
    expect(String(drop?.reason)).toMatch(reason);
    expect(String(drop?.body).length).toBeLessThan(200);
    expect(h.puppet.calls).toEqual([]);
    expect(h.cloud.calls).toEqual([]);
  });

  it.each([
    ['another group', lifecycle({ AutoScalingGroupName: 'web-servers' }), /another group \(web-servers\)/],
    ['another hook of this group', lifecycle({ LifecycleHookName: 'someone-elses-hook' }), /another hook \(someone-elses-hook\)/],
    ['an EC2 state the controller does not watch', JSON.stringify({ source: 'aws.ec2', 'detail-type': 'EC2 Instance State-change Notification', detail: { 'instance-id': 'i-0123456789abcdef0', state: 'stopping' } }), /not watched/],
  ])('ignores a lifecycle event of %s, saying why', async (_name, body, reason) => {
    const h = new Harness();
    h.cloud.queue.enqueue(body);
    await h.deliver();
    expect(String(logged(h, 'Message ignored')[0]?.reason)).toMatch(reason);
    expect(h.puppet.calls).toEqual([]);
    expect(h.cloud.calls).toEqual([]);
  });

  it("refuses a CSR prompt from an instance that is not a member, although EC2 knows it and the CA holds a valid-looking CSR", async () => {
    const h = new Harness();
    const outsider = { instanceId: 'i-0aaaaaaaaaaaaaaaa', privateIp: '10.9.9.9', privateDnsName: 'ip-10-9-9-9.us-west-2.compute.internal' };
    h.cloud.instances.put({ ...outsider, state: 'running', launchTime: h.now });
    h.puppet.request(outsider.privateDnsName, csrFacts(1, { commonName: outsider.privateDnsName, puppetExtensions: { pp_instance_id: outsider.instanceId, pp_role: 'compile_master' } }));
    h.notify(outsider.instanceId, 'csr-submitted');
    await h.settle();
    expect(changes(h)).toEqual([]);
    expect(logged(h, 'Refused a certificate request')).toEqual([
      expect.objectContaining({ instanceId: outsider.instanceId, reasons: [expect.stringMatching(/not a member of the group/)] }),
    ]);
  });
});

describe('hostile certnames', () => {
  const hostile: Array<[string, string, RegExp]> = [
    ['a path', '../x', /not a lowercase DNS-style name/],
    ['an encoded slash', 'a%2Fb', /not a lowercase DNS-style name/],
    ['a space', 'ip-10-0-1-5 .compute.internal', /not a lowercase DNS-style name/],
    ['capitals and a NUL', 'IP-10-0-1-5\u0000.compute.internal', /not a lowercase DNS-style name/],
    ['300 characters', `${'a'.repeat(60)}.`.repeat(5).slice(0, 300), /is 300 characters long \(at most 253\)/],
    ["the primary's own name", PRIMARY, /is a protected certname/],
    ["the controller's own name", 'lifecycle-controller.corp.example.com', /is a protected certname/],
  ];

  it.each(hostile)('ABANDONs a launch whose private DNS name is %s, signing nothing', async (_name, certname, reason) => {
    const h = new Harness();
    const { instanceId } = h.cloud.launch({ privateDnsName: certname });
    h.puppet.request(certname, csrFacts(1, { commonName: certname, puppetExtensions: { pp_instance_id: instanceId, pp_role: 'compile_master' } }));
    h.notify(instanceId, 'csr-submitted');
    await h.settle();
    expect(changes(h)).toEqual([]);
    expect(h.cloud.group.completions).toContainEqual(expect.objectContaining({ instanceId, hook: 'launch', result: 'ABANDON' }));
    const [refusal] = logged(h, 'Refused: abandoning the launch');
    expect((refusal?.reasons as string[]).join('; ')).toMatch(reason);
    expect(h.metrics.get(METRIC.refused)).toBe(1);
    // The untrusted name reaches the log only truncated.
    expect(JSON.stringify(h.logger.lines).length).toBeLessThan(10_000);
  });

  /** An entry that should never have been written (a tampered table): it must not lead to a clean. */
  async function terminatingWithEntry(certname: string): Promise<Harness> {
    const h = new Harness();
    h.cloud.addInService({ instanceId: 'i-00000000000000007', privateIp: '10.0.1.7', privateDnsName: 'ip-10-0-1-7.us-west-2.compute.internal' });
    h.cloud.registry.seed(entry(7, 'in-service', { certname }));
    h.cloud.scaleIn(['i-00000000000000007']);
    await h.settle();
    expect(h.puppet.calls.filter((call) => call === 'clean' || call === 'deactivate')).toEqual([]);
    return h;
  }

  it.each(hostile.filter(([, certname]) => !isValidCertname(certname)))(
    'quarantines a registry entry whose certname is %s: never purged, the termination left to the hook, drift',
    async (_name, certname) => {
      const h = await terminatingWithEntry(certname);
      expect(h.cloud.group.stateOf('i-00000000000000007')).toBe('Terminating:Wait');
      expect(h.cloud.group.completions).toEqual([]);
      expect(logged(h, 'Drift').some((drift) => /quarantined: its certname .* is/.test(String(drift.detail)))).toBe(true);
      expect(h.metrics.get(METRIC.damagedEntries)).toBeGreaterThan(0);
    },
  );

  it.each(hostile.filter(([, certname]) => isValidCertname(certname)))('never purges a registry entry whose certname is %s, and still completes the termination', async (_name, certname) => {
    const h = await terminatingWithEntry(certname);
    expect(h.cloud.group.stateOf('i-00000000000000007')).toBeUndefined();
    expect(logged(h, 'Drift').some((drift) => /registry entry not purged/.test(String(drift.detail)))).toBe(true);
  });
});

describe('hostile CSRs from members', () => {
  const forged: Array<[string, Parameters<typeof csrFacts>[1], RegExp]> = [
    ['an unconfigured extension', { puppetExtensions: { pp_instance_id: 'i-00000000000000001', pp_role: 'compile_master', pp_auth_role: 'pe_compiler' } }, /not configured: "pp_auth_role"/],
    ['pp_cli_auth', { puppetExtensions: { pp_instance_id: 'i-00000000000000001', pp_role: 'compile_master', pp_cli_auth: 'true' } }, /not configured: "pp_cli_auth"/],
    ['the wrong role', { puppetExtensions: { pp_instance_id: 'i-00000000000000001', pp_role: 'primary' } }, /pp_role "primary" is not the configured/],
    ['another instance id', { puppetExtensions: { pp_instance_id: 'i-0fffffffffffffff0', pp_role: 'compile_master' } }, /pp_instance_id "i-0fffffffffffffff0" is not/],
    ['no instance id', { puppetExtensions: { pp_role: 'compile_master' } }, /carries no pp_instance_id/],
    ['an extra alt name', { dnsAltNames: ['ip-10-0-1-1.us-west-2.compute.internal', 'puppet'] }, /outside the allowed set: "puppet"/],
    ["the primary's name as an alt name", { dnsAltNames: [PRIMARY] }, /outside the allowed set/],
    ['an IP alt name', { otherAltNames: ['IP:10.0.0.1'] }, /non-DNS alt names/],
    ['a non-Puppet X.509 extension', { otherExtensionOids: ['2.5.29.19'] }, /non-Puppet X\.509 extensions/],
    ['another CN', { commonName: PRIMARY }, /its CN .* is not the instance's certname/],
    ['a broken signature', { signatureValid: false }, /signature does not verify/],
  ];

  it.each(forged)('refuses a CSR with %s: unsigned, launch ABANDONed', async (_name, overrides, reason) => {
    const h = new Harness();
    const { instanceId } = h.cloud.launch({ instanceId: 'i-00000000000000001', privateIp: '10.0.1.1' });
    h.nodeSubmitsCsr(instanceId, overrides);
    await h.settle();
    expect(changes(h)).toEqual([]);
    expect(h.puppet.state('ip-10-0-1-1.us-west-2.compute.internal')).toBe('requested');
    expect((logged(h, 'Refused: abandoning the launch')[0]?.reasons as string[]).join('; ')).toMatch(reason);
  });
});

describe('missing and malformed secrets', () => {
  const sm = mockClient(SecretsManagerClient);
  let client: Pem;
  let output: string[];
  const TOKEN = 'RBAC-TOKEN-0123456789abcdef0123456789abcdef';

  beforeAll(async () => {
    client = await (await makeTestCa('Puppet CA: primary.corp.example.com')).issue({ commonName: 'lifecycle-controller.corp.example.com' });
  });

  beforeEach(() => {
    vi.stubEnv('POWERTOOLS_SERVICE_NAME', 'controller');
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'DEBUG');
    output = [];
    // Powertools writes info to stdout and warnings and errors to stderr.
    for (const stream of [process.stdout, process.stderr]) {
      vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
        output.push(String(chunk));
        return true;
      });
    }
  });

  afterEach(() => {
    vi.restoreAllMocks();
    vi.unstubAllEnvs();
    sm.reset();
  });

  const keyBody = () => client.key.split('\n')[1] as string;
  const bundle = (fields: Record<string, unknown>) => JSON.stringify({ cert: client.cert, key: client.key, ca: client.cert, ...fields });
  const cases: Array<[string, () => { bundle?: string; token?: string; missing?: 'bundle' | 'token' }, RegExp]> = [
    ['a bundle that is not JSON', () => ({ bundle: `${client.key}` }), /bundle secret .* is not JSON/],
    ['a bundle whose key is not a PEM key', () => ({ bundle: bundle({ key: keyBody() }) }), /key must hold a PEM private key/],
    ['a bundle with the key where the certificate goes', () => ({ bundle: bundle({ cert: client.key }) }), /cert must hold a PEM certificate/],
    ['a bundle without a CA', () => ({ bundle: bundle({ ca: undefined }) }), /ca must be a string holding the PEM CA certificate/],
    ['a missing token', () => ({ missing: 'token' }), /RBAC token secret .* has no value/],
    ['a token wrapped in JSON', () => ({ token: JSON.stringify({ token: TOKEN }) }), /RBAC token secret .* does not hold a bare token/],
    ['a token with a line break inside', () => ({ token: `${TOKEN}\nsecond-line` }), /does not hold a bare token/],
  ];

  // A bundle that was never put is not a fault to retry: the handler runs the secretless pass on
  // this error (no-secrets.test.ts), which signs nothing and acknowledges its messages.
  it.each([
    ['a missing bundle secret', 'missing', /certificate bundle secret .* has no value \(or does not exist\)/],
    ['an empty bundle', 'empty', /certificate bundle secret .* is empty/],
  ] as const)('tells %s apart as SecretMissingError, naming the secret', async (_name, kind, reason) => {
    const call = sm.on(GetSecretValueCommand, { SecretId: VALID_ENV.CLIENT_CERT_SECRET_ARN });
    if (kind === 'missing') call.rejects(Object.assign(new Error("Secrets Manager can't find the specified secret value"), { name: 'ResourceNotFoundException' }));
    else call.resolves({ SecretString: '  ' });
    const secrets = new SecretsManagerSecrets(new SecretsManagerClient({}), { clientCert: VALID_ENV.CLIENT_CERT_SECRET_ARN });
    const error = await secrets.clientBundle().then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(SecretMissingError);
    expect((error as SecretMissingError).secretArn).toBe(VALID_ENV.CLIENT_CERT_SECRET_ARN);
    expect((error as Error).message).toMatch(reason);
  });

  it.each(cases)('fails the batch on %s, saying which field is wrong and never what it holds', async (_name, setup, reason) => {
    const given = setup();
    const notFound = Object.assign(new Error("Secrets Manager can't find the specified secret value"), { name: 'ResourceNotFoundException' });
    const bundleCall = sm.on(GetSecretValueCommand, { SecretId: VALID_ENV.CLIENT_CERT_SECRET_ARN });
    if (given.missing === 'bundle') bundleCall.rejects(notFound);
    else bundleCall.resolves({ SecretString: given.bundle ?? bundle({}) });
    const tokenCall = sm.on(GetSecretValueCommand, { SecretId: VALID_ENV.RBAC_TOKEN_SECRET_ARN });
    if (given.missing === 'token') tokenCall.rejects(notFound);
    else tokenCall.resolves({ SecretString: given.token ?? TOKEN });

    const secrets = new SecretsManagerSecrets(new SecretsManagerClient({}), { clientCert: VALID_ENV.CLIENT_CERT_SECRET_ARN, rbacToken: VALID_ENV.RBAC_TOKEN_SECRET_ARN });
    const event = toSqsEvent([{ body: JSON.stringify({ source: 'aws.events', 'detail-type': 'Scheduled Event' }) }]);
    // The handler's own order: both secrets are read before anything touches Puppet.
    const response = await handleBatch(event, {
      scope: { groupName: 'compile-masters', launchHookName: 'l', terminateHookName: 't', compileMasterRoleId: 'AROAEXAMPLECOMPILEMASTR' },
      logger: createLogger(),
      metrics: new RecordingMetrics(),
      reconcile: () => Promise.all([secrets.clientBundle(), secrets.rbacToken()]),
    });

    expect(response.batchItemFailures).toHaveLength(1);
    const log = output.join('');
    const failure = log.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.message === 'Reconcile failed; its messages will be retried');
    expect(JSON.stringify(failure?.error)).toMatch(reason);
    for (const secret of [TOKEN, keyBody(), client.key.split('\n')[2] as string, 'PRIVATE KEY-----']) expect(log).not.toContain(secret);
  });
});

/**
 * Issue 13.1 and 13.8: everything rule 2 checks is public except the key the instance reported in
 * a message only it could send. An attacker on 8140 copies certname, pp_instance_id and role, and
 * any instance of the tier can send to the queue.
 */
describe('squatting and forged prompts', () => {
  const attackerKey = keyOf('an attacker on 8140');

  /** What an attacker reading the member's certificate would submit: all public fields, their own key. */
  function squat(h: Harness, instanceId: string): void {
    const certname = h.cloud.instances.get(instanceId)?.privateDnsName as string;
    h.puppet.request(certname, csrFacts(1, {
      commonName: certname,
      dnsAltNames: [certname, POLICY.nlbDnsName],
      puppetExtensions: { pp_instance_id: instanceId, pp_role: 'compile_master', pp_region: POLICY.region },
      publicKeySha256: attackerKey,
    }));
  }

  it("does not sign a squatter's CSR for a purged in-service member; removes it once the node reports, then signs the node's own", async () => {
    const h = new Harness();
    const [member] = await h.tier(1);
    const id = member as string;
    const certname = h.cloud.instances.get(id)?.privateDnsName as string;
    // An operator cleans the member's certificate; before the node notices, the attacker asks first.
    await h.puppet.clean([certname]);
    const before = h.puppet.calls.length;
    squat(h, id);
    h.schedule();
    await h.settle();
    expect(h.puppet.calls.slice(before)).not.toContain('sign');
    expect(h.puppet.state(certname)).toBe('requested');

    h.notify(id, 'enrolling');
    await h.settle();
    expect(h.puppet.state(certname)).toBe('absent');
    expect(h.metrics.get(METRIC.impostorCsrs)).toBe(1);
    expect(logged(h, 'Removed a certificate request the instance did not make')).toEqual([expect.objectContaining({ instanceId: id, certname })]);

    h.nodeSubmitsCsr(id);
    await h.settle();
    expect(h.puppet.certs.get(certname)).toMatchObject({ state: 'signed', issued: { publicKeySha256: h.nodeKey(id) } });
  });

  it("does not let a squatter's CSR abandon a new launch: it is removed, and the node's own is signed", async () => {
    const h = new Harness();
    const { instanceId } = h.cloud.launch();
    squat(h, instanceId);
    await h.settle();
    h.notify(instanceId, 'enrolling');
    await h.settle();
    expect(h.cloud.group.completions).toEqual([]);
    expect(h.puppet.calls).not.toContain('sign');
    h.nodeSubmitsCsr(instanceId);
    await h.settle();
    expect(h.puppet.calls).toContain('sign');
    expect(h.cloud.group.stateOf(instanceId)).toBe('Pending:Wait');
  });

  it('ignores a key report one instance sends about another, and signs nothing for it', async () => {
    const h = new Harness();
    const victim = h.cloud.launch().instanceId;
    const attacker = h.cloud.launch().instanceId;
    squat(h, victim);
    h.cloud.notifyFrom(nodeAgentNotice(victim, 'csr-submitted', attackerKey), attacker);
    await h.settle();
    expect(changes(h)).toEqual([]);
    expect(h.cloud.callsOf('registry.recordKeyReport')).toEqual([]);
    expect(h.metrics.get(METRIC.forged)).toBe(1);
  });

  it("ignores an EventBridge-shaped event sent with a compile master's credentials", async () => {
    const h = new Harness();
    const [member] = await h.tier(1);
    const forged = h.cloud.events.find((event) => event['detail-type'] === 'EC2 Instance-launch Lifecycle Action');
    const terminate = { ...forged, 'detail-type': 'EC2 Instance-terminate Lifecycle Action', detail: { ...forged?.detail, LifecycleHookName: 'compile-master-terminating', LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING' } };
    const before = h.puppet.calls.length;
    h.cloud.queue.enqueue(JSON.stringify(terminate), 0, `${h.cloud.compileMasterRoleId}:${member as string}`);
    await h.deliver();
    expect(h.puppet.calls.slice(before)).toEqual([]);
    expect(h.metrics.get(METRIC.forged)).toBe(1);
  });

  it('never removes a pending CSR that has a certificate beside it (DELETE would take the certificate, unrevoked)', async () => {
    const h = new Harness();
    const { instanceId, privateDnsName } = h.cloud.launch();
    const certname = privateDnsName as string;
    h.puppet.allowDuplicateCerts = true;
    h.puppet.request(certname, csrFacts(1, { commonName: certname, publicKeySha256: h.nodeKey(instanceId) }));
    await h.puppet.sign(certname);
    h.puppet.submit(certname, csrFacts(1, { commonName: certname, publicKeySha256: attackerKey }));
    const removal: Plan = { actions: [{ kind: 'remove-csr', instanceId, certname, publicKeySha256: attackerKey, reason: 'not the instance\'s key' }], drift: [], notes: [], damagedEntries: 0 };
    await execute(removal, { ports: h.cloud.ports(h.puppet, h.primaryRun), logger: h.logger, metrics: h.metrics, now: h.now });
    expect(h.puppet.calls).not.toContain('deleteRequest');
    expect(h.puppet.state(certname)).toBe('signed');
    expect(h.metrics.get(METRIC.impostorCsrs)).toBe(0);
  });

  it('leaves a pending CSR alone when it changed between the plan and the removal', async () => {
    const h = new Harness();
    const { instanceId } = h.cloud.launch();
    squat(h, instanceId);
    h.notify(instanceId, 'enrolling');
    const readCsr = h.puppet.readCsr.bind(h.puppet);
    let reads = 0;
    // The second read (the executor's) sees the node's own CSR, as if it had just replaced the squatter's.
    h.puppet.readCsr = async (certname) => (++reads === 2 ? { ...csrFacts(1), publicKeySha256: h.nodeKey(instanceId) } : readCsr(certname));
    await h.deliver();
    expect(h.puppet.calls).not.toContain('deleteRequest');
    expect(logged(h, 'The pending CSR changed since it was read; leaving it to the next pass')).toHaveLength(1);
  });
});
