import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoLease } from '../../../lambdas/controller/aws/lease';
import { DynamoRegistry, RECONCILE_LEASE_KEY } from '../../../lambdas/controller/aws/registry';
import type { LeasePort } from '../../../lambdas/controller/ports';
import { LEASE_POLL_MILLISECONDS, LEASE_SECONDS, LeaseBusyError, whileHoldingLease } from '../../../lambdas/controller/reconcile-lease';
import { ManualClock, MemoryCloud } from '../../../lab/memory-cloud';
import { NOW, RecordingLogger } from './support';

// dynalite (a DynamoDB engine on LevelDB, in memory here) ships no types.
const dynalite = createRequire(import.meta.url)('dynalite') as (options: { createTableMs: number }) => Server;

const at = (seconds: number) => new Date(NOW.getTime() + seconds * 1000);
const until = (seconds: number) => ({ lease: at(seconds + LEASE_SECONDS), nextTurn: at(seconds + 5) });

let server: Server;
let document: DynamoDBDocumentClient;
let tables = 0;

beforeAll(async () => {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  server = dynalite({ createTableMs: 0 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = new DynamoDBClient({
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    region: 'us-west-2',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  document = DynamoDBDocumentClient.from(client);
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** A fresh registry table, keyed as the stack keys it. */
async function table(): Promise<string> {
  const name = `registry-${++tables}`;
  await document.send(
    new CreateTableCommand({
      TableName: name,
      KeySchema: [{ AttributeName: 'instanceId', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'instanceId', AttributeType: 'S' }],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  return name;
}

const leases: Array<[string, () => Promise<LeasePort>]> = [
  ['DynamoDB (dynalite)', async () => new DynamoLease(document, await table())],
  ['memory', async () => new MemoryCloud({ clock: () => NOW }).lease],
];

describe.each(leases)('reconcile lease: %s', (_name, make) => {
  it('one holder at a time; the waiter has the next turn and a later comer cannot cut in', async () => {
    const lease = await make();
    expect(await lease.acquire('a', at(0), until(0))).toBe(true);
    expect(await lease.acquire('b', at(1), until(1))).toBe(false);
    await lease.release('a');
    expect(await lease.acquire('c', at(2), until(2))).toBe(false);
    expect(await lease.acquire('b', at(3), until(3))).toBe(true);
    // b's turn was used: c may wait for the next one.
    expect(await lease.acquire('c', at(4), until(4))).toBe(false);
    await lease.release('b');
    expect(await lease.acquire('c', at(5), until(5))).toBe(true);
  });

  it("an expired lease is taken over, and its old holder's release leaves the new holder's alone", async () => {
    const lease = await make();
    expect(await lease.acquire('a', at(0), until(0))).toBe(true);
    expect(await lease.acquire('b', at(LEASE_SECONDS - 1), until(LEASE_SECONDS - 1))).toBe(false);
    expect(await lease.acquire('b', at(LEASE_SECONDS + 1), until(LEASE_SECONDS + 1))).toBe(true);
    await lease.release('a');
    expect(await lease.acquire('c', at(LEASE_SECONDS + 2), until(LEASE_SECONDS + 2))).toBe(false);
  });

  it('a waiter that stops asking loses its turn once it lapses', async () => {
    const lease = await make();
    expect(await lease.acquire('a', at(0), until(0))).toBe(true);
    expect(await lease.acquire('b', at(1), until(1))).toBe(false);
    await lease.release('a');
    expect(await lease.acquire('c', at(6), until(6))).toBe(false);
    expect(await lease.acquire('c', at(7), until(7))).toBe(true);
  });
});

describe('the lease item in the registry table', () => {
  it('is no registry entry, damaged or not', async () => {
    const name = await table();
    const lease = new DynamoLease(document, name);
    await lease.acquire('a', at(0), until(0));
    await document.send(new PutCommand({ TableName: name, Item: { instanceId: 'i-0123456789abcdef0', certname: 'ip-10-0-1-1.us-west-2.compute.internal', state: 'in-service', createdAt: 'x', updatedAt: 'x' } }));
    const invalid: unknown[] = [];
    const listing = await new DynamoRegistry(document, name, (detail) => invalid.push(detail)).list();
    expect(listing.entries.map((entry) => entry.instanceId)).toEqual(['i-0123456789abcdef0']);
    expect(listing.damaged).toEqual([]);
    expect(invalid).toEqual([]);
    expect(RECONCILE_LEASE_KEY).not.toMatch(/^i-/);
  });
});

describe('whileHoldingLease', () => {
  function turn(cloud: MemoryCloud, clock: ManualClock, holder: string, waitSeconds: number) {
    return {
      lease: cloud.lease,
      holder,
      clock: clock.now,
      sleep: async (milliseconds: number) => clock.advance(milliseconds / 1000),
      waitUntil: new Date(clock.now().getTime() + waitSeconds * 1000),
      logger: new RecordingLogger(),
    };
  }

  it('waits while another holds it, then runs the pass holding it and releases it', async () => {
    const clock = new ManualClock(NOW);
    const cloud = new MemoryCloud({ clock: clock.now });
    await cloud.lease.acquire('other', clock.now(), { lease: at(10), nextTurn: at(5) });
    let heldDuringPass: string | undefined;
    const answer = await whileHoldingLease(turn(cloud, clock, 'me', 60), async () => {
      heldDuringPass = cloud.lease.peek()?.holder;
      return 'done';
    });
    expect(answer).toBe('done');
    expect(heldDuringPass).toBe('me');
    expect(clock.now().getTime() - NOW.getTime()).toBeGreaterThan(10_000);
    expect(cloud.lease.peek()).toBeUndefined();
  });

  it('gives up at its deadline without running the pass: the batch comes back later', async () => {
    const clock = new ManualClock(NOW);
    const cloud = new MemoryCloud({ clock: clock.now });
    await cloud.lease.acquire('other', clock.now(), { lease: at(LEASE_SECONDS), nextTurn: at(5) });
    let ran = false;
    await expect(
      whileHoldingLease(turn(cloud, clock, 'me', 30), async () => {
        ran = true;
      }),
    ).rejects.toThrow(LeaseBusyError);
    expect(ran).toBe(false);
    expect(clock.now().getTime() - NOW.getTime()).toBeLessThanOrEqual(30_000);
    expect(cloud.callsOf('lease.acquire').length).toBeGreaterThanOrEqual(30_000 / LEASE_POLL_MILLISECONDS);
  });

  it("releases after a failed pass, and a failed release leaves the pass's outcome as it was", async () => {
    const clock = new ManualClock(NOW);
    const cloud = new MemoryCloud({ clock: clock.now });
    await expect(whileHoldingLease(turn(cloud, clock, 'me', 60), () => Promise.reject(new Error('pass failed')))).rejects.toThrow('pass failed');
    expect(cloud.lease.peek()).toBeUndefined();

    cloud.failNext('lease.release', new Error('DynamoDB unavailable'));
    const logged = turn(cloud, clock, 'me again', 60);
    expect(await whileHoldingLease(logged, async () => 'done')).toBe('done');
    expect(logged.logger.lines.map((line) => line.message)).toContain('Could not release the reconcile lease; it expires by itself');
  });
});
