import * as z from 'zod';
import { assertCertname } from '../certname';
import { PuppetApiError } from '../errors';
import { PuppetEndpoint, parseJson, type EndpointOptions } from './http';

const DeployAnswer = z.object({ job: z.object({ id: z.string(), name: z.string() }) });

export const JobStateSchema = z.enum(['new', 'ready', 'running', 'stopping', 'stopped', 'finished', 'failed']);
export type JobState = z.infer<typeof JobStateSchema>;
export const TERMINAL_JOB_STATES: readonly JobState[] = ['stopped', 'finished', 'failed'];

export const JobSchema = z.looseObject({
  id: z.string(),
  name: z.string(),
  state: JobStateSchema,
  node_count: z.number().optional(),
  status: z.array(z.looseObject({ state: z.string(), enter_time: z.string().nullable().optional(), exit_time: z.string().nullable().optional() })).optional(),
});
export type Job = z.infer<typeof JobSchema>;

export interface DeployRequest {
  environment: string;
  nodes: readonly string[];
  description: string;
}

/**
 * PE's orchestrator (port 8143). The RBAC token is held in memory and sent only in the
 * X-Authentication header; it never appears in errors.
 */
export class OrchestratorClient {
  private readonly endpoint: PuppetEndpoint;
  private readonly token: string;

  constructor(options: Omit<EndpointOptions, 'server'> & { token: string }) {
    const { token, ...endpoint } = options;
    this.endpoint = new PuppetEndpoint({ ...endpoint, server: 'orchestrator' });
    this.token = token;
  }

  /** Starts a Puppet run on the given nodes; answers the job's name (its number). */
  async deploy(request: DeployRequest): Promise<{ id: string; name: string }> {
    request.nodes.forEach((node) => assertCertname(node));
    const result = await this.endpoint.call({
      operation: 'command/deploy',
      method: 'POST',
      path: '/orchestrator/v1/command/deploy',
      headers: { 'x-authentication': this.token },
      body: { environment: request.environment, scope: { nodes: request.nodes }, description: request.description },
      accept: [200, 202],
      // A deploy the orchestrator accepted but did not answer in time would start a second run on
      // the primary if repeated; the controller gives the changes back and its next pass asks again.
      retry: false,
    });
    return parseJson(DeployAnswer, result, 'orchestrator', 'command/deploy').job;
  }

  /** The job, or undefined when the orchestrator has none by that name. */
  async getJob(name: string): Promise<Job | undefined> {
    if (!/^\d+$/.test(name)) throw new TypeError(`orchestrator job name must be numeric, got ${JSON.stringify(name)}`);
    const result = await this.endpoint.call({
      operation: 'job status',
      method: 'GET',
      path: `/orchestrator/v1/jobs/${name}`,
      headers: { 'x-authentication': this.token },
      accept: [200, 404],
    });
    return result.status === 404 ? undefined : parseJson(JobSchema, result, 'orchestrator', 'job status');
  }

  /** Polls a job until it reaches a terminal state or the deadline passes. */
  async waitForJob(name: string, options: { timeoutMs: number; pollMs?: number; sleep?: (ms: number) => Promise<void> }): Promise<Job> {
    const sleep = options.sleep ?? ((ms: number) => new Promise((resolve) => setTimeout(resolve, ms)));
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      const job = await this.getJob(name);
      if (!job) throw new PuppetApiError({ server: 'orchestrator', url: this.endpoint.baseUrl, operation: 'job status', status: 404, detail: `no job ${name}` });
      if (TERMINAL_JOB_STATES.includes(job.state)) return job;
      if (Date.now() >= deadline) {
        throw new PuppetApiError(
          { server: 'orchestrator', url: this.endpoint.baseUrl, operation: 'job status', detail: `job ${name} still ${job.state} after ${options.timeoutMs} ms` },
          { hint: 'look at the job in the PE console; the primary may be slow or the run stuck' },
        );
      }
      await sleep(options.pollMs ?? 2_000);
    }
  }

  close(): Promise<void> {
    return this.endpoint.close();
  }
}
