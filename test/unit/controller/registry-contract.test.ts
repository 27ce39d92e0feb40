import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoRegistry, KEY_REPORT_PREFIX, RUN_KEY, TTL_ATTRIBUTE } from '../../../lambdas/controller/aws/registry';
import { MemoryCloud } from '../../../lab/memory-cloud';
import { startDynalite, type Dynalite, type TableSchema } from '../../support/dynalite';
import { registryContract, type RegistryUnderTest } from '../../support/registry-contract';
import { logicalIdByPath, synthStack } from '../cdk/stack-fixture';

registryContract('memory registry', async () => {
  const registry = new MemoryCloud().registry;
  return { registry, seedItem: async (item) => registry.seedItem(item) };
});

let engine: Dynalite;
/** The registry table exactly as the stack declares it (key schema, billing), read from the synthesized template. */
let schema: TableSchema;
let tables = 0;
/** What each table's DynamoRegistry reported through onInvalid. */
const invalid = new Map<string, unknown[]>();

beforeAll(async () => {
  const { template } = synthStack();
  const properties = template.toJSON().Resources[logicalIdByPath(template, 'LifecycleController/Registry/Resource')].Properties;
  schema = { KeySchema: properties.KeySchema, AttributeDefinitions: properties.AttributeDefinitions, BillingMode: properties.BillingMode };
  engine = await startDynalite();
});
afterAll(() => engine?.close());

/** A new, empty table per case: cases never see each other's items. */
async function dynamoRegistry(): Promise<RegistryUnderTest & { table: string }> {
  tables += 1;
  const table = `registry-${tables}`;
  await engine.createTable(table, schema);
  invalid.set(table, []);
  const registry = new DynamoRegistry(engine.documents, table, (detail) => invalid.get(table)?.push(detail));
  return { table, registry, seedItem: async (item) => void (await engine.documents.send(new PutCommand({ TableName: table, Item: item }))) };
}

registryContract('DynamoRegistry on dynalite', dynamoRegistry);

describe('DynamoRegistry on dynalite, beyond the port', () => {
  const id = 'i-0123456789abcdef0';
  const now = new Date('2026-11-20T12:00:00Z');
  const raw = async (table: string, key: string) => (await engine.documents.send(new GetCommand({ TableName: table, Key: { instanceId: key } }))).Item;

  it('tells onInvalid about every damaged item it reads', async () => {
    const { table, registry, seedItem } = await dynamoRegistry();
    await seedItem({ instanceId: id, certname: '../x', state: 'signed', createdAt: 'c', updatedAt: 'u' });
    await seedItem({ instanceId: '../i-1', certname: 'a.internal', state: 'signed', createdAt: 'c', updatedAt: 'u' });
    await registry.list();
    await registry.get(id);
    expect(invalid.get(table)).toEqual([
      { instanceId: expect.any(String), problem: expect.any(String) },
      { instanceId: expect.any(String), problem: expect.any(String) },
      { instanceId: id, problem: expect.stringMatching(/^its certname "\.\.\/x"/) },
    ]);
  });

  it('stores only what the checked request names, even when handed a wider object', async () => {
    const { table, registry } = await dynamoRegistry();
    const checked = { publicKeySha256: 'ab'.repeat(32), dnsAltNames: [], puppetExtensions: {}, commonName: 'extra' };
    await registry.recordSigned(id, 'a.internal', checked, now);
    expect((await raw(table, id))?.checked).toEqual({ publicKeySha256: 'ab'.repeat(32), dnsAltNames: [], puppetExtensions: {} });
  });

  it('gives key reports a TTL of 14 days from the report, under a key that is not an instance id', async () => {
    const { table, registry } = await dynamoRegistry();
    await registry.recordKeyReport(id, { publicKeySha256: 'ab'.repeat(32), reportedAt: now.toISOString() });
    expect(await raw(table, KEY_REPORT_PREFIX + id)).toMatchObject({ [TTL_ATTRIBUTE]: now.getTime() / 1000 + 14 * 24 * 3600 });
  });

  it('reads a damaged key report as none, and a damaged run record as empty at its version, which still guards the next write', async () => {
    const { table, registry, seedItem } = await dynamoRegistry();
    await seedItem({ instanceId: KEY_REPORT_PREFIX + id, publicKeySha256: 7 });
    await expect(registry.keyReport(id)).resolves.toBeUndefined();
    await seedItem({ instanceId: RUN_KEY, version: 3, pending: 'not a list' });
    await expect(registry.getRun()).resolves.toEqual({ version: 3, pending: [] });
    await expect(registry.putRun({ pending: [] }, 2)).resolves.toBe(false);
    await expect(registry.putRun({ pending: [id] }, 3)).resolves.toBe(true);
    await expect(registry.getRun()).resolves.toEqual({ version: 4, pending: [id] });
    expect(invalid.get(table)).toHaveLength(2);
  });
});
