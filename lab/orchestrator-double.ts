/**
 * A contract double of the PE orchestrator API (no open-source build exists), following PE's
 * documented shapes: `POST /orchestrator/v1/command/deploy`, `GET /orchestrator/v1/jobs[/:id[/nodes|/report]]`,
 * RBAC token in `X-Authentication`, errors as `{kind, msg, details}`. A deploy really runs
 * `puppet agent --test` for the primary against the lab's Puppet Server (lab/primary-puppet.ts);
 * other nodes are not connected to anything here, so they error, as unconnected nodes do in PE.
 *
 * Lab-only extras: `GET /status/v1/simple`, and `GET|PUT /lab/v1/faults` (the lab token is
 * required, and keeps working whatever the faults) to make the RBAC token look revoked or expired
 * (`token`: valid | revoked | expired), the deploy endpoint fail (`deploy`: normal | error | hang)
 * or runs misbehave (`runs`: real | fail | hang — a hung run resumes when set back to real).
 *
 * Started by `npm run lab:puppet -- up` as: node --import tsx lab/orchestrator-double.ts --lab-dir DIR
 */
import { spawn } from 'node:child_process';
import { timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { layout, PORTS, PRIMARY_CERTNAME, URLS, type LabLayout } from './layout';
import { primaryPuppetBin } from './primary-puppet';

type JobState = 'new' | 'ready' | 'running' | 'finished' | 'failed';
type NodeState = 'new' | 'running' | 'finished' | 'failed' | 'errored';

interface NodeRun {
  name: string;
  state: NodeState;
  startTimestamp: string | null;
  finishTimestamp: string | null;
  message: string;
  result: { exit_code: number | null; status: string } | null;
}

interface Job {
  number: number;
  options: DeployRequest;
  state: JobState;
  status: { state: JobState; enter_time: string; exit_time: string | null }[];
  nodes: NodeRun[];
}

const faultsSchema = z
  .object({
    token: z.enum(['valid', 'revoked', 'expired']),
    deploy: z.enum(['normal', 'error', 'hang']),
    runs: z.enum(['real', 'fail', 'hang']),
  })
  .strict();

type Faults = z.infer<typeof faultsSchema>;

/** Every key PE documents for POST /command/deploy; anything else is refused, as PE's schema does. */
const deploySchema = z
  .object({
    environment: z.string(),
    scope: z
      .object({
        nodes: z.array(z.string().min(1)).optional(),
        query: z.union([z.string().min(1), z.array(z.unknown()).min(1)]).optional(),
        node_group: z.string().min(1).optional(),
      })
      .strict()
      .refine((scope) => Object.keys(scope).length === 1, 'scope must contain exactly one of nodes, query or node_group'),
    description: z.string().optional(),
    noop: z.boolean().optional(),
    no_noop: z.boolean().optional(),
    concurrency: z.number().int().positive().optional(),
    enforce_environment: z.boolean().optional(),
    debug: z.boolean().optional(),
    trace: z.boolean().optional(),
    evaltrace: z.boolean().optional(),
    filetimeout: z.number().int().optional(),
    http_connect_timeout: z.number().int().optional(),
    http_keepalive_timeout: z.number().int().optional(),
    http_read_timeout: z.number().int().optional(),
    ordering: z.string().optional(),
    skip_tags: z.string().optional(),
    tags: z.string().optional(),
    timeout: z.number().int().optional(),
    use_cached_catalog: z.boolean().optional(),
    usecacheonfailure: z.boolean().optional(),
    userdata: z.record(z.string(), z.unknown()).optional(),
  })
  .strict()
  .refine((body) => !(body.noop && body.no_noop), 'noop and no_noop cannot both be true')
  .refine((body) => body.environment !== '' || body.enforce_environment === false, 'enforce_environment must be false when environment is empty');

type DeployRequest = z.infer<typeof deploySchema>;

const RUN_TIMEOUT_MS = 600_000;
const OWNER = { id: '42bf351c-f9ec-40af-84ad-e976fec7f4bd', login: 'lab-admin' };

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly kind: string,
    msg: string,
    readonly details: unknown = null,
  ) {
    super(msg);
  }
}

const now = () => new Date().toISOString();

class Orchestrator {
  private readonly jobs = new Map<number, Job>();
  private nextJob = 1;
  private queue: Promise<void> = Promise.resolve();
  faults: Faults = { token: 'valid', deploy: 'normal', runs: 'real' };

  constructor(private readonly paths: LabLayout) {}

  async deploy(body: unknown): Promise<{ job: { id: string; name: string } }> {
    const parsed = deploySchema.safeParse(body);
    if (!parsed.success) {
      throw new ApiError(400, 'puppetlabs.orchestrator/validation-error', z.prettifyError(parsed.error), { issues: parsed.error.issues });
    }
    const options = parsed.data;
    if (options.environment !== '' && !existsSync(join(this.paths.server.codedir, 'environments', options.environment))) {
      throw new ApiError(404, 'puppetlabs.orchestrator/unknown-environment', `Unknown environment ${options.environment}`, {
        environment: options.environment,
      });
    }
    const targets = await this.resolveTargets(options.scope);
    if (targets.length === 0) throw new ApiError(400, 'puppetlabs.orchestrator/empty-target', 'The target contains no nodes', { scope: options.scope });
    const job: Job = {
      number: this.nextJob++,
      options,
      state: 'new',
      status: [{ state: 'new', enter_time: now(), exit_time: null }],
      nodes: targets.map((name) => ({ name, state: 'new', startTimestamp: null, finishTimestamp: null, message: '', result: null })),
    };
    this.jobs.set(job.number, job);
    // PE runs one deploy at a time per node; with a single real node, one queue does the same.
    this.queue = this.queue.then(() => this.execute(job));
    return { job: { id: jobUrl(job.number), name: String(job.number) } };
  }

  private async resolveTargets(scope: DeployRequest['scope']): Promise<string[]> {
    if (scope.nodes) return [...new Set(scope.nodes)];
    if (scope.node_group) throw new ApiError(400, 'puppetlabs.orchestrator/validation-error', 'The lab has no node classifier: use scope.nodes or scope.query');
    let response: Response;
    try {
      response = await fetch(`${URLS.puppetdbPlain}/pdb/query/v4`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: scope.query }),
      });
    } catch (cause) {
      throw new ApiError(500, 'puppetlabs.orchestrator/puppetdb-error', `PuppetDB could not be reached: ${String(cause)}`);
    }
    if (!response.ok) throw new ApiError(400, 'puppetlabs.orchestrator/query-error', `PuppetDB refused the query: ${await response.text()}`);
    const rows = (await response.json()) as { certname?: unknown }[];
    return [...new Set(rows.map((row) => row.certname).filter((name): name is string => typeof name === 'string'))];
  }

  private transition(job: Job, state: JobState): void {
    const time = now();
    const last = job.status.at(-1);
    if (last) last.exit_time = time;
    job.status.push({ state, enter_time: time, exit_time: null });
    job.state = state;
  }

  private async execute(job: Job): Promise<void> {
    this.transition(job, 'ready');
    this.transition(job, 'running');
    for (const node of job.nodes) await this.runNode(job, node);
    this.transition(job, job.nodes.every((node) => node.state === 'finished') ? 'finished' : 'failed');
  }

  private async runNode(job: Job, node: NodeRun): Promise<void> {
    node.state = 'running';
    node.startTimestamp = now();
    const finish = (state: NodeState, message: string, result: NodeRun['result'] = null) => {
      Object.assign(node, { state, message, result, finishTimestamp: now() });
    };
    if (node.name !== PRIMARY_CERTNAME) return finish('errored', `Node ${node.name} is not connected to the PCP broker`);
    while (this.faults.runs === 'hang') await sleep(200);
    if (this.faults.runs === 'fail') return finish('failed', `lab fault: the Puppet run on ${node.name} failed`, { exit_code: 1, status: 'failed' });
    const exitCode = await this.puppetAgentRun(job.options, job.number);
    // --test implies --detailed-exitcodes: 0 no changes, 2 changes, 4/6 failures.
    if (exitCode === 0 || exitCode === 2) {
      finish('finished', `Finished puppet run on ${node.name} - Success!`, { exit_code: exitCode, status: exitCode === 0 ? 'unchanged' : 'changed' });
    } else {
      finish('failed', `Error running puppet on ${node.name}: exit code ${exitCode}`, { exit_code: exitCode, status: 'failed' });
    }
  }

  private puppetAgentRun(options: DeployRequest, jobNumber: number): Promise<number | null> {
    const args = ['agent', '--test'];
    if (options.environment !== '' && options.enforce_environment !== false) args.push('--environment', options.environment);
    if (options.noop) args.push('--noop');
    if (options.no_noop) args.push('--no-noop');
    if (options.debug) args.push('--debug');
    return new Promise((resolve) => {
      const child = spawn(primaryPuppetBin(this.paths), args, { stdio: ['ignore', 'pipe', 'pipe'] });
      const prefix = (chunk: Buffer) => process.stdout.write(chunk.toString().replace(/^(?=.)/gm, `[job ${jobNumber}] `));
      child.stdout.on('data', prefix);
      child.stderr.on('data', prefix);
      const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
      child.on('error', () => resolve(null));
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
  }

  job(id: string): Job {
    if (!/^\d+$/.test(id)) throw new ApiError(400, 'puppetlabs.orchestrator/validation-error', `Job id ${id} is not an integer`);
    const job = this.jobs.get(Number(id));
    if (!job) throw new ApiError(404, 'puppetlabs.orchestrator/unknown-job', `No job exists with id ${id}`, { id });
    return job;
  }

  list(query: URLSearchParams): unknown {
    const integer = (name: string, fallback: number) => {
      const value = query.get(name);
      if (value === null) return fallback;
      if (!/^\d+$/.test(value)) throw new ApiError(400, 'puppetlabs.orchestrator/validation-error', `${name} must be a non-negative integer`);
      return Number(value);
    };
    const all = [...this.jobs.values()];
    const offset = integer('offset', 0);
    const limit = integer('limit', all.length);
    return { items: all.slice(offset, offset + limit).map(jobView), pagination: { limit, offset, total: all.length } };
  }
}

function jobUrl(number: number, suffix = ''): string {
  return `${URLS.orchestrator}/orchestrator/v1/jobs/${number}${suffix}`;
}

function jobView(job: Job): unknown {
  const first = job.status[0]!;
  const last = job.status.at(-1)!;
  const done = job.state === 'finished' || job.state === 'failed';
  const nodeStates: Record<string, number> = {};
  for (const node of job.nodes) nodeStates[node.state] = (nodeStates[node.state] ?? 0) + 1;
  const options = { concurrency: null, noop: false, trace: false, debug: false, evaltrace: false, enforce_environment: true, ...job.options };
  return {
    id: jobUrl(job.number),
    name: String(job.number),
    command: 'deploy',
    type: 'deploy',
    state: job.state,
    options,
    owner: OWNER,
    description: job.options.description ?? '',
    timestamp: last.enter_time,
    started_timestamp: first.enter_time,
    finished_timestamp: done ? last.enter_time : null,
    duration: ((done ? Date.parse(last.enter_time) : Date.now()) - Date.parse(first.enter_time)) / 1000,
    environment: { name: job.options.environment },
    node_count: job.nodes.length,
    node_states: job.nodes.length === 0 ? null : nodeStates,
    status: job.status,
    nodes: { id: jobUrl(job.number, '/nodes') },
    report: { id: jobUrl(job.number, '/report') },
  };
}

function nodeView(node: NodeRun): unknown {
  const end = node.finishTimestamp ? Date.parse(node.finishTimestamp) : Date.now();
  return {
    name: node.name,
    state: node.state,
    timestamp: node.finishTimestamp ?? node.startTimestamp,
    start_timestamp: node.startTimestamp,
    finish_timestamp: node.finishTimestamp,
    duration: node.startTimestamp ? (end - Date.parse(node.startTimestamp)) / 1000 : null,
    details: { message: node.message },
    result: node.result,
  };
}

function send(response: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  response.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' });
  response.end(text);
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new ApiError(400, 'puppetlabs.orchestrator/validation-error', 'The request body is not valid JSON');
  }
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function authenticate(request: IncomingMessage, url: URL, token: string): void {
  const header = request.headers['x-authentication'];
  const given = (Array.isArray(header) ? header[0] : header) ?? url.searchParams.get('token');
  if (!given) throw new ApiError(401, 'puppetlabs.rbac/user-unauthenticated', 'Route requires authentication');
  if (!sameSecret(given, token)) throw new ApiError(401, 'puppetlabs.rbac/invalid-token', 'The provided token is invalid.');
}

function applyTokenFault(faults: Faults): void {
  if (faults.token === 'revoked') throw new ApiError(401, 'puppetlabs.rbac/token-revoked', 'Authentication token has been revoked.');
  if (faults.token === 'expired') throw new ApiError(401, 'puppetlabs.rbac/token-expired', 'The provided token has expired.');
}

async function route(orchestrator: Orchestrator, token: string, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const url = new URL(request.url ?? '/', URLS.orchestrator);
  const method = request.method ?? 'GET';
  if (method === 'GET' && url.pathname === '/status/v1/simple') return send(response, 200, 'running');
  authenticate(request, url, token);

  if (url.pathname === '/lab/v1/faults') {
    if (method === 'PUT') {
      const parsed = faultsSchema.partial().safeParse(await readJson(request));
      if (!parsed.success) throw new ApiError(400, 'puppetlabs.orchestrator/validation-error', z.prettifyError(parsed.error));
      orchestrator.faults = { ...orchestrator.faults, ...parsed.data };
    }
    return send(response, 200, orchestrator.faults);
  }
  applyTokenFault(orchestrator.faults);
  if (method === 'POST' && url.pathname === '/orchestrator/v1/command/deploy') {
    if (orchestrator.faults.deploy === 'hang') return; // never answered: exercises client timeouts
    if (orchestrator.faults.deploy === 'error') throw new ApiError(500, 'puppetlabs.orchestrator/unknown-error', 'lab fault: internal error');
    return send(response, 202, await orchestrator.deploy(await readJson(request)));
  }
  if (method === 'GET' && url.pathname === '/orchestrator/v1/jobs') return send(response, 200, orchestrator.list(url.searchParams));
  const jobPath = /^\/orchestrator\/v1\/jobs\/([^/]+)(\/nodes|\/report)?$/.exec(url.pathname);
  if (method === 'GET' && jobPath) {
    const job = orchestrator.job(jobPath[1]!);
    if (jobPath[2] === '/nodes') return send(response, 200, { items: job.nodes.map(nodeView) });
    if (jobPath[2] === '/report') {
      return send(response, 200, {
        items: job.nodes.map((node) => ({ node: node.name, state: node.state, timestamp: node.finishTimestamp ?? node.startTimestamp, events: [] })),
      });
    }
    return send(response, 200, jobView(job));
  }
  throw new ApiError(404, 'puppetlabs.orchestrator/not-found', `No route for ${method} ${url.pathname}`);
}

function main(): void {
  const { values } = parseArgs({ options: { 'lab-dir': { type: 'string' } } });
  const labDir = values['lab-dir'];
  if (!labDir) throw new Error('usage: orchestrator-double.ts --lab-dir DIR');
  const paths = layout(labDir);
  const token = readFileSync(paths.orchestrator.tokenFile, 'utf8').trim();
  const orchestrator = new Orchestrator(paths);
  const handler = (request: IncomingMessage, response: ServerResponse) => {
    route(orchestrator, token, request, response).catch((error: unknown) => {
      if (error instanceof ApiError) return send(response, error.status, { kind: error.kind, msg: error.message, details: error.details });
      console.error(error);
      send(response, 500, { kind: 'puppetlabs.orchestrator/unknown-error', msg: String(error), details: null });
    });
  };
  // Like PE's services on a primary, the double presents the primary's certificate.
  const server = createHttpsServer(
    { key: readFileSync(paths.server.hostKey), cert: readFileSync(paths.server.hostCert), ca: readFileSync(paths.server.caCert) },
    handler,
  );
  server.listen(PORTS.orchestrator, '127.0.0.1', () => console.log(`orchestrator double listening on ${URLS.orchestrator}`));
}

main();
