import { randomUUID } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { gunzipSync, inflateSync } from 'node:zlib';
import { buildConnector, Client } from 'undici';
import type { RequestRecord, RunRecord, Step } from './records';
import {
  ACCEPT_BINARY,
  ACCEPT_CATALOG,
  ACCEPT_JSON,
  AGENT_HEADERS,
  appliedResources,
  buildReport,
  catalogForm,
  catalogPath,
  catalogSchema,
  fileContentPath,
  fileMetadataPath,
  fileMetadataSchema,
  fileServerPath,
  nodePath,
  pluginsyncPaths,
  puppetSource,
  reportPath,
  resourceRef,
  simulatedFacts,
  type AppliedResource,
} from './wire';

/** Where the agents connect, and the name they verify: the load balancer's, as agents know it. */
export interface FleetTarget {
  address: string;
  port: number;
  servername: string;
}

/** An agent's certificate from the lab CA. */
export interface AgentIdentity {
  certname: string;
  certPem: string;
  keyPem: string;
  /** Position in the fleet: gives the agent its own simulated addresses. */
  index: number;
}

/** What the agents trust: the lab CA (and its CRL, checked as a Puppet agent checks it). */
export interface Trust {
  ca: string;
  crl?: string;
}

/**
 * What an agent keeps between runs (its vardir): the checksums of the plugins and sourced files
 * it holds, and the resources it has already converged.
 */
export interface AgentState {
  runs: number;
  checksums: Map<string, string>;
  converged: Set<string>;
}

export function newAgentState(): AgentState {
  return { runs: 0, checksums: new Map(), converged: new Set() };
}

export interface RunOptions {
  identity: AgentIdentity;
  target: FleetTarget;
  trust: Trust;
  state: AgentState;
  record: (record: RequestRecord) => void;
  environment?: string;
  /**
   * Agents new to the site: they download every plugin and every sourced file they do not hold
   * yet (a first run fetches ~150 plugin files when stdlib is installed). Otherwise agents behave
   * as an established fleet: they hold what the server has and only ask for metadata.
   */
  fresh?: boolean;
  /** Per request, headers and body (Puppet's http_read_timeout is 10 min; a lab needs less). */
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
}

class StepFailed extends Error {
  constructor(readonly step: Step) {
    super(`step ${step} failed`);
  }
}

interface Answer {
  status: number;
  body: Buffer;
}

function errorCode(error: unknown): string {
  for (let current: unknown = error; current instanceof Error; current = current.cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return error instanceof Error ? error.name : 'unknown';
}

function decode(body: Buffer, encoding: string | string[] | undefined): Buffer {
  if (encoding === 'gzip') return gunzipSync(body);
  if (encoding === 'deflate') return inflateSync(body);
  return body;
}

/** The start of a failed answer's body on one line: Puppet Server says there why it refused. */
function answerDetail(raw: Buffer, encoding: string | string[] | undefined): string {
  let text: string;
  try {
    text = decode(raw, encoding).toString('utf8');
  } catch {
    text = raw.toString('utf8');
  }
  return text.replace(/\s+/g, ' ').trim().slice(0, 200);
}

function peerCommonName(socket: TLSSocket): string | undefined {
  const cn = socket.getPeerCertificate().subject?.CN as string | string[] | undefined;
  return Array.isArray(cn) ? cn[0] : cn;
}

/**
 * One agent run, the requests of `puppet agent --test` in Puppet 7.23's order, over one new TLS
 * connection (mTLS with the agent's certificate, CA pinned, the target's name verified) kept alive
 * for the whole run. Every request is recorded; the first failure ends the run, as it ends a real
 * agent's (a real agent would fall back to a cached catalog only when told to).
 */
export async function runAgent(options: RunOptions): Promise<RunRecord> {
  const { identity, target, trust, state } = options;
  const environment = options.environment ?? 'production';
  const timeoutMs = options.requestTimeoutMs ?? 120_000;
  const runId = randomUUID();
  const startedAt = Date.now();
  let answeredBy: string | undefined;
  const connector = buildConnector({
    ca: trust.ca,
    // Node reads one CRL per PEM string; Puppet's CRL file holds the whole chain's.
    ...(trust.crl ? { crl: trust.crl.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g) ?? [] } : {}),
    cert: identity.certPem,
    key: identity.keyPem,
    servername: target.servername,
    rejectUnauthorized: true,
    // Each run of a real agent is a new process: no TLS session to resume.
    maxCachedSessions: 0,
    timeout: options.connectTimeoutMs ?? 10_000,
  });
  const host = target.address.includes(':') ? `[${target.address}]` : target.address;
  const client = new Client(`https://${host}:${target.port}`, {
    connect: (connectOptions, callback) =>
      connector({ ...connectOptions, servername: target.servername }, (...args) => {
        if (args[0] === null) answeredBy = peerCommonName(args[1] as TLSSocket);
        callback(...args);
      }),
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });

  // The step of the latest request: an answer that cannot be used fails that step.
  let current: Step = 'node';
  const call = async (step: Step, method: 'GET' | 'POST' | 'PUT', path: string, accept: string, body?: { type: string; text: string }): Promise<Answer> => {
    current = step;
    const sentAt = Date.now();
    const started = performance.now();
    const request = `${method} ${path.split('?')[0]}`;
    const base = { agent: identity.certname, runId, step, request, startedAt: sentAt };
    try {
      const response = await client.request({
        method,
        path,
        headers: {
          ...AGENT_HEADERS,
          accept,
          host: `${target.servername}:${target.port}`,
          ...(body ? { 'content-type': body.type } : {}),
        },
        ...(body ? { body: body.text } : {}),
      });
      const raw = Buffer.from(await response.body.arrayBuffer());
      const ok = response.statusCode >= 200 && response.statusCode < 300;
      const retryAfter = response.headers['retry-after'];
      options.record({
        ...base,
        status: response.statusCode,
        ok,
        latencyMs: performance.now() - started,
        ...(answeredBy !== undefined ? { answeredBy } : {}),
        ...(typeof retryAfter === 'string' ? { retryAfter } : {}),
        ...(ok ? {} : { detail: answerDetail(raw, response.headers['content-encoding']) }),
      });
      if (!ok) throw new StepFailed(step);
      return { status: response.statusCode, body: decode(raw, response.headers['content-encoding']) };
    } catch (error) {
      if (error instanceof StepFailed) throw error;
      options.record({ ...base, status: 'connection-error', errorCode: errorCode(error), ok: false, latencyMs: performance.now() - started, ...(answeredBy !== undefined ? { answeredBy } : {}) });
      throw new StepFailed(step);
    }
  };
  const json = (answer: Answer): unknown => JSON.parse(answer.body.toString('utf8'));

  const seconds = (from: number) => (performance.now() - from) / 1000;
  const runStarted = performance.now();
  try {
    let mark = performance.now();
    await call('node', 'GET', nodePath(identity.certname, environment, runId), ACCEPT_JSON);
    const nodeRetrieval = seconds(mark);

    mark = performance.now();
    for (const path of pluginsyncPaths(environment)) {
      const answer = await call('pluginsync', 'GET', path, ACCEPT_JSON);
      if (!path.includes('recurse=true')) continue;
      const mount = path.slice('/puppet/v3/file_metadatas/'.length).split('?')[0]!;
      for (const metadata of fileMetadataSchema.array().parse(json(answer))) {
        if (metadata.type !== 'file' || !metadata.relative_path) continue;
        const mountPath = `/${mount}/${metadata.relative_path}`;
        const checksum = metadata.checksum.value ?? '';
        if (options.fresh && state.checksums.get(mountPath) !== checksum) {
          await call('pluginsync', 'GET', fileContentPath(mountPath, environment), ACCEPT_BINARY);
        }
        state.checksums.set(mountPath, checksum);
      }
    }
    const pluginSync = seconds(mark);

    mark = performance.now();
    const facts = simulatedFacts({ certname: identity.certname, index: identity.index }, environment);
    const catalogAnswer = await call('catalog', 'POST', catalogPath(identity.certname, environment), ACCEPT_CATALOG, {
      type: 'application/x-www-form-urlencoded',
      text: catalogForm(facts, environment, runId),
    });
    const configRetrieval = seconds(mark);
    const catalog = catalogSchema.parse(json(catalogAnswer));

    const applied: AppliedResource[] = [];
    for (const resource of appliedResources(catalog)) {
      const ref = resourceRef(resource);
      const firstTime = options.fresh === true && !state.converged.has(ref);
      let change: AppliedResource['change'];
      const source = puppetSource(resource);
      if (source !== undefined) {
        const mountPath = fileServerPath(source);
        const metadata = fileMetadataSchema.parse(json(await call('file_metadata', 'GET', fileMetadataPath(mountPath, environment), ACCEPT_JSON)));
        const checksum = `{${metadata.checksum.type}}${metadata.checksum.value ?? ''}`;
        if (options.fresh && state.checksums.get(resource.title) !== checksum) {
          await call('file_content', 'GET', fileContentPath(mountPath, environment), ACCEPT_BINARY);
          change = { property: 'ensure', previous: 'absent', desired: 'file', message: `defined content as '${checksum}'`, name: 'file_created' };
        }
        state.checksums.set(resource.title, checksum);
      } else if (resource.type === 'Notify') {
        const message = typeof resource.parameters.message === 'string' ? resource.parameters.message : resource.title;
        change = { property: 'message', previous: 'absent', desired: message, message: `defined 'message' as '${message}'`, name: 'message_changed' };
      } else if (firstTime && resource.type === 'File') {
        change = { property: 'ensure', previous: 'absent', desired: String(resource.parameters.ensure ?? 'file'), message: 'created', name: 'file_created' };
      }
      state.converged.add(ref);
      applied.push({ resource, evaluationSeconds: 0.001, ...(change ? { change } : {}) });
    }

    const report = buildReport({
      certname: identity.certname,
      environment,
      transactionUuid: runId,
      startedAt: new Date(startedAt),
      catalog,
      applied,
      timings: { node_retrieval: nodeRetrieval, plugin_sync: pluginSync, config_retrieval: configRetrieval, total: seconds(runStarted) },
    });
    await call('report', 'PUT', reportPath(identity.certname, environment), ACCEPT_JSON, { type: 'application/json', text: JSON.stringify(report) });
    return { agent: identity.certname, runId, startedAt, durationMs: Date.now() - startedAt, ok: true };
  } catch (error) {
    // A request that failed, or an answer the agent could not use (a catalog that does not parse):
    // either way the run ends there.
    const failedStep = error instanceof StepFailed ? error.step : current;
    const detail = error instanceof StepFailed ? {} : { error: error instanceof Error ? error.message : String(error) };
    return { agent: identity.certname, runId, startedAt, durationMs: Date.now() - startedAt, ok: false, failedStep, ...detail };
  } finally {
    state.runs += 1;
    await client.destroy();
  }
}
