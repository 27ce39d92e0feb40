import { describe, expect, it } from 'vitest';
import { AwsCallError, PuppetApiError, RefusedInputError } from '../../../lib/errors';
import type { RecheckMessage } from '../../../lambdas/controller/messages';
import { METRIC, TIMING } from '../../../lambdas/controller/vocabulary';
import { Harness } from './harness';
import { csrFacts, keyOf } from './support';

/**
 * The whole loop on the in-memory cloud: events through the queue, one reconcile per batch,
 * delayed rechecks, a fake Puppet side. What must hold is the end state, whatever the path.
 */
describe('scale out', () => {
  it('signs a valid CSR, waits for health, runs the primary once, then CONTINUEs the launch', async () => {
    const h = new Harness();
    const { instanceId, privateDnsName } = h.cloud.launch();
    const certname = privateDnsName as string;
    await h.settle();
    expect(h.puppet.state(certname)).toBe('absent');

    h.nodeSubmitsCsr(instanceId);
    await h.settle();
    expect(h.puppet.state(certname)).toBe('signed');
    expect(h.cloud.registry.peek(instanceId)).toMatchObject({ certname, state: 'signed' });
    expect(h.cloud.group.stateOf(instanceId)).toBe('Pending:Wait');

    h.nodeEnrolled(instanceId);
    await h.settle(TIMING.runQuietSeconds + 1);
    expect(h.primaryRun.runs).toHaveLength(1);
    expect(h.cloud.registry.peek(instanceId)?.state).toBe('converging');
    expect(h.cloud.group.stateOf(instanceId)).toBe('Pending:Wait');

    await h.settle(TIMING.followRunSeconds + 1);
    expect(h.cloud.group.heartbeats.map((beat) => beat.instanceId)).toContain(instanceId);
    h.runsEnd('finished');
    await h.settle();
    expect(h.cloud.group.completions).toEqual([{ instanceId, hook: 'launch', result: 'CONTINUE', at: expect.any(Date) }]);
    expect(h.cloud.group.stateOf(instanceId)).toBe('InService');
    expect(h.cloud.registry.peek(instanceId)?.state).toBe('in-service');
    expect(h.cloud.registry.peekRun()).toMatchObject({ pending: [], last: { outcome: 'finished', covers: [instanceId] } });
    expect(h.metrics.get(METRIC.signed)).toBe(1);
    expect(h.metrics.get(METRIC.completed)).toBe(1);
  });

  it("a CSR the CA refuses is that instance's refusal: the primary's runs go on for everyone else", async () => {
    const h = new Harness();
    const [first] = await h.tier(1);
    const converging = h.cloud.launch().instanceId;
    h.nodeSubmitsCsr(converging);
    await h.settle();
    h.nodeEnrolled(converging);
    await h.settle(TIMING.runQuietSeconds + 1);
    expect(h.primaryRun.runs).toHaveLength(2);

    // While that run goes, a launch whose CSR the CA's policy refuses, on every pass.
    const refused = h.cloud.launch().instanceId;
    const sign = h.puppet.sign.bind(h.puppet);
    const certname = h.cloud.instances.get(refused)?.privateDnsName;
    h.puppet.sign = async (name) => {
      if (name !== certname) return sign(name);
      throw new PuppetApiError({ server: 'ca', url: 'https://primary:8140', operation: 'sign', status: 409, detail: 'subject alternative names … which are disallowed' });
    };
    h.nodeSubmitsCsr(refused);
    h.runsEnd('finished');
    await h.settle();

    expect(h.cloud.group.stateOf(converging)).toBe('InService');
    expect(h.cloud.registry.peekRun().job).toBeUndefined();
    expect(h.cloud.registry.peekRun().last).toMatchObject({ outcome: 'finished', covers: [converging] });
    expect(h.cloud.group.completions).toContainEqual(expect.objectContaining({ instanceId: refused, hook: 'launch', result: 'ABANDON' }));
    expect(h.logger.lines.find((line) => line.message === 'Refused: abandoning the launch')?.attributes).toMatchObject({ reasons: [expect.stringMatching(/CA refused to sign it.*disallowed/)] });
    expect(first && h.cloud.group.stateOf(first)).toBe('InService');
  });

  it("a CA that refuses the lifecycle certificate itself (403) fails the pass, to be retried: no launch is refused for it", async () => {
    const h = new Harness();
    const { instanceId } = h.cloud.launch();
    h.puppet.sign = async () => {
      throw new PuppetApiError({ server: 'ca', url: 'https://primary:8140', operation: 'sign', status: 403, detail: 'Forbidden request' });
    };
    h.nodeSubmitsCsr(instanceId);
    const response = await h.deliver();
    expect(response?.batchItemFailures.length).toBeGreaterThan(0);
    expect(h.cloud.group.completions).toEqual([]);
    expect(h.cloud.group.stateOf(instanceId)).toBe('Pending:Wait');
  });

  it('scales out three at once with one orchestrator run', async () => {
    const h = new Harness();
    const ids = await h.tier(3);
    expect(ids.map((id) => h.cloud.group.stateOf(id))).toEqual(['InService', 'InService', 'InService']);
    expect(h.primaryRun.runs).toHaveLength(1);
  });

  it('refuses a forged CSR: never signed, launch ABANDONed, nothing purged, counted', async () => {
    const h = new Harness();
    const { instanceId, privateDnsName } = h.cloud.launch();
    h.nodeSubmitsCsr(instanceId, { puppetExtensions: { pp_instance_id: 'i-0ffffffffffffffff', pp_role: 'compile_master' } });
    await h.settle();
    expect(h.puppet.state(privateDnsName as string)).toBe('requested');
    expect(h.puppet.calls).not.toContain('sign');
    expect(h.puppet.calls).not.toContain('clean');
    expect(h.cloud.group.completions.map((c) => [c.hook, c.result])).toEqual([['launch', 'ABANDON'], ['terminate', 'CONTINUE']]);
    expect(h.cloud.group.stateOf(instanceId)).toBeUndefined();
    expect(h.cloud.registry.peek(instanceId)).toBeUndefined();
    expect(h.metrics.get(METRIC.refused)).toBe(1);
    expect(h.logger.lines.find((line) => line.message.startsWith('Refused'))?.attributes).toMatchObject({
      instanceId,
      reasons: [expect.stringMatching(/pp_instance_id "i-0ffffffffffffffff" is not/)],
    });
  });

  it.each([
    ['another key', 'other-key', /not for the key that was checked/],
    ['the same key and one more alt name', 'extra-alt-name', /alt names that were not checked: .*puppet/],
    ['the same key and one more Puppet extension', 'extra-extension', /other Puppet extensions than the ones checked/],
  ] as const)('revokes what the CA issued when the CSR was replaced between the check and the signing with %s', async (_what, replacement, reason) => {
    const h = new Harness();
    const { instanceId, privateDnsName } = h.cloud.launch();
    h.puppet.replaceCsrBeforeSigning = replacement;
    h.nodeSubmitsCsr(instanceId);
    await h.settle();
    expect(h.puppet.revoked).toEqual([privateDnsName]);
    expect(h.cloud.group.completions[0]).toMatchObject({ instanceId, hook: 'launch', result: 'ABANDON' });
    expect(h.metrics.get(METRIC.signed)).toBe(0);
    expect(h.logger.lines.find((line) => line.message.startsWith('Refused'))?.attributes).toMatchObject({ reasons: [expect.stringMatching(reason)] });
  });

  it('revokes a certificate the CA serves but that cannot be read: it fails closed', async () => {
    const h = new Harness();
    const { instanceId, privateDnsName } = h.cloud.launch();
    h.puppet.issuedCertificate = async () => {
      throw new RefusedInputError('Not a certificate: no PEM CERTIFICATE block');
    };
    h.nodeSubmitsCsr(instanceId);
    await h.settle();
    expect(h.puppet.revoked).toEqual([privateDnsName]);
    expect(h.cloud.registry.peek(instanceId)).toMatchObject({ state: 'purged' });
    expect(h.logger.lines.find((line) => line.message.startsWith('Refused'))?.attributes).toMatchObject({
      reasons: [expect.stringMatching(/could not be read to check it .*; it was revoked/)],
    });
  });

  it("leaves a launch to the hook's default result when the primary's run fails twice, and alarms", async () => {
    const h = new Harness();
    const { instanceId } = h.cloud.launch();
    h.nodeSubmitsCsr(instanceId);
    await h.settle();
    h.nodeEnrolled(instanceId);
    await h.settle(TIMING.runQuietSeconds + 1);
    h.runsEnd('failed');
    await h.settle(TIMING.followRunSeconds + 1);
    expect(h.primaryRun.runs).toHaveLength(2);
    h.runsEnd('failed');
    await h.settle();
    expect(h.metrics.get(METRIC.runsFailed)).toBe(1);
    expect(h.metrics.get(METRIC.failed)).toBe(1);
    expect(h.cloud.registry.peek(instanceId)?.state).toBe('stalled');
    expect(h.cloud.group.stateOf(instanceId)).toBe('Pending:Wait');
    expect(h.cloud.group.completions).toEqual([]);

    // No more heartbeats or runs for it: the hook's ABANDON default takes it away, and then it is purged.
    h.schedule();
    await h.settle();
    expect(h.primaryRun.runs).toHaveLength(2);
    await h.cloud.group.completeLifecycleAction(instanceId, 'launch', 'ABANDON');
    await h.settle();
    expect(h.cloud.registry.peek(instanceId)?.state).toBe('purged');
  });
});

describe("the primary's run, whatever its runner's ids", () => {
  const uuid = (n: number) => `5f0c3a1e-8b9d-4c2a-a7e6-${n.toString(16).padStart(12, '0')}`;

  it('follows, retries and stalls runs named by SSM command ids exactly as job numbers', async () => {
    const h = new Harness({ runId: uuid });
    const { instanceId } = h.cloud.launch();
    h.nodeSubmitsCsr(instanceId);
    await h.settle();
    h.nodeEnrolled(instanceId);
    await h.settle(TIMING.runQuietSeconds + 1);
    expect(h.cloud.registry.peekRun().job).toMatchObject({ name: uuid(1), covers: [instanceId] });
    // Followed by its id through the queue: the follow-ups name it, and the launch gets heartbeats.
    await h.settle(TIMING.followRunSeconds + 1);
    const rechecks = () => h.cloud.callsOf('queue.sendRecheck').map(([message]) => message as RecheckMessage);
    expect(rechecks().filter((message) => message.reason === 'follow-run').map((message) => message.runId)).toEqual([uuid(1), uuid(1)]);
    expect(h.cloud.group.heartbeats.map((beat) => beat.instanceId)).toContain(instanceId);

    h.runsEnd('failed');
    await h.settle(TIMING.followRunSeconds + 1);
    expect(h.cloud.registry.peekRun().job).toMatchObject({ name: uuid(2), attempt: 2 });
    h.runsEnd('failed');
    await h.settle();
    expect(h.cloud.registry.peek(instanceId)?.state).toBe('stalled');
    expect(h.cloud.registry.peekRun().last).toMatchObject({ name: uuid(2), outcome: 'failed', covers: [instanceId] });
    expect(h.metrics.get(METRIC.runsFailed)).toBe(1);
    expect(h.logger.lines.find((line) => line.message === "The primary's run failed after retrying")?.attributes).toMatchObject({ runId: uuid(2) });
  });

  it('refuses a run id of the wrong shape from the runner: nothing stored or sent, the changes wait for the next run', async () => {
    const h = new Harness({ runId: (n) => (n === 1 ? '../jobs/1' : String(n)) });
    const { instanceId } = h.cloud.launch();
    h.nodeSubmitsCsr(instanceId);
    await h.settle();
    h.nodeEnrolled(instanceId);
    await h.settle(TIMING.runQuietSeconds + 1);
    expect(h.logger.lines.some((line) => String((line.attributes as { error?: Error } | undefined)?.error?.message).includes('is not a primary run id'))).toBe(true);
    expect(h.primaryRun.runs).toHaveLength(1);
    expect(h.cloud.registry.peekRun()).toMatchObject({ pending: [instanceId] });
    expect(h.cloud.registry.peekRun().job).toBeUndefined();
    // The failed trigger comes back after the visibility timeout and starts a run afresh.
    await h.settle(31);
    expect(JSON.stringify(h.cloud.callsOf('queue.sendRecheck'))).not.toContain('../jobs/1');
    expect(h.primaryRun.runs).toHaveLength(2);
    expect(h.cloud.registry.peekRun().job).toMatchObject({ name: '2', covers: [instanceId] });
    h.runsEnd('finished');
    await h.settle(TIMING.followRunSeconds + 1);
    expect(h.cloud.group.stateOf(instanceId)).toBe('InService');
  });
});

describe('scale in', () => {
  it('purges 50 terminating members with one clean, one run, and completes all 50', async () => {
    const h = new Harness();
    const ids = await h.tier(50);
    const certnames = ids.map((id) => h.cloud.instances.get(id)?.privateDnsName);
    h.primaryRun.runs.length = 0;
    h.puppet.cleans.length = 0;

    h.cloud.scaleIn(ids);
    await h.settle();
    expect(h.puppet.cleans).toEqual([expect.arrayContaining(certnames)]);
    expect(h.puppet.cleans[0]).toHaveLength(50);
    expect([...h.puppet.deactivated.keys()].sort()).toEqual([...certnames].sort());
    expect(h.cloud.group.completions.filter((c) => c.hook === 'terminate')).toHaveLength(50);
    expect(h.cloud.group.pendingActions()).toEqual([]);
    expect(h.primaryRun.runs).toHaveLength(1);
    expect(ids.every((id) => h.cloud.registry.peek(id)?.state === 'purged')).toBe(true);
    expect(h.metrics.get(METRIC.purged)).toBe(50);
  });

  it('completes a terminating member it never enrolled without touching Puppet', async () => {
    const h = new Harness();
    h.cloud.addInService({ instanceId: 'i-0000000000000abcd', privateDnsName: 'handmade.corp.example.com', privateIp: '10.0.9.9' });
    h.cloud.scaleIn(['i-0000000000000abcd']);
    await h.settle();
    expect(h.cloud.group.completions).toMatchObject([{ instanceId: 'i-0000000000000abcd', hook: 'terminate', result: 'CONTINUE' }]);
    expect(h.puppet.calls).not.toContain('clean');
    expect(h.puppet.calls).not.toContain('deactivate');
  });

  it('purges an instance terminated outside the group, with no lifecycle action', async () => {
    const h = new Harness();
    const [id] = await h.tier(1);
    h.cloud.terminateOutside(id as string);
    await h.settle();
    expect(h.cloud.registry.peek(id as string)?.state).toBe('purged');
    expect(h.puppet.revoked).toEqual([h.cloud.instances.get(id as string)?.privateDnsName]);
    expect(h.cloud.group.completions.filter((c) => c.hook === 'terminate')).toEqual([]);
  });

  it("does not even look at the group for EC2 state changes of other instances", async () => {
    const h = new Harness();
    h.cloud.addInService({ instanceId: 'i-0000000000000beef', privateDnsName: 'other.corp.example.com', privateIp: '10.9.0.1' });
    h.cloud.terminateOutside('i-0000000000000beef');
    await h.settle();
    expect(h.cloud.callsOf('group.members')).toEqual([]);
    expect(h.puppet.calls).toEqual([]);
  });
});

describe('lost, repeated, late and out-of-order events end in the same state', () => {
  async function endState(h: Harness, ids: string[]) {
    return {
      members: ids.map((id) => h.cloud.group.stateOf(id)),
      registry: ids.map((id) => h.cloud.registry.peek(id)?.state),
      certs: ids.map((id) => h.puppet.state(h.cloud.instances.get(id)?.privateDnsName as string)),
      deactivated: ids.map((id) => h.puppet.deactivated.has(h.cloud.instances.get(id)?.privateDnsName as string)),
      pending: h.cloud.group.pendingActions(),
    };
  }

  it('a lost terminate event is caught by the scheduled reconcile', async () => {
    const reference = new Harness();
    const refIds = await reference.tier(2);
    reference.cloud.scaleIn(refIds);
    await reference.settle();

    const h = new Harness();
    const ids = await h.tier(2);
    h.dropEvents = true;
    h.cloud.scaleIn(ids);
    await h.settle();
    expect(h.cloud.group.pendingActions()).toHaveLength(2);
    h.schedule();
    await h.settle();
    expect(await endState(h, ids)).toEqual(await endState(reference, refIds));
    expect(h.dropped).toHaveLength(2);
  });

  it("a lost launch event and a csr-submitted prompt never sent are caught by the schedule (the node's key report arrived)", async () => {
    const h = new Harness();
    h.dropEvents = true;
    const { instanceId, privateDnsName } = h.cloud.launch();
    h.notify(instanceId, 'enrolling');
    h.puppet.request(privateDnsName as string, {
      commonName: privateDnsName,
      dnsAltNames: [privateDnsName as string],
      otherAltNames: [],
      puppetExtensions: { pp_instance_id: instanceId, pp_role: 'compile_master' },
      otherExtensionOids: [],
      signatureValid: true,
      publicKeySha256: h.nodeKey(instanceId),
    });
    h.schedule();
    await h.settle();
    expect(h.puppet.state(privateDnsName as string)).toBe('signed');
  });

  it('duplicated and reordered events change nothing more', async () => {
    const h = new Harness();
    const ids = await h.tier(2);
    const runsBefore = h.primaryRun.runs.length;
    h.cloud.scaleIn(ids);
    const bodies = h.cloud.queue.messages.map((message) => message.body);
    // The same events again, newest first, plus a stale launch event for one of them.
    for (const body of [...bodies].reverse()) h.cloud.queue.enqueue(body);
    const staleLaunch = h.cloud.events.find((event) => event['detail-type'] === 'EC2 Instance-launch Lifecycle Action' && event.detail.EC2InstanceId === ids[0]);
    h.cloud.queue.enqueue(JSON.stringify(staleLaunch));
    await h.settle();
    h.schedule();
    await h.settle();
    expect(h.puppet.cleans.flat().sort()).toEqual(ids.map((id) => h.cloud.instances.get(id)?.privateDnsName).sort());
    expect(h.cloud.group.completions.filter((c) => c.hook === 'terminate')).toHaveLength(2);
    expect(h.primaryRun.runs.length - runsBefore).toBe(1);
    expect(h.metrics.get(METRIC.failed)).toBe(0);
  });
});

describe('failures', () => {
  it('fails the batch while the Puppet side is down, changing nothing; the retry does the work', async () => {
    const h = new Harness();
    const ids = await h.tier(2);
    h.puppet.down = true;
    h.cloud.scaleIn(ids);
    const response = await h.deliver();
    expect(response?.batchItemFailures).toHaveLength(2);
    expect(ids.map((id) => h.cloud.registry.peek(id)?.state)).toEqual(['in-service', 'in-service']);
    expect(h.cloud.group.pendingActions()).toHaveLength(2);

    h.puppet.down = false;
    await h.settle();
    expect(ids.map((id) => h.cloud.registry.peek(id)?.state)).toEqual(['purged', 'purged']);
    expect(h.cloud.group.pendingActions()).toEqual([]);
  });

  it('keeps a purge the CA failed in the middle of: claims stay, the alarm counts, a later pass finishes it', async () => {
    const h = new Harness();
    const ids = await h.tier(2);
    h.puppet.failing.add('clean');
    h.cloud.scaleIn(ids);
    const response = await h.deliver();
    expect(response?.batchItemFailures).toHaveLength(2);
    expect(ids.map((id) => h.cloud.registry.peek(id)?.state)).toEqual(['purging', 'purging']);
    expect(h.cloud.group.pendingActions()).toHaveLength(2);
    expect(h.metrics.get(METRIC.failed)).toBe(2);

    h.puppet.failing.clear();
    h.advance(TIMING.purgeLeaseMs / 1000 + 1);
    await h.settle();
    expect(ids.map((id) => h.cloud.registry.peek(id)?.state)).toEqual(['purged', 'purged']);
    expect(h.cloud.group.pendingActions()).toEqual([]);
  });

  it('survives AWS throttling of CompleteLifecycleAction: the record is retried and succeeds', async () => {
    const h = new Harness();
    const ids = await h.tier(1);
    const throttled = new AwsCallError('CompleteLifecycleAction failed: Throttling: Rate exceeded');
    h.cloud.failNext('group.completeLifecycleAction', throttled);
    h.cloud.scaleIn(ids);
    const first = await h.deliver();
    expect(first?.batchItemFailures).toHaveLength(1);
    await h.settle();
    expect(h.cloud.group.pendingActions()).toEqual([]);
    expect(h.cloud.registry.peek(ids[0] as string)?.state).toBe('purged');
    expect(h.puppet.cleans.filter((batch) => batch.length > 0)).toHaveLength(1);
  });

  it('finishes a purge a crashed pass left half done, once its claim is stale', async () => {
    const h = new Harness();
    const [id] = (await h.tier(1)) as [string];
    const deactivate = h.puppet.deactivate.bind(h.puppet);
    let crashes = 1;
    h.puppet.deactivate = async (certname, at) => {
      if (crashes-- > 0) throw new Error('Lambda timed out');
      return deactivate(certname, at);
    };
    h.cloud.scaleIn([id]);
    await h.deliver();
    expect(h.cloud.registry.peek(id)?.state).toBe('purging');
    await h.settle(60);
    expect(h.cloud.registry.peek(id)?.state).toBe('purging');
    h.advance(TIMING.purgeLeaseMs / 1000);
    h.schedule();
    await h.settle();
    expect(h.cloud.registry.peek(id)?.state).toBe('purged');
    expect(h.cloud.group.pendingActions()).toEqual([]);
  });

  it('lets only one of two racing passes claim a purge', async () => {
    const h = new Harness();
    const ids = await h.tier(4);
    h.cloud.scaleIn(ids);
    h.cloud.queue.messages.length = 0;
    h.schedule();
    h.schedule();
    await Promise.all([h.deliver(1), h.deliver(1)]);
    await h.settle();
    expect(h.puppet.cleans.flat()).toHaveLength(4);
    expect(h.cloud.group.completions.filter((c) => c.hook === 'terminate')).toHaveLength(4);
    expect(h.primaryRun.runs.length).toBe(2);
  });
});

/**
 * The certificate the CA issued is compared with what was checked after every signing; a pass that
 * dies in between leaves that to the next one, and until then the node goes no further.
 */
describe('verifying what the CA issued, also after a pass died', () => {
  /** The CA signs, then the pass dies before it hears back (a Lambda timeout), once. */
  function crashAfterSigning(h: Harness): void {
    const sign = h.puppet.sign.bind(h.puppet);
    let crashes = 1;
    h.puppet.sign = async (certname) => {
      await sign(certname);
      if (crashes-- > 0) throw new Error('Task timed out after 120.00 seconds');
    };
  }

  it('verifies on the next pass a certificate signed by a pass that died, and only then lets the node converge', async () => {
    const h = new Harness();
    const { instanceId, privateDnsName } = h.cloud.launch();
    const certname = privateDnsName as string;
    await h.settle();
    crashAfterSigning(h);
    h.nodeSubmitsCsr(instanceId);
    h.cloud.health.set(certname, true);
    h.puppet.issuedUnreadable = true;
    // Both of the node's messages (its key report and csr-submitted) were in the batch that died.
    expect((await h.deliver())?.batchItemFailures).toHaveLength(2);
    expect(h.puppet.state(certname)).toBe('signed');
    expect(h.cloud.registry.peek(instanceId)).toMatchObject({ state: 'signed', checked: { publicKeySha256: h.nodeKey(instanceId) } });

    // Healthy, but the CA cannot show what it issued yet: no further than signed, and nothing revoked.
    h.schedule();
    await h.settle(TIMING.runQuietSeconds + 1);
    expect(h.cloud.registry.peek(instanceId)).toMatchObject({ state: 'signed' });
    expect(h.cloud.registry.peek(instanceId)?.issued).toBeUndefined();
    expect(h.primaryRun.runs).toEqual([]);
    expect(h.puppet.revoked).toEqual([]);

    h.puppet.issuedUnreadable = false;
    h.schedule();
    await h.settle(TIMING.runQuietSeconds + 1);
    const issued = h.puppet.certificate(certname);
    expect(h.cloud.registry.peek(instanceId)?.issued).toEqual({ serial: String(issued?.serial), sha256Fingerprint: issued?.sha256Fingerprint, verifiedAt: expect.any(String) });
    expect(h.logger.messages('info')).toContain('Verified the certificate an earlier pass signed');
    expect(h.metrics.get(METRIC.signed)).toBe(1);
    // The pass that verified it asked to look at the node again: healthy, so it converges.
    await h.settle(TIMING.awaitNodeSeconds + TIMING.runQuietSeconds + 1);
    expect(h.primaryRun.runs).toHaveLength(1);
    h.runsEnd('finished');
    await h.settle();
    expect(h.cloud.group.stateOf(instanceId)).toBe('InService');
    expect(h.puppet.revoked).toEqual([]);
  });

  it('revokes a certificate found on a later pass not to be what was checked, and ABANDONs the launch', async () => {
    const h = new Harness();
    const { instanceId, privateDnsName } = h.cloud.launch();
    const certname = privateDnsName as string;
    crashAfterSigning(h);
    h.puppet.replaceCsrBeforeSigning = 'other-key';
    h.nodeSubmitsCsr(instanceId);
    h.cloud.health.set(certname, true);
    await h.settle();
    expect(h.puppet.revoked).toEqual([certname]);
    expect(h.puppet.revokedCertificates.map((cert) => cert.publicKeySha256)).toEqual(['attacker-key']);
    expect(h.cloud.registry.peek(instanceId)?.state).toBe('purged');
    expect(h.cloud.group.completions[0]).toMatchObject({ instanceId, hook: 'launch', result: 'ABANDON' });
    expect(h.primaryRun.runs).toEqual([]);
    expect(h.metrics.get(METRIC.signed)).toBe(0);
    expect(h.logger.lines.find((line) => line.message.startsWith('Refused'))?.attributes).toMatchObject({
      reasons: [expect.stringMatching(/not for the key that was checked .*; it was revoked/)],
    });
  });
});

/**
 * EC2 reuses private IPs, so a certname passes from a terminated instance to a new one. A purge
 * revokes only the very certificate issued to its own instance (DESIGN rule 1).
 */
describe('certnames reused by a new instance', () => {
  /** An in-service instance A, enrolled through the controller, and its certname. */
  async function enrolledA(h: Harness): Promise<{ a: string; aKey: string; certname: string; privateIp: string }> {
    const [a] = (await h.tier(1)) as [string];
    const instance = h.cloud.instances.get(a);
    return { a, aKey: h.nodeKey(a), certname: instance?.privateDnsName as string, privateIp: instance?.privateIp as string };
  }

  /** Certificates revoked that were not issued for the key of `owner`'s CSR. */
  function othersRevoked(h: Harness, ownerKey: string): string[] {
    return h.puppet.revokedCertificates.filter((cert) => cert.publicKeySha256 !== ownerKey).map((cert) => cert.publicKeySha256);
  }

  it("(a) signs B's request for A's old certname and purges A in one pass without revoking B's new certificate", async () => {
    const h = new Harness();
    const { a, aKey, certname, privateIp } = await enrolledA(h);
    // Someone cleans A's certificate by hand and terminates A; its address goes to B. No event gets through.
    h.dropEvents = true;
    await h.puppet.clean([certname]);
    h.cloud.terminateOutside(a);
    const { instanceId: b } = h.cloud.launch({ privateIp, privateDnsName: certname });
    h.dropEvents = false;
    h.nodeSubmitsCsr(b);
    await h.deliver();

    expect(h.cloud.registry.peek(a)?.state).toBe('purged');
    expect(h.puppet.state(certname)).toBe('signed');
    expect(h.puppet.certificate(certname)?.publicKeySha256).toBe(h.nodeKey(b));
    expect(othersRevoked(h, aKey)).toEqual([]);
    expect(h.logger.lines).toContainEqual(expect.objectContaining({ message: expect.stringMatching(/^Purge left the CA alone/), attributes: expect.objectContaining({ instanceId: a }) }));
    expect(h.cloud.registry.peek(b)?.issued?.sha256Fingerprint).toBe(h.puppet.certificate(certname)?.sha256Fingerprint);
  });

  it('(b) retries only the PuppetDB step once PuppetDB is back, with the time the purge started: the certname is an unrelated node\'s by then', async () => {
    const h = new Harness();
    const { a, aKey, certname } = await enrolledA(h);
    h.puppet.failing.add('deactivate');
    const started = h.now;
    h.cloud.terminateOutside(a);
    await h.deliver();
    expect(h.cloud.registry.peek(a)).toMatchObject({ state: 'purging', purge: { startedAt: started.toISOString(), ca: started.toISOString() } });
    expect(h.puppet.revokedCertificates.map((cert) => cert.publicKeySha256)).toEqual([aKey]);

    // An unrelated agent enrolls as the certname, signed by hand; then PuppetDB comes back.
    h.puppet.request(certname, csrFacts(1, { commonName: certname, publicKeySha256: keyOf('an unrelated agent') }));
    await h.puppet.sign(certname);
    h.puppet.failing.clear();
    h.advance(TIMING.purgeLeaseMs / 1000 + 1);
    h.schedule();
    await h.settle();

    expect(h.cloud.registry.peek(a)?.state).toBe('purged');
    expect(h.puppet.state(certname)).toBe('signed');
    expect(othersRevoked(h, aKey)).toEqual([]);
    expect(h.puppet.deactivated.get(certname)).toEqual(started);
    expect(h.puppet.cleans).toHaveLength(1);
  });

  it('never revokes a certificate issued to another instance, even when a pass died before recording that the CA step was done', async () => {
    const h = new Harness();
    const { a, aKey, certname, privateIp } = await enrolledA(h);
    h.cloud.failNext('registry.recordPurgeStep', new Error('Task timed out after 120.00 seconds'), 2);
    h.cloud.terminateOutside(a);
    await h.deliver();
    expect(h.cloud.registry.peek(a)).toMatchObject({ state: 'purging', purge: { startedAt: expect.any(String) } });
    expect(h.cloud.registry.peek(a)?.purge?.ca).toBeUndefined();

    // B gets the address and is enrolled by the controller before A's purge is retried.
    const { instanceId: b } = h.cloud.launch({ privateIp, privateDnsName: certname });
    h.nodeSubmitsCsr(b);
    await h.settle(60);
    expect(h.puppet.certificate(certname)?.publicKeySha256).toBe(h.nodeKey(b));
    h.advance(TIMING.purgeLeaseMs / 1000 + 1);
    h.schedule();
    await h.settle(60);

    expect(h.cloud.registry.peek(a)?.state).toBe('purged');
    expect(h.puppet.state(certname)).toBe('signed');
    expect(othersRevoked(h, aKey)).toEqual([]);
    expect(h.cloud.registry.peek(b)?.state).not.toBe('purged');
  });
});

describe('a damaged registry item', () => {
  const stamp = { createdAt: '2026-11-20T11:00:00.000Z', updatedAt: '2026-11-20T11:00:00.000Z' };

  it('is quarantined: drift and a metric on every pass, nothing asked or done for its instance, the rest of the pass goes on', async () => {
    const h = new Harness();
    const [leaving] = (await h.tier(1)) as [string];
    // Hand edits gone wrong: an in-service member's certname, and a launching member's state.
    h.cloud.addInService({ instanceId: 'i-0000000000000d00d', privateDnsName: 'ip-10-9-0-1.us-west-2.compute.internal', privateIp: '10.9.0.1' });
    h.cloud.registry.seedItem({ instanceId: 'i-0000000000000d00d', certname: '../x', state: 'in-service', ...stamp });
    const damagedLaunch = h.cloud.launch();
    const damagedCertname = damagedLaunch.privateDnsName as string;
    h.cloud.registry.seedItem({ instanceId: damagedLaunch.instanceId, certname: damagedCertname, state: 'haunted', ...stamp });
    h.nodeSubmitsCsr(damagedLaunch.instanceId);
    const healthy = h.cloud.launch();
    h.nodeSubmitsCsr(healthy.instanceId);
    h.cloud.scaleIn([leaving]);
    h.puppet.named.clear();
    const passesBefore = h.cloud.callsOf('registry.list').length;
    await h.settle();

    expect(h.puppet.state(healthy.privateDnsName as string)).toBe('signed');
    expect(h.cloud.registry.peek(leaving)?.state).toBe('purged');
    expect(h.cloud.group.stateOf(leaving)).toBeUndefined();
    expect(h.puppet.state(damagedCertname)).toBe('requested');
    expect(h.puppet.named.has('../x')).toBe(false);
    expect(h.puppet.named.has(damagedCertname)).toBe(false);
    expect(h.cloud.group.completions.map((completion) => completion.instanceId)).not.toContain(damagedLaunch.instanceId);
    expect(h.cloud.group.stateOf(damagedLaunch.instanceId)).toBe('Pending:Wait');
    expect(h.cloud.registry.peek(damagedLaunch.instanceId)).toMatchObject({ state: 'haunted' });
    expect(h.cloud.callsOf('registry.recordSigned').map(([instanceId]) => instanceId)).not.toContain(damagedLaunch.instanceId);
    const drift = h.logger.lines.filter((line) => line.message === 'Drift').map((line) => line.attributes as { instanceId?: string; detail: string });
    expect(drift).toContainEqual({ instanceId: 'i-0000000000000d00d', detail: expect.stringMatching(/"i-0000000000000d00d" quarantined: its certname "\.\.\/x" is not/) });
    expect(drift).toContainEqual({ instanceId: damagedLaunch.instanceId, detail: expect.stringMatching(/quarantined: it does not parse/) });
    const passes = h.cloud.callsOf('registry.list').length - passesBefore;
    expect(passes).toBeGreaterThan(1);
    expect(h.metrics.get(METRIC.damagedEntries)).toBe(2 * passes);
    expect(h.metrics.get(METRIC.failed)).toBe(0);
  });
});
