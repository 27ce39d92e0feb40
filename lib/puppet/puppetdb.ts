import * as z from 'zod';
import { assertCertname } from '../certname';
import { PuppetEndpoint, parseJson, type EndpointOptions } from './http';

export const PdbNodeSchema = z.looseObject({
  certname: z.string(),
  deactivated: z.string().nullable().optional(),
  expired: z.string().nullable().optional(),
  facts_timestamp: z.string().nullable().optional(),
  catalog_timestamp: z.string().nullable().optional(),
  report_timestamp: z.string().nullable().optional(),
});
export type PdbNode = z.infer<typeof PdbNodeSchema>;

const CommandAnswer = z.object({ uuid: z.string() });

/** PuppetDB's command and query APIs over TLS (port 8081), with an allow-listed certificate. */
export class PuppetDbClient {
  private readonly endpoint: PuppetEndpoint;

  constructor(options: Omit<EndpointOptions, 'server'>) {
    this.endpoint = new PuppetEndpoint({ ...options, server: 'puppetdb' });
  }

  /**
   * Queues `deactivate_node` v3. The producer timestamp orders it against the node's own
   * commands: data the node produced earlier cannot reactivate it. Repeating it is harmless.
   */
  async deactivateNode(certname: string, producerTimestamp: Date = new Date()): Promise<{ uuid: string }> {
    return this.submitCommand('deactivate_node', 3, certname, {
      certname,
      producer_timestamp: producerTimestamp.toISOString(),
    });
  }

  /** Any PuppetDB command (`/pdb/cmd/v1` with query parameters, not the deprecated envelope). */
  async submitCommand(command: string, version: number, certname: string, payload: object): Promise<{ uuid: string }> {
    assertCertname(certname);
    const result = await this.endpoint.call({
      operation: `${command} v${version}`,
      method: 'POST',
      path: '/pdb/cmd/v1',
      query: { command, version: String(version), certname },
      body: payload,
      accept: [200],
    });
    return parseJson(CommandAnswer, result, 'puppetdb', command);
  }

  /** The node's record; undefined when PuppetDB has never heard of it. */
  async getNode(certname: string): Promise<PdbNode | undefined> {
    const result = await this.endpoint.call({
      operation: 'query node',
      method: 'GET',
      path: `/pdb/query/v4/nodes/${encodeURIComponent(assertCertname(certname))}`,
      accept: [200, 404],
    });
    return result.status === 404 ? undefined : parseJson(PdbNodeSchema, result, 'puppetdb', 'query node');
  }

  /**
   * Nodes matching an AST query, including deactivated ones when asked (PuppetDB hides them by
   * default). Used to observe many nodes in one round trip.
   */
  async queryNodes(query?: unknown[]): Promise<PdbNode[]> {
    const result = await this.endpoint.call({
      operation: 'query nodes',
      method: 'GET',
      path: '/pdb/query/v4/nodes',
      query: query ? { query: JSON.stringify(query) } : undefined,
      accept: [200],
    });
    return parseJson(z.array(PdbNodeSchema), result, 'puppetdb', 'query nodes');
  }

  close(): Promise<void> {
    return this.endpoint.close();
  }
}
