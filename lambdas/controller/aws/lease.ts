import { type DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { type AwsCall, sdkCall } from '../../../lib/aws-calls';
import type { LeasePort } from '../ports';
import { errorName, toAwsCallError } from './call';
import { RECONCILE_LEASE_KEY } from './registry';

/** The calls below (lib-dynamodb's UpdateCommand sends UpdateItem), on the registry table. */
export const LEASE_CALLS: readonly AwsCall[] = [sdkCall('dynamodb:UpdateItem', 'registryTable')];

/**
 * The reconcile lease: one item of the registry table with its holder and a waiter's claim on the
 * next turn, each changed only by a conditional update. Times are ISO 8601 UTC strings, which
 * compare in time order, as the registry's claims do.
 */
export class DynamoLease implements LeasePort {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  async acquire(holder: string, now: Date, until: { lease: Date; nextTurn: Date }): Promise<boolean> {
    const taken = await this.update({
      UpdateExpression: 'SET holder = :holder, leaseExpiresAt = :until REMOVE nextHolder, nextTurnUntil',
      ConditionExpression:
        '(attribute_not_exists(holder) OR leaseExpiresAt < :now) AND (attribute_not_exists(nextHolder) OR nextHolder = :holder OR nextTurnUntil < :now)',
      ExpressionAttributeValues: { ':holder': holder, ':now': now.toISOString(), ':until': until.lease.toISOString() },
    });
    if (taken) return true;
    await this.update({
      UpdateExpression: 'SET nextHolder = :holder, nextTurnUntil = :until',
      ConditionExpression: 'attribute_not_exists(nextHolder) OR nextHolder = :holder OR nextTurnUntil < :now',
      ExpressionAttributeValues: { ':holder': holder, ':now': now.toISOString(), ':until': until.nextTurn.toISOString() },
    });
    return false;
  }

  async release(holder: string): Promise<void> {
    // Only the holder's attributes: a waiter's claim on the next turn stays.
    await this.update({
      UpdateExpression: 'REMOVE holder, leaseExpiresAt',
      ConditionExpression: 'holder = :holder',
      ExpressionAttributeValues: { ':holder': holder },
    });
  }

  /** False when the condition does not hold (expired and taken over, another's turn, ...). */
  private async update(input: Pick<ConstructorParameters<typeof UpdateCommand>[0], 'UpdateExpression' | 'ConditionExpression' | 'ExpressionAttributeValues'>): Promise<boolean> {
    try {
      await this.client.send(new UpdateCommand({ TableName: this.table, Key: { instanceId: RECONCILE_LEASE_KEY }, ...input }));
      return true;
    } catch (error) {
      if (errorName(error) === 'ConditionalCheckFailedException') return false;
      throw toAwsCallError('UpdateItem', error);
    }
  }
}
