import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCloudSnapshot, SNAPSHOT_FILE } from '../../../cli/lab-snapshot';
import { ConfigError } from '../../../lib/errors';

function labWith(snapshot: string | undefined): string {
  const dir = mkdtempSync(join(tmpdir(), 'cli-snapshot-'));
  if (snapshot !== undefined) {
    mkdirSync(join(dir, 'scenario'));
    writeFileSync(join(dir, SNAPSHOT_FILE), snapshot);
  }
  return dir;
}

const at = '2026-01-01T00:00:00.000Z';
const base = {
  writtenAt: at,
  members: [{ instanceId: 'i-0a', lifecycleState: 'InService' }],
  instances: [{ instanceId: 'i-0a', state: 'running', privateDnsName: 'ip-10-0-0-4.us-west-2.compute.internal', launchTime: at }],
  registry: [{ instanceId: 'i-0a', certname: 'ip-10-0-0-4.us-west-2.compute.internal', state: 'in-service', createdAt: at, updatedAt: at }],
};

describe('the lab scenario\'s cloud snapshot', () => {
  it('is absent until `npm run lab` writes it', () => {
    expect(readCloudSnapshot(labWith(undefined))).toBeUndefined();
  });

  it('reads members, instances and registry; target health only when the scenario simulated it', () => {
    const plain = readCloudSnapshot(labWith(JSON.stringify(base)))!;
    expect(plain.members).toEqual(base.members);
    expect(plain.instances.get('i-0a')).toMatchObject({ state: 'running', launchTime: new Date(at) });
    expect(plain.targets).toBeUndefined();
    const withTargets = readCloudSnapshot(labWith(JSON.stringify({ ...base, targets: [{ instanceId: 'i-0a', port: 8142, state: 'healthy' }, { instanceId: 'i-0a', port: 8140, state: 'draining' }] })))!;
    expect(withTargets.targets).toEqual(new Map([['i-0a', ['8140:draining', '8142:healthy']]]));
  });

  it('refuses a snapshot that does not parse, saying how to recover', () => {
    expect(() => readCloudSnapshot(labWith('{"members": 1}'))).toThrow(ConfigError);
    expect(() => readCloudSnapshot(labWith('not json'))).toThrow(/does not parse — run `npm run lab` again, or delete the file/);
  });
});
