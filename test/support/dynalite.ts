import type { AddressInfo } from 'node:net';
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient, type CreateTableCommandInput } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import dynalite from 'dynalite';

/** A table's definition as CreateTable takes it, without its name. */
export type TableSchema = Pick<CreateTableCommandInput, 'KeySchema' | 'AttributeDefinitions' | 'BillingMode'>;

export interface Dynalite {
  /** The SDK's document client, as the controller builds it, pointed at this engine. */
  documents: DynamoDBDocumentClient;
  /** Creates a table and waits until it is ACTIVE. */
  createTable(name: string, schema: TableSchema): Promise<void>;
  close(): Promise<void>;
}

/**
 * A real DynamoDB engine in this process, in memory, on an ephemeral loopback port: dynalite
 * evaluates condition and update expressions itself and locks each item for a write, so tests
 * against it show what DynamoDB does with the expressions we send, races included.
 */
export async function startDynalite(): Promise<Dynalite> {
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const client = new DynamoDBClient({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-west-2',
    // dynalite checks that requests are signed, not by whom.
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'dynalite' },
  });
  return {
    documents: DynamoDBDocumentClient.from(client),
    async createTable(name, schema) {
      await client.send(new CreateTableCommand({ TableName: name, ...schema }));
      for (;;) {
        const { Table } = await client.send(new DescribeTableCommand({ TableName: name }));
        if (Table?.TableStatus === 'ACTIVE') return;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
    async close() {
      client.destroy();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };
}
