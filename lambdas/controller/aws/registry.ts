import { DeleteCommand, DynamoDBDocumentClient, GetCommand, paginateScan, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import * as z from 'zod';
import { type AwsCall, sdkCall } from '../../../lib/aws-calls';
import { certnameProblem, describeUntrusted } from '../../../lib/certname';
import type { CertificateContents } from '../../../lib/puppet/csr';
import type { CheckedRequest, DamagedEntry, KeyReport, PurgeStep, RegistryEntry, RegistryListing, RegistryState, RunRecord } from '../model';
import type { RegistryPort } from '../ports';
import { awsCall, errorName, toAwsCallError } from './call';

/** The calls below (lib-dynamodb's commands by DynamoDB's names); the stack grants exactly these. */
export const REGISTRY_CALLS: readonly AwsCall[] = [
  sdkCall('dynamodb:GetItem', 'registryTable'),
  sdkCall('dynamodb:Scan', 'registryTable'),
  sdkCall('dynamodb:UpdateItem', 'registryTable'),
  sdkCall('dynamodb:PutItem', 'registryTable'),
  sdkCall('dynamodb:DeleteItem', 'registryTable'),
];

/** The run record shares the table; its key can never be an instance id. */
export const RUN_KEY = 'orchestrator-run';
/** So does the reconcile lease (aws/lease.ts). */
export const RECONCILE_LEASE_KEY = 'reconcile-lease';
/** Key reports share it too, under keys that are not instance ids either. */
export const KEY_REPORT_PREFIX = 'key-report:';
/** DynamoDB's TTL deletes a report this long after it was made: a launch's whole life, with room. */
const KEY_REPORT_TTL_SECONDS = 14 * 24 * 3600;
/** The table's TTL attribute (the stack turns TTL on for it). */
export const TTL_ATTRIBUTE = 'expiresAt';

const INSTANCE_ID = /^i-[0-9a-f]+$/;

export const LIVE_STATES: readonly RegistryState[] = ['signed', 'converging', 'in-service', 'stalled'];

const EntrySchema = z.object({
  instanceId: z.string(),
  certname: z.string(),
  state: z.enum(['signed', 'converging', 'in-service', 'stalled', 'purging', 'purged']),
  createdAt: z.string(),
  updatedAt: z.string(),
  claimedAt: z.string().optional(),
  checked: z
    .object({ publicKeySha256: z.string(), dnsAltNames: z.array(z.string()), puppetExtensions: z.record(z.string(), z.string()) })
    .optional(),
  issued: z.object({ serial: z.string(), sha256Fingerprint: z.string(), verifiedAt: z.string() }).optional(),
  purge: z.object({ startedAt: z.string(), ca: z.string().optional(), puppetdb: z.string().optional() }).optional(),
  unhealthySince: z.string().optional(),
  bootedAt: z.string().optional(),
});

const KeyReportSchema = z.object({ publicKeySha256: z.string(), reportedAt: z.string() });

const RunSchema = z.object({
  version: z.number().int(),
  pending: z.array(z.string()).default([]),
  requestedAt: z.string().optional(),
  job: z
    .object({ name: z.string().optional(), claimedAt: z.string(), covers: z.array(z.string()), attempt: z.number().int() })
    .optional(),
  last: z
    .object({ name: z.string(), outcome: z.enum(['finished', 'failed']), covers: z.array(z.string()), endedAt: z.string() })
    .optional(),
});

/**
 * One registry item, or why it cannot be trusted. Shared with the in-memory registry of the tests,
 * so both quarantine exactly the same items.
 */
export function readRegistryItem(item: Record<string, unknown>): { entry: RegistryEntry } | { damaged: DamagedEntry } {
  const key = typeof item.instanceId === 'string' ? item.instanceId : JSON.stringify(item.instanceId) ?? 'undefined';
  if (typeof item.instanceId !== 'string' || !INSTANCE_ID.test(item.instanceId)) {
    return { damaged: { key, problem: `its key ${describeUntrusted(key)} is not an instance id` } };
  }
  const instanceId = item.instanceId;
  const parsed = EntrySchema.safeParse(item);
  if (!parsed.success) return { damaged: { key, instanceId, problem: `it does not parse: ${z.prettifyError(parsed.error)}` } };
  const problem = certnameProblem(parsed.data.certname);
  if (problem) return { damaged: { key, instanceId, problem: `its certname ${describeUntrusted(parsed.data.certname)} ${problem}` } };
  return { entry: parsed.data };
}

/**
 * The registry table (partition key `instanceId`). Reads are strongly consistent and every write
 * that decides ownership is conditional, so two passes can never both claim an instance. Attribute
 * names in expressions are aliased where DynamoDB might reserve the word.
 */
export class DynamoRegistry implements RegistryPort {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
    /** Told about every item that cannot be trusted (list() also reports those it finds). */
    private readonly onInvalid: (detail: { instanceId: unknown; problem: string }) => void,
  ) {}

  async get(instanceId: string): Promise<RegistryEntry | undefined> {
    const answer = await awsCall('GetItem', () =>
      this.client.send(new GetCommand({ TableName: this.table, Key: { instanceId }, ConsistentRead: true })),
    );
    return answer.Item ? this.entry(answer.Item) : undefined;
  }

  async list(): Promise<RegistryListing> {
    const listing: RegistryListing = { entries: [], damaged: [] };
    await awsCall('Scan', async () => {
      for await (const page of paginateScan({ client: this.client }, { TableName: this.table, ConsistentRead: true })) {
        for (const item of page.Items ?? []) {
          if (item.instanceId === RUN_KEY || item.instanceId === RECONCILE_LEASE_KEY || String(item.instanceId).startsWith(KEY_REPORT_PREFIX)) continue;
          const read = readRegistryItem(item);
          if ('entry' in read) {
            listing.entries.push(read.entry);
          } else {
            listing.damaged.push(read.damaged);
            this.onInvalid({ instanceId: item.instanceId, problem: read.damaged.problem });
          }
        }
      }
    });
    return listing;
  }

  recordSigned(instanceId: string, certname: string, checked: CheckedRequest, now: Date): Promise<boolean> {
    return this.conditionalUpdate({
      Key: { instanceId },
      UpdateExpression:
        'SET certname = :certname, #state = :signed, #checked = :checked, updatedAt = :now, createdAt = if_not_exists(createdAt, :now) REMOVE claimedAt, #issued, #purge, unhealthySince',
      ConditionExpression: 'attribute_not_exists(instanceId) OR (certname = :certname AND NOT #state IN (:purging, :stalled))',
      ExpressionAttributeNames: { '#state': 'state', '#checked': 'checked', '#issued': 'issued', '#purge': 'purge' },
      ExpressionAttributeValues: {
        ':certname': certname,
        ':signed': 'signed',
        ':purging': 'purging',
        ':stalled': 'stalled',
        ':now': now.toISOString(),
        // Only what the type names: the caller may hand over a wider object.
        ':checked': { publicKeySha256: checked.publicKeySha256, dnsAltNames: checked.dnsAltNames, puppetExtensions: checked.puppetExtensions },
      },
    });
  }

  recordIssued(instanceId: string, certificate: Pick<CertificateContents, 'serial' | 'sha256Fingerprint' | 'publicKeySha256'>, now: Date): Promise<boolean> {
    const liveValues = Object.fromEntries(LIVE_STATES.map((state, index) => [`:live${index}`, state]));
    return this.conditionalUpdate({
      Key: { instanceId },
      UpdateExpression: 'SET #issued = :issued, updatedAt = :now',
      ConditionExpression: `#state IN (${Object.keys(liveValues).join(', ')}) AND #checked.publicKeySha256 = :key`,
      ExpressionAttributeNames: { '#state': 'state', '#checked': 'checked', '#issued': 'issued' },
      ExpressionAttributeValues: {
        ...liveValues,
        ':key': certificate.publicKeySha256,
        ':now': now.toISOString(),
        ':issued': { serial: certificate.serial.toString(), sha256Fingerprint: certificate.sha256Fingerprint, verifiedAt: now.toISOString() },
      },
    });
  }

  async transition(instanceId: string, from: readonly RegistryState[], to: RegistryState, now: Date): Promise<boolean> {
    // No state to move from moves nothing; DynamoDB would refuse the empty IN () as a syntax error.
    if (from.length === 0) return false;
    const fromValues = Object.fromEntries(from.map((state, index) => [`:from${index}`, state]));
    return this.conditionalUpdate({
      Key: { instanceId },
      UpdateExpression: `SET #state = :to, updatedAt = :now${to === 'purged' ? ' REMOVE claimedAt' : ''}`,
      ConditionExpression: `#state IN (${Object.keys(fromValues).join(', ')})`,
      ExpressionAttributeNames: { '#state': 'state' },
      ExpressionAttributeValues: { ...fromValues, ':to': to, ':now': now.toISOString() },
    });
  }

  async claimPurge(instanceId: string, now: Date, staleBefore: Date): Promise<RegistryEntry | undefined> {
    const liveValues = Object.fromEntries(LIVE_STATES.map((state, index) => [`:live${index}`, state]));
    let attributes: Record<string, unknown> | undefined;
    try {
      const answer = await this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { instanceId },
          // A re-claim keeps the purge's start and steps: the retry goes on where the last attempt stopped.
          UpdateExpression: 'SET #state = :purging, claimedAt = :now, updatedAt = :now, #purge = if_not_exists(#purge, :purge)',
          ConditionExpression: `#state IN (${Object.keys(liveValues).join(', ')}) OR (#state = :purging AND (attribute_not_exists(claimedAt) OR claimedAt < :stale))`,
          ExpressionAttributeNames: { '#state': 'state', '#purge': 'purge' },
          ExpressionAttributeValues: { ...liveValues, ':purging': 'purging', ':now': now.toISOString(), ':stale': staleBefore.toISOString(), ':purge': { startedAt: now.toISOString() } },
          ReturnValues: 'ALL_NEW',
        }),
      );
      attributes = answer.Attributes;
    } catch (error) {
      if (errorName(error) === 'ConditionalCheckFailedException') return undefined;
      throw toAwsCallError('UpdateItem', error);
    }
    return attributes && this.entry(attributes);
  }

  recordPurgeStep(instanceId: string, startedAt: string, step: PurgeStep, now: Date): Promise<boolean> {
    return this.conditionalUpdate({
      Key: { instanceId },
      UpdateExpression: 'SET #purge.#step = :now, updatedAt = :now',
      ConditionExpression: '#state = :purging AND #purge.startedAt = :startedAt',
      ExpressionAttributeNames: { '#state': 'state', '#purge': 'purge', '#step': step },
      ExpressionAttributeValues: { ':purging': 'purging', ':startedAt': startedAt, ':now': now.toISOString() },
    });
  }

  recordHealth(instanceId: string, since: string | undefined, now: Date): Promise<boolean> {
    if (since === undefined) {
      return this.conditionalUpdate({
        Key: { instanceId },
        UpdateExpression: 'SET updatedAt = :now REMOVE unhealthySince',
        ConditionExpression: 'attribute_exists(unhealthySince)',
        ExpressionAttributeValues: { ':now': now.toISOString() },
      });
    }
    return this.conditionalUpdate({
      Key: { instanceId },
      UpdateExpression: 'SET unhealthySince = :since, updatedAt = :now',
      ConditionExpression: '#state = :inService AND attribute_not_exists(unhealthySince)',
      ExpressionAttributeNames: { '#state': 'state' },
      ExpressionAttributeValues: { ':since': since, ':inService': 'in-service', ':now': now.toISOString() },
    });
  }

  async recordBooted(instanceId: string, bootedAt: string): Promise<void> {
    await this.conditionalUpdate({
      Key: { instanceId },
      UpdateExpression: 'SET bootedAt = :at',
      // Notices can arrive out of order; an older boot never replaces a newer one.
      ConditionExpression: 'attribute_exists(instanceId) AND (attribute_not_exists(bootedAt) OR bootedAt < :at)',
      ExpressionAttributeValues: { ':at': bootedAt },
    });
  }

  async recordKeyReport(instanceId: string, report: KeyReport): Promise<void> {
    await this.conditionalUpdate({
      Key: { instanceId: KEY_REPORT_PREFIX + instanceId },
      UpdateExpression: 'SET publicKeySha256 = :key, reportedAt = :at, #ttl = :ttl',
      // Reports can arrive out of order; an older one never replaces a newer.
      ConditionExpression: 'attribute_not_exists(reportedAt) OR reportedAt <= :at',
      ExpressionAttributeNames: { '#ttl': TTL_ATTRIBUTE },
      ExpressionAttributeValues: {
        ':key': report.publicKeySha256,
        ':at': report.reportedAt,
        ':ttl': Math.floor(Date.parse(report.reportedAt) / 1000) + KEY_REPORT_TTL_SECONDS,
      },
    });
  }

  async keyReport(instanceId: string): Promise<KeyReport | undefined> {
    const answer = await awsCall('GetItem', () =>
      this.client.send(new GetCommand({ TableName: this.table, Key: { instanceId: KEY_REPORT_PREFIX + instanceId }, ConsistentRead: true })),
    );
    if (!answer.Item) return undefined;
    const parsed = KeyReportSchema.safeParse(answer.Item);
    if (parsed.success) return parsed.data;
    // Unreadable: as if the instance had not reported, so nothing of its is signed until it does again.
    this.onInvalid({ instanceId: answer.Item.instanceId, problem: parsed.error.message });
    return undefined;
  }

  async consumeKeyReport(instanceId: string, publicKeySha256: string): Promise<void> {
    try {
      await this.client.send(
        new DeleteCommand({
          TableName: this.table,
          Key: { instanceId: KEY_REPORT_PREFIX + instanceId },
          ConditionExpression: 'publicKeySha256 = :key',
          ExpressionAttributeValues: { ':key': publicKeySha256 },
        }),
      );
    } catch (error) {
      // Gone already, or a newer report: either way nothing of this key is left to consume.
      if (errorName(error) !== 'ConditionalCheckFailedException') throw toAwsCallError('DeleteItem', error);
    }
  }

  async getRun(): Promise<RunRecord> {
    const answer = await awsCall('GetItem', () =>
      this.client.send(new GetCommand({ TableName: this.table, Key: { instanceId: RUN_KEY }, ConsistentRead: true })),
    );
    if (!answer.Item) return { version: 0, pending: [] };
    const parsed = RunSchema.safeParse(answer.Item);
    if (parsed.success) return parsed.data;
    // A damaged record must not wedge every pass: start over from an empty one (its version
    // still guards the next write).
    this.onInvalid({ instanceId: RUN_KEY, problem: parsed.error.message });
    return { version: typeof answer.Item.version === 'number' ? answer.Item.version : 0, pending: [] };
  }

  async putRun(next: Omit<RunRecord, 'version'>, expectedVersion: number): Promise<boolean> {
    try {
      await this.client.send(
        new PutCommand({
          TableName: this.table,
          // Through JSON: the record is plain data, and DynamoDB refuses undefined attributes.
          Item: JSON.parse(JSON.stringify({ ...next, instanceId: RUN_KEY, version: expectedVersion + 1 })) as Record<string, unknown>,
          ConditionExpression: expectedVersion === 0 ? 'attribute_not_exists(instanceId) OR version = :expected' : 'version = :expected',
          ExpressionAttributeValues: { ':expected': expectedVersion },
        }),
      );
      return true;
    } catch (error) {
      if (errorName(error) === 'ConditionalCheckFailedException') return false;
      throw toAwsCallError('PutItem', error);
    }
  }

  private async conditionalUpdate(input: Omit<ConstructorParameters<typeof UpdateCommand>[0], 'TableName'>): Promise<boolean> {
    try {
      await this.client.send(new UpdateCommand({ TableName: this.table, ...input }));
      return true;
    } catch (error) {
      if (errorName(error) === 'ConditionalCheckFailedException') return false;
      throw toAwsCallError('UpdateItem', error);
    }
  }

  private entry(item: Record<string, unknown>): RegistryEntry | undefined {
    const read = readRegistryItem(item);
    if ('entry' in read) return read.entry;
    this.onInvalid({ instanceId: item.instanceId, problem: read.damaged.problem });
    return undefined;
  }
}
