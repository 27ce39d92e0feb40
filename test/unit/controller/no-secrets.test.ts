import { describe, expect, it } from 'vitest';
import { QUEUE_VISIBILITY_TIMEOUT } from '../../../cdk/constructs/lifecycle-controller';
import { DLQ_MAX_RECEIVE_COUNT } from '../../../cdk/constructs/lifecycle-queue';
import { AwsCallError, SecretMissingError } from '../../../lib/errors';
import { METRIC } from '../../../lambdas/controller/vocabulary';
import { Harness } from './harness';
import { POLICY } from './support';

const ARN = 'arn:aws:secretsmanager:us-west-2:123456789012:secret:compile-masters/client-cert-AbCdEf';
const STACK_REDRIVE = { visibilityTimeoutSeconds: QUEUE_VISIBILITY_TIMEOUT.toSeconds(), maxReceiveCount: DLQ_MAX_RECEIVE_COUNT };

/** A first deploy before `secrets put`: the stack created the client certificate secret empty. */
function withoutSecret(): Harness {
  const h = new Harness({ redrive: STACK_REDRIVE });
  h.clientCertificateError = new SecretMissingError(`The lifecycle client certificate bundle secret ${ARN} is empty`, ARN, { hint: 'store it' });
  return h;
}

describe('passes while the client certificate secret is empty or missing', () => {
  it('heartbeat the launch on the schedule, sign nothing, acknowledge the batch and count SecretsMissing', async () => {
    const h = withoutSecret();
    const { instanceId, privateDnsName } = h.cloud.launch();
    h.nodeSubmitsCsr(instanceId);
    h.schedule();

    const response = await h.deliver(100);

    expect(response?.batchItemFailures).toEqual([]);
    expect(h.cloud.queue.messages).toHaveLength(0);
    expect(h.cloud.queue.inFlight.size).toBe(0);
    expect(h.puppet.state(privateDnsName as string)).toBe('requested');
    expect(h.cloud.group.heartbeats.map((beat) => beat.instanceId)).toEqual([instanceId]);
    expect(h.cloud.group.completions).toEqual([]);
    expect(h.metrics.get(METRIC.secretsMissing)).toBe(1);
    expect(h.metrics.get(METRIC.signed)).toBe(0);
    const errors = h.logger.lines.filter((line) => line.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]?.attributes).toMatchObject({ secretArn: ARN, fix: expect.stringContaining('npx compile-masters secrets put') });
  });

  it('never sends a message toward the dead-letter queue, however long the secret stays missing', async () => {
    const h = withoutSecret();
    const { instanceId } = h.cloud.launch();
    h.nodeSubmitsCsr(instanceId);
    for (let pass = 0; pass < DLQ_MAX_RECEIVE_COUNT + 2; pass++) {
      h.schedule();
      await h.settle(STACK_REDRIVE.visibilityTimeoutSeconds + 1);
    }
    expect(h.cloud.queue.deadLetters).toEqual([]);
    expect(h.cloud.group.stateOf(instanceId)).toBe('Pending:Wait');
  });

  it('stops heartbeating a launch past its ceiling: drift, and the hook times out', async () => {
    const h = withoutSecret();
    const { instanceId } = h.cloud.launch();
    h.advance(POLICY.launchCeilingSeconds + 60);
    h.schedule();
    await h.deliver(100);
    expect(h.cloud.group.heartbeats).toEqual([]);
    expect(h.logger.lines.filter((line) => line.message === 'Drift').map((line) => line.attributes)).toEqual([
      expect.objectContaining({ instanceId, detail: expect.stringMatching(/^launch exceeded its ceiling/) }),
    ]);
  });

  it('a node agent message alone records its key report but heartbeats nothing', async () => {
    const h = withoutSecret();
    const { instanceId } = h.cloud.launch();
    h.nodeSubmitsCsr(instanceId);
    await h.deliver(100);
    expect(h.cloud.group.heartbeats).toEqual([]);
    expect(await h.cloud.registry.keyReport(instanceId)).toMatchObject({ publicKeySha256: h.nodeKey(instanceId) });
  });

  it('once the secret is put, the scheduled pass signs the CSR that waited (its key report was kept)', async () => {
    const h = withoutSecret();
    const { instanceId, privateDnsName } = h.cloud.launch();
    h.nodeSubmitsCsr(instanceId);
    await h.settle();
    expect(h.puppet.state(privateDnsName as string)).toBe('requested');

    h.clientCertificateError = undefined;
    h.schedule();
    await h.settle();
    expect(h.puppet.state(privateDnsName as string)).toBe('signed');
    expect(h.cloud.registry.peek(instanceId)).toMatchObject({ state: 'signed' });
  });

  it('any other failure to read the secret (access denied, throttling) still fails the batch, to be retried', async () => {
    const h = new Harness({ redrive: STACK_REDRIVE });
    h.clientCertificateError = new AwsCallError('GetSecretValue failed: AccessDeniedException');
    h.cloud.launch();
    h.schedule();
    const response = await h.deliver(100);
    // Both messages (the launch's lifecycle event and the schedule) come back.
    expect(response?.batchItemFailures).toHaveLength(2);
    expect(h.cloud.group.heartbeats).toEqual([]);
    expect(h.metrics.get(METRIC.secretsMissing)).toBe(0);
  });
});

describe('passes while the CA does not answer (a primary being upgraded or restarted)', () => {
  it('heartbeat a launch that shows it is alive, sign nothing and fail the batch so it comes back', async () => {
    const h = new Harness({ redrive: STACK_REDRIVE });
    const { instanceId, privateDnsName } = h.cloud.launch();
    h.cloud.launch(); // its bootstrap never got as far as reporting a key
    h.nodeSubmitsCsr(instanceId);
    h.puppet.down = true;
    h.schedule();

    const response = await h.deliver(100);

    expect(response?.batchItemFailures.length).toBeGreaterThan(0);
    // Only the launch that reported its key: one whose bootstrap never started gets no heartbeat.
    expect(h.cloud.group.heartbeats.map((beat) => beat.instanceId)).toEqual([instanceId]);
    expect(h.cloud.group.completions).toEqual([]);
    expect(h.logger.lines.map((line) => line.message)).toContain('Heartbeat recorded for launches waiting for the Puppet side (ca) to answer');

    // Once the CA answers again, the batch that came back signs the CSR that waited.
    h.puppet.down = false;
    await h.settle(STACK_REDRIVE.visibilityTimeoutSeconds + 1);
    expect(h.puppet.state(privateDnsName as string)).toBe('signed');
  });

  it('keep heartbeating through a long outage, up to the ceiling only', async () => {
    const h = new Harness({ redrive: STACK_REDRIVE });
    const { instanceId } = h.cloud.launch();
    h.nodeSubmitsCsr(instanceId);
    h.puppet.down = true;
    h.advance(POLICY.launchCeilingSeconds - 120);
    h.schedule();
    await h.deliver(100);
    expect(h.cloud.group.heartbeats.map((beat) => beat.instanceId)).toEqual([instanceId]);
    h.advance(240);
    h.schedule();
    await h.deliver(100);
    expect(h.cloud.group.heartbeats).toHaveLength(1);
    expect(h.logger.lines.filter((line) => line.message === 'Drift').map((line) => line.attributes)).toContainEqual(
      expect.objectContaining({ instanceId, detail: expect.stringMatching(/^launch exceeded its ceiling/) }),
    );
  });
});

describe('passes while the RBAC token secret is empty (PE, a first deploy)', () => {
  const TOKEN_ARN = 'arn:aws:secretsmanager:us-west-2:123456789012:secret:compile-masters/rbac-token-AbCdEf';

  it('sign and enroll, but start no run: say so, acknowledge, and start it after the token is put', async () => {
    const h = new Harness({ redrive: STACK_REDRIVE });
    h.primaryRun.failure = new SecretMissingError(`The RBAC token secret ${TOKEN_ARN} is empty`, TOKEN_ARN, { hint: 'store the token as plain text' });
    const { instanceId, privateDnsName } = h.cloud.launch();
    await h.settle();
    h.nodeSubmitsCsr(instanceId);
    await h.settle();
    h.nodeEnrolled(instanceId);
    const response = await h.deliver(100);
    h.advance(10);
    await h.settle(15);

    expect(response?.batchItemFailures).toEqual([]);
    expect(h.puppet.state(privateDnsName as string)).toBe('signed');
    expect(h.primaryRun.runs).toEqual([]);
    expect(h.cloud.queue.deadLetters).toEqual([]);
    expect(h.metrics.get(METRIC.secretsMissing)).toBeGreaterThan(0);
    expect(h.logger.lines.filter((line) => line.level === 'error').map((line) => line.attributes)).toContainEqual(
      expect.objectContaining({ secretArn: TOKEN_ARN, fix: 'store the token as plain text', waiting: [instanceId] }),
    );
    expect(h.cloud.group.stateOf(instanceId)).toBe('Pending:Wait');
    // Still alive and waiting: the scheduled pass heartbeats it.
    const beats = h.cloud.group.heartbeats.length;
    h.schedule();
    await h.settle();
    expect(h.cloud.group.heartbeats.length).toBeGreaterThan(beats);

    h.primaryRun.failure = undefined;
    h.schedule();
    await h.settle();
    expect(h.primaryRun.runs).toHaveLength(1);
    h.runsEnd('finished');
    await h.settle(120);
    expect(h.cloud.group.stateOf(instanceId)).toBe('InService');
  });
});
