import type { Agent, Dispatcher } from 'undici';
import { PuppetApiError, PuppetTlsError, PuppetUnavailableError, type PuppetServerKind } from '../errors';
// undici's index requires all of undici (fetch, WebSocket, caches, mocks, proxies, interceptors):
// 520 KB of CommonJS that esbuild cannot tree-shake, parsed at every cold start of the Lambda.
// This file needs only Agent and Dispatcher#request, so it imports the modules the index takes
// them from (under 300 KB bundled) and, as the index does, installs `request` on
// Dispatcher.prototype. These are internal paths: package.json pins undici to one version, and
// test/unit/lib/http.test.ts fails if they stop being the class and function the index exports.
import AgentClass from 'undici/lib/dispatcher/agent.js';
import DispatcherClass from 'undici/lib/dispatcher/dispatcher.js';
import request from 'undici/lib/api/api-request.js';

DispatcherClass.prototype.request = request;

/** PEM material held in memory: the pinned CA, and optionally a client certificate and key. */
export interface TlsIdentity {
  ca: string;
  cert?: string;
  key?: string;
}

export interface RetryPolicy {
  /** Total attempts, including the first. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, baseDelayMs: 250, maxDelayMs: 4_000 };
export const DEFAULT_TIMEOUT_MS = 15_000;

export interface EndpointOptions {
  server: PuppetServerKind;
  /** e.g. https://puppet.example.com:8140 */
  baseUrl: string;
  tls: TlsIdentity;
  /** Per attempt, for the whole exchange. */
  timeoutMs?: number;
  retry?: RetryPolicy;
  /** Several clients may share one connection pool (same host and identity). */
  dispatcher?: Dispatcher;
  /**
   * The name the server's certificate must carry, when baseUrl holds an address instead (a
   * compile master reached by private IP is verified against its certname).
   */
  servername?: string;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

export interface CallSpec {
  operation: string;
  method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  /** Path with any untrusted segment already validated and encoded. */
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: string | object;
  /** Statuses handed back to the caller; anything else is an error. */
  accept: readonly number[];
  /** Operator hint for an unexpected status (403 → how to allow the certificate, ...). */
  hint?: (status: number, body: string) => string | undefined;
  /** false for calls whose repetition is not harmless. */
  retry?: boolean;
}

export interface CallResult {
  url: string;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** Full-jitter exponential backoff: spreads retries of many Lambdas/agents hitting one server. */
export function backoffDelay(attempt: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

export function createAgent(tls: TlsIdentity, servername?: string): Agent {
  return new AgentClass({
    connect: { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: true, ...(servername ? { servername } : {}) },
    keepAliveTimeout: 30_000,
    connections: 16,
  });
}

const MAX_DETAIL = 300;

/**
 * One HTTPS endpoint of a Puppet service. Verifies TLS against the pinned CA, keeps connections
 * alive, bounds every attempt with a timeout, and retries with jittered backoff on connection
 * errors and 5xx only — never on 4xx, which retrying cannot fix.
 */
export class PuppetEndpoint {
  readonly server: PuppetServerKind;
  readonly baseUrl: string;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly timeoutMs: number;
  private readonly hostHeader: string | undefined;
  private readonly retry: RetryPolicy;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;

  constructor(options: EndpointOptions) {
    this.server = options.server;
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    if (!this.baseUrl.startsWith('https://')) {
      throw new TypeError(`${options.server} URL must be https:// (got ${options.baseUrl})`);
    }
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher = options.dispatcher ?? createAgent(options.tls, options.servername);
    // Puppet Server's Jetty refuses a request whose Host is not the TLS SNI name (400 "Host does
    // not match SNI"): reached by address, the request names the server as its certificate does.
    const port = new URL(this.baseUrl).port;
    this.hostHeader = options.servername ? `${options.servername}${port ? `:${port}` : ''}` : undefined;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.retry = options.retry ?? DEFAULT_RETRY;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.random = options.random ?? Math.random;
  }

  async call(spec: CallSpec): Promise<CallResult> {
    const url = this.url(spec.path, spec.query);
    const attempts = spec.retry === false ? 1 : this.retry.attempts;
    let lastError: PuppetApiError | undefined;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await this.sleep(backoffDelay(attempt - 1, this.retry, this.random));
      const result = await this.once(spec, url).catch((cause: unknown) => cause as Error);
      if (!(result instanceof Error)) {
        if (spec.accept.includes(result.status)) return result;
        const error = new PuppetApiError(
          { server: this.server, url, operation: spec.operation, status: result.status, detail: trim(result.text) },
          { hint: spec.hint?.(result.status, result.text) ?? defaultHint(this.server, result.status) },
        );
        if (!error.retryable) throw error;
        lastError = error;
      } else {
        const tlsProblem = tlsVerificationProblem(result);
        if (tlsProblem) {
          // A certificate that does not verify will not verify on the next attempt either.
          throw new PuppetTlsError(
            { server: this.server, url, operation: spec.operation, detail: `TLS verification failed (${tlsProblem})` },
            { cause: result, hint: `the ${this.server} server's certificate does not match the pinned CA or the host name ${new URL(url).hostname}: check the CA certificate you configured and the server's dns_alt_names` },
          );
        }
        lastError = new PuppetApiError(
          { server: this.server, url, operation: spec.operation, detail: result.message },
          { cause: result },
        );
      }
    }
    throw new PuppetUnavailableError(
      { server: this.server, url, operation: spec.operation, status: lastError?.status, detail: `gave up after ${attempts} attempt(s); last: ${lastError?.message}` },
      { cause: lastError, hint: unavailableHint(this.server, this.baseUrl) },
    );
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  private url(path: string, query?: Record<string, string>): string {
    const search = query && Object.keys(query).length > 0 ? `?${new URLSearchParams(query).toString()}` : '';
    return `${this.baseUrl}${path}${search}`;
  }

  private async once(spec: CallSpec, url: string): Promise<CallResult> {
    const headers: Record<string, string> = { accept: 'application/json, text/plain, */*', ...(this.hostHeader ? { host: this.hostHeader } : {}), ...spec.headers };
    let body: string | undefined;
    if (spec.body !== undefined) {
      body = typeof spec.body === 'string' ? spec.body : JSON.stringify(spec.body);
      headers['content-type'] ??= typeof spec.body === 'string' ? 'text/plain' : 'application/json';
    }
    const response = await this.dispatcher.request({
      origin: new URL(url).origin,
      path: url.slice(new URL(url).origin.length),
      method: spec.method,
      headers,
      body,
      signal: AbortSignal.timeout(this.timeoutMs),
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
    const text = await response.body.text();
    return { url, status: response.statusCode, headers: response.headers, text };
  }
}

const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function tlsVerificationProblem(error: Error): string | undefined {
  for (let current: unknown = error; current instanceof Error; current = current.cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && TLS_VERIFY_CODES.has(code)) return code;
  }
  return undefined;
}

function trim(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > MAX_DETAIL ? `${oneLine.slice(0, MAX_DETAIL)}…` : oneLine;
}

function defaultHint(server: PuppetServerKind, status: number): string | undefined {
  if (status === 403 && server === 'ca') {
    return "the CA refused this client certificate: add an auth.conf rule (sort-order below 500) allowing the lifecycle certname on certificate_status, certificate_statuses and clean, or use a certificate made with 'puppetserver ca generate --ca-client'";
  }
  if (status === 403 && server === 'puppetdb') {
    return "PuppetDB refused this client certificate: add the lifecycle certname to the file named by [puppetdb] certificate-allowlist and restart PuppetDB";
  }
  if (status === 401 && server === 'orchestrator') {
    return 'the orchestrator refused the RBAC token: it has expired or been revoked, or its user lacks "Puppet agent: Run Puppet on agent nodes" and "Job orchestrator: Start, stop and view jobs"; mint a new one and update the secret';
  }
  return undefined;
}

function unavailableHint(server: PuppetServerKind, baseUrl: string): string {
  return `check that the ${server} service at ${baseUrl} is running and reachable from here (security groups, DNS), and that its certificate is signed by the pinned CA`;
}

/** Parses a JSON answer against its schema; a surprise shape is an error naming the server. */
export function parseJson<T>(
  schema: { safeParse(data: unknown): { success: true; data: T } | { success: false; error: { message: string } } },
  result: CallResult,
  server: PuppetServerKind,
  operation: string,
): T {
  let json: unknown;
  try {
    json = JSON.parse(result.text);
  } catch (cause) {
    throw new PuppetApiError({ server, url: result.url, operation, status: result.status, detail: `answer is not JSON: ${trim(result.text)}` }, { cause });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new PuppetApiError({ server, url: result.url, operation, status: result.status, detail: `unexpected answer shape: ${trim(parsed.error.message)}` });
  }
  return parsed.data;
}
