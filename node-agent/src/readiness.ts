import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { CompileMastersError } from '../../lib/errors';
import { READINESS_CHECK } from '../../lib/readiness-check';
import type { BootObservation } from './boot-marker';
import type { LifecycleObservation } from './imds';
import type { Logger } from './log';
import { decideShutdown } from './shutdown';

/**
 * The readiness daemon (compile-master-readiness.service): the NLB's health check of this compile
 * master. Puppet Server stops at once when the node shuts down, and the NLB keeps sending new agent
 * connections to a target until its health check has failed `unhealthyThresholdCount` times, each
 * one refused. This daemon's unit is ordered after Puppet Server's, so at shutdown systemd stops
 * it first: it answers "not ready" for the drain (derived from the check's settings) while Puppet
 * Server still serves, then waits for the agents still connected to finish their runs, and only
 * when it exits does Puppet Server stop. The node needs no AWS rights for this, which a
 * deregistration or standby would.
 */

export interface ReadinessObservation {
  stopping: boolean;
  boot: BootObservation;
  /** Whether the local Puppet Server answered "running"; undefined when it was not asked. */
  serverRunning?: boolean;
}

export interface ReadinessVerdict {
  ready: boolean;
  /** One line, the body of the answer and of the log. */
  reason: string;
}

export function decideReadiness(observation: ReadinessObservation): ReadinessVerdict {
  if (observation.stopping) return { ready: false, reason: 'draining: this node is stopping' };
  const { boot } = observation;
  if (boot.kind === 'pending') return { ready: false, reason: 'the node agent\'s boot step has not completed for this identity' };
  if (boot.kind === 'unreadable') return { ready: false, reason: `cannot read the boot step's marker: ${boot.detail}` };
  if (observation.serverRunning !== true) return { ready: false, reason: 'the local Puppet Server does not answer /status/v1/simple with "running"' };
  return { ready: true, reason: `ready: ${boot.marker.certname} is enrolled and its Puppet Server is running` };
}

export interface DrainInput {
  /** When this process started: before its first answer, an earlier one may have answered "ready". */
  startedAt: number;
  /** When this process last answered "ready"; undefined if it never did. */
  lastReadyAt: number | undefined;
  now: number;
  drainMs: number;
  lifecycle: LifecycleObservation;
}

export interface DrainPlan {
  waitMs: number;
  reason: string;
}

/**
 * How long to keep answering "not ready" before exiting. The NLB may have seen the target healthy
 * until the last "ready" answer, so the drain runs from then; the daemon's own start stands in for
 * it when this process never answered "ready" (a restarted daemon's predecessor may have). When
 * the group is terminating the instance it has already deregistered and drained it.
 */
export function drainPlan(input: DrainInput): DrainPlan {
  const shutdown = decideShutdown(input.lifecycle);
  if (shutdown.verdict === 'terminating') return { waitMs: 0, reason: `no drain: ${shutdown.reason}, after the group deregistered it and waited its deregistration delay` };
  const lastSeenReady = input.lastReadyAt ?? input.startedAt;
  const waitMs = Math.max(0, lastSeenReady + input.drainMs - input.now);
  const since = input.lastReadyAt === undefined ? 'this daemon started' : 'the last "ready" answer';
  return waitMs === 0
    ? { waitMs, reason: `no drain needed: ${since} ${Math.round((input.now - lastSeenReady) / 1000)} s ago, longer than the ${input.drainMs / 1000} s the load balancer needs` }
    : { waitMs, reason: `draining ${Math.ceil(waitMs / 1000)} s so the load balancer marks this target unhealthy while Puppet Server still serves (${shutdown.reason})` };
}

/** Marks the lines that say what a stop's drain did, for whoever reads the journal (the machine lab's timeline). */
export const DRAIN = { phase: 'drain' } as const;

export interface ReadinessDaemonOptions {
  port: number;
  /** Every address when omitted (the NLB checks the instance's private address). */
  host?: string;
  drainMs: number;
  /** After the drain, how long agents still connected may take to finish before Puppet Server stops. */
  inFlightMs: number;
  /** Agents connected to the local Puppet Server now (node-agent/src/connections.ts). */
  openAgentConnections(): Promise<number>;
  /** How often the in-flight wait looks again. */
  pollMs?: number;
  readBoot(): Promise<BootObservation>;
  /** True when the local Puppet Server, verified as `certname`, answers "running". */
  serverRunning(certname: string): Promise<boolean>;
  lifecycle(): Promise<LifecycleObservation>;
  /** Aborted at SIGTERM: the drain starts. */
  signal: AbortSignal;
  log: Logger;
  now?: () => number;
}

/** Serves the check until `signal` aborts, then drains and returns. */
export async function runReadinessDaemon(options: ReadinessDaemonOptions): Promise<void> {
  const { log, signal } = options;
  const now = options.now ?? Date.now;
  const startedAt = now();
  let stopping = false;
  let lastReadyAt: number | undefined;
  let lastReason: string | undefined;
  const serverRunning = singleFlight(options.serverRunning);

  const verdict = async (): Promise<ReadinessVerdict> => {
    if (stopping) return decideReadiness({ stopping, boot: { kind: 'pending' } });
    const boot = await options.readBoot();
    const running = boot.kind === 'complete' ? await serverRunning(boot.marker.certname) : undefined;
    // Read again after the probe: a stop that began while it ran must not be answered "ready".
    return decideReadiness({ stopping, boot, serverRunning: running });
  };

  const answer = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = new URL(request.url ?? '/', 'http://readiness').pathname;
    if (path !== READINESS_CHECK.path) return reply(response, 404, `not found; the readiness check is GET ${READINESS_CHECK.path}`);
    if (request.method !== 'GET' && request.method !== 'HEAD') return reply(response, 405, 'only GET and HEAD');
    const result = await verdict();
    if (result.ready) lastReadyAt = now();
    if (result.reason !== lastReason) {
      if (result.ready) log.info('ready', { reason: result.reason });
      else log.warn('not ready', { reason: result.reason });
    }
    lastReason = result.reason;
    reply(response, result.ready ? 200 : 503, result.reason);
  };

  const server = createServer((request, response) => {
    answer(request, response).catch((error: unknown) => {
      log.error('the readiness check failed', { error });
      if (!response.headersSent) reply(response, 503, 'the readiness check itself failed');
    });
  });
  // Health checks are small and quick; anything slower is not one.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await listen(server, options.port, options.host);
  log.info('answering the load balancer\'s health check', { port: options.port, path: READINESS_CHECK.path, drainSeconds: options.drainMs / 1000 });

  try {
    if (!signal.aborted) await once(signal, 'abort');
    stopping = true;
    log.info('stopping: answering "not ready" from now on');
    const plan = drainPlan({ startedAt, lastReadyAt, now: now(), drainMs: options.drainMs, lifecycle: await options.lifecycle() });
    log.info(plan.reason, { ...DRAIN, waitSeconds: plan.waitMs / 1000 });
    if (plan.waitMs > 0) await sleep(plan.waitMs);
    await waitForAgentRuns(options, now);
    log.info('drained: Puppet Server may stop now');
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

/**
 * The drain stops new connections; runs that began before it may still be compiling. Puppet
 * Server answers the next request of each with 503 once it begins to stop, so this waits for
 * them, up to `inFlightMs` (an NLB closes them after its draining interval anyway).
 */
async function waitForAgentRuns(options: ReadinessDaemonOptions, now: () => number): Promise<void> {
  const { log } = options;
  if (options.inFlightMs <= 0) return;
  const started = now();
  const count = async (): Promise<number | undefined> => {
    try {
      return await options.openAgentConnections();
    } catch (error) {
      log.warn('cannot see which agents are still connected to Puppet Server; letting it stop', { ...DRAIN, error });
      return undefined;
    }
  };
  let open = await count();
  if (open === undefined) return;
  if (open === 0) {
    log.info('no agent is connected to Puppet Server', DRAIN);
    return;
  }
  log.info(`waiting for ${open} agent connection(s) to finish their runs`, { ...DRAIN, open, atMostSeconds: options.inFlightMs / 1000 });
  while (open > 0 && now() - started < options.inFlightMs) {
    await sleep(options.pollMs ?? 1_000);
    const next = await count();
    if (next === undefined) return;
    open = next;
  }
  const waited = Math.round((now() - started) / 1000);
  if (open > 0) log.warn(`${open} agent connection(s) still open after ${waited} s; Puppet Server stops now and answers their next request 503`, { ...DRAIN, open });
  else log.info(`every agent connection closed after ${waited} s`, DRAIN);
}

function reply(response: ServerResponse, status: number, reason: string): void {
  // Connection: close: the NLB opens a connection per check, and a drain must not wait on idle ones.
  response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', connection: 'close' });
  response.end(`${reason}\n`);
}

async function listen(server: ReturnType<typeof createServer>, port: number, host: string | undefined): Promise<void> {
  try {
    server.listen(port, host);
    await once(server, 'listening');
  } catch (cause) {
    throw new CompileMastersError(`Cannot answer the readiness check on port ${port}`, { cause, hint: 'another process holds the port; systemd restarts compile-master-readiness' });
  }
}

/**
 * Every NLB node checks every target, for both target groups: checks arriving together share one
 * call to Puppet Server, so a slow server is not asked again by each of them.
 */
function singleFlight(call: (certname: string) => Promise<boolean>): (certname: string) => Promise<boolean> {
  const inFlight = new Map<string, Promise<boolean>>();
  return (certname) => {
    let pending = inFlight.get(certname);
    if (!pending) {
      pending = call(certname).finally(() => inFlight.delete(certname));
      inFlight.set(certname, pending);
    }
    return pending;
  };
}
