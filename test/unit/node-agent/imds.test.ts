import { MetadataService } from '@aws-sdk/ec2-metadata-service';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { instanceMetadata } from '../../../node-agent/src/imds';
import { decideShutdown, shutdown } from '../../../node-agent/src/shutdown';
import { startImdsDouble, type ImdsDouble } from '../../../lab/imds-double';
import { memoryLog } from './fakes';

// The same client settings as the shutdown step, against the double.
function metadataFor(double: ImdsDouble) {
  return instanceMetadata(
    new MetadataService({ endpoint: double.url, ec2MetadataV1Disabled: true, httpOptions: { timeout: 300 }, retries: 1, backoff: 0.05 }),
  );
}

let imds: ImdsDouble;
beforeEach(async () => {
  imds = await startImdsDouble({ instanceId: 'i-0123456789abcdef0', region: 'eu-west-1', localHostname: 'ip-10-0-1-23.eu-west-1.compute.internal' });
});
afterEach(() => imds.close());

describe('instance identity over IMDSv2', () => {
  it('reads instance id, region and the private DNS name as certname, with a session token', async () => {
    await expect(metadataFor(imds).identity()).resolves.toEqual({
      instanceId: 'i-0123456789abcdef0',
      region: 'eu-west-1',
      certname: 'ip-10-0-1-23.eu-west-1.compute.internal',
    });
    expect(imds.requests).toContain('PUT /latest/api/token');
    expect(imds.requests).toContain('GET /latest/meta-data/local-hostname');
  });

  it('refuses a hostile local-hostname instead of using it as a certname', async () => {
    imds.metadata.set('local-hostname', '../../etc/passwd');
    await expect(metadataFor(imds).identity()).rejects.toThrow(/identity from instance metadata/);
    await expect(metadataFor(imds).identity()).rejects.toHaveProperty('cause.message', expect.stringMatching(/Refused local-hostname/));
  });

  it('fails clearly when a path is missing', async () => {
    imds.metadata.delete('instance-id');
    await expect(metadataFor(imds).identity()).rejects.toThrow(/HttpTokens=required/);
  });
});

describe('shutdown: Terminated vs reboot', () => {
  it.each([
    ['Terminated', 'terminating'],
    ['InService', 'keep-identity'],
    ['Standby', 'keep-identity'],
    ['Detached', 'keep-identity'],
    ['Warmed:Stopped', 'keep-identity'],
    ['Warmed:Hibernated', 'keep-identity'],
  ])('target-lifecycle-state %s → %s', async (state, verdict) => {
    imds.metadata.set('autoscaling/target-lifecycle-state', state);
    const log = memoryLog();
    await expect(shutdown({ imds: metadataFor(imds), log })).resolves.toMatchObject({ verdict });
    expect(log.lines.at(-1)).toMatchObject({ level: 'info', verdict });
  });

  it('404 (no Auto Scaling transition yet) keeps the identity', async () => {
    const observation = await metadataFor(imds).targetLifecycleState();
    expect(observation).toEqual({ kind: 'not-found' });
    expect(decideShutdown(observation).verdict).toBe('keep-identity');
  });

  it.each([
    ['the token request hangs', { token: 'hang', metadata: 'ok' }],
    ['the metadata request hangs', { token: 'ok', metadata: 'hang' }],
    ['the token is refused', { token: 'forbidden', metadata: 'ok' }],
  ] as const)('keeps the identity, quickly, when %s', async (_name, behaviour) => {
    imds.metadata.set('autoscaling/target-lifecycle-state', 'Terminated');
    imds.behaviour = { ...behaviour };
    const started = Date.now();
    const observation = await metadataFor(imds).targetLifecycleState();
    expect(observation.kind).toBe('unavailable');
    expect(decideShutdown(observation).verdict).toBe('keep-identity');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('keeps the identity when nothing listens at the endpoint', async () => {
    const gone = await startImdsDouble({ instanceId: 'i-0123456789abcdef0', region: 'eu-west-1', localHostname: 'x' });
    const url = gone.url;
    await gone.close();
    const service = new MetadataService({ endpoint: url, ec2MetadataV1Disabled: true, httpOptions: { timeout: 300 }, retries: 0 });
    const decision = decideShutdown(await instanceMetadata(service).targetLifecycleState());
    expect(decision.verdict).toBe('keep-identity');
  });
});
