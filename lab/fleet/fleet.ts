import { readFileSync } from 'node:fs';
import { loadLab, type LabDescription } from '../running-lab';
import { newAgentState, runAgent, type AgentIdentity, type AgentState, type FleetTarget, type Trust } from './agent-run';
import { enrollAgents } from './identities';
import { summarize, type FleetSummary, type RequestRecord, type RunRecord, type Window } from './records';

/** Open loop (runs started at a fixed rate, whatever the answers) or closed loop (N runs always in flight). */
export type FleetRate = { runsPerMinute: number } | { concurrency: number };

export type FleetOptions = FleetRate & {
  /** How many agents to enroll (fresh identities, see enrollAgents), or identities enrolled before. */
  agents: number | readonly AgentIdentity[];
  target: FleetTarget;
  /** Bounds: the fleet stops by itself at the first reached. durationMs defaults to 10 minutes. */
  runsPerAgent?: number;
  maxRuns?: number;
  durationMs?: number;
  /** See RunOptions.fresh. */
  fresh?: boolean;
  environment?: string;
  requestTimeoutMs?: number;
  /** Default: the lab CA and its CRL, read at start. */
  trust?: Trust;
  /** Certname prefix when enrolling (default: a fresh one). */
  prefix?: string;
  /** Called with each request record as it is made (records also accumulate in the handle). */
  onRecord?: (record: RequestRecord) => void;
  lab?: LabDescription;
};

export interface FleetHandle {
  readonly agents: readonly AgentIdentity[];
  /** Every request so far, in completion order. */
  readonly records: readonly RequestRecord[];
  /** Every finished run. */
  readonly runs: readonly RunRecord[];
  /** Rate-mode ticks that found every agent busy (a real agent skips a run that way too). */
  readonly missedStarts: number;
  inFlight(): number;
  /** Counts over the requests and finished runs that started inside `window`. */
  summary(window?: Window): FleetSummary;
  /** Changes the load while the fleet runs. */
  setRate(rate: FleetRate): void;
  /** Settles when a bound is reached and the runs in flight have ended. */
  readonly finished: Promise<void>;
  /** Starts no more runs and waits for the ones in flight. */
  stop(): Promise<void>;
}

const DEFAULT_DURATION_MS = 10 * 60_000;

export function labTrust(lab: LabDescription = loadLab()): Trust {
  return { ca: readFileSync(lab.caCertPath, 'utf8'), crl: readFileSync(lab.crlPath, 'utf8') };
}

function rateOf(options: FleetRate): FleetRate {
  if ('runsPerMinute' in options && options.runsPerMinute !== undefined) {
    if (!(options.runsPerMinute > 0)) throw new RangeError('runsPerMinute must be > 0');
    return { runsPerMinute: options.runsPerMinute };
  }
  const { concurrency } = options as { concurrency: number };
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be an integer ≥ 1');
  return { concurrency };
}

/**
 * A fleet of simulated Puppet agents putting load on `target` (the load balancer). Each agent
 * runs at most once at a time; agents take turns round-robin.
 */
export async function startFleet(options: FleetOptions): Promise<FleetHandle> {
  const lab = options.lab ?? (typeof options.agents === 'number' || options.trust === undefined ? loadLab() : undefined);
  const agents = typeof options.agents === 'number' ? await enrollAgents({ count: options.agents, ...(options.prefix ? { prefix: options.prefix } : {}), ...(lab ? { lab } : {}) }) : [...options.agents];
  if (agents.length === 0) throw new RangeError('a fleet needs at least one agent');
  const trust = options.trust ?? labTrust(lab);
  const states = new Map<string, AgentState>(agents.map((agent) => [agent.certname, newAgentState()]));
  const busy = new Set<string>();
  const records: RequestRecord[] = [];
  const runs: RunRecord[] = [];
  const inFlight = new Set<Promise<void>>();
  const deadline = Date.now() + (options.durationMs ?? DEFAULT_DURATION_MS);
  let rate = rateOf(options);
  let started = 0;
  let missedStarts = 0;
  let next = 0;
  let stopping = false;
  let timer: NodeJS.Timeout | undefined;
  // Notices the time bound while nothing is in flight (no run end to notice it).
  const watchdog = setInterval(() => settleIfDone(), 1_000);
  let resolveFinished!: () => void;
  const finished = new Promise<void>((resolve) => (resolveFinished = resolve));

  const exhausted = (agent: AgentIdentity) => options.runsPerAgent !== undefined && states.get(agent.certname)!.runs + (busy.has(agent.certname) ? 1 : 0) >= options.runsPerAgent;
  const boundReached = () =>
    Date.now() >= deadline || (options.maxRuns !== undefined && started >= options.maxRuns) || agents.every((agent) => exhausted(agent));

  const settleIfDone = () => {
    if ((stopping || boundReached()) && inFlight.size === 0) {
      stopping = true;
      clearTimeout(timer);
      clearInterval(watchdog);
      resolveFinished();
    }
  };

  /** The next idle agent with runs left, round-robin; undefined when all are busy. */
  const pickAgent = (): AgentIdentity | undefined => {
    for (let offset = 0; offset < agents.length; offset++) {
      const agent = agents[(next + offset) % agents.length]!;
      if (!busy.has(agent.certname) && !exhausted(agent)) {
        next = (next + offset + 1) % agents.length;
        return agent;
      }
    }
    return undefined;
  };

  const launch = (agent: AgentIdentity) => {
    started += 1;
    busy.add(agent.certname);
    const run = runAgent({
      identity: agent,
      target: options.target,
      trust,
      state: states.get(agent.certname)!,
      record: (record) => {
        records.push(record);
        options.onRecord?.(record);
      },
      ...(options.environment ? { environment: options.environment } : {}),
      ...(options.fresh !== undefined ? { fresh: options.fresh } : {}),
      ...(options.requestTimeoutMs !== undefined ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
    }).then(
      (result) => {
        runs.push(result);
      },
      (error: unknown) => {
        runs.push({ agent: agent.certname, runId: 'none', startedAt: Date.now(), durationMs: 0, ok: false, error: String(error) });
      },
    );
    const tracked = run.finally(() => {
      busy.delete(agent.certname);
      inFlight.delete(tracked);
      if (!stopping && 'concurrency' in rate) fill();
      settleIfDone();
    });
    inFlight.add(tracked);
  };

  /** Closed loop: start runs until `concurrency` are in flight (or no agent is free). */
  const fill = () => {
    if (!('concurrency' in rate)) return;
    while (!stopping && !boundReached() && inFlight.size < rate.concurrency) {
      const agent = pickAgent();
      if (!agent) return;
      launch(agent);
    }
  };

  /** Open loop: one run per tick, on a fixed schedule that does not drift with the answers. */
  const tick = (at: number, intervalMs: number) => {
    if (stopping || boundReached()) return settleIfDone();
    const agent = pickAgent();
    if (agent) launch(agent);
    else missedStarts += 1;
    const nextAt = at + intervalMs;
    timer = setTimeout(() => tick(nextAt, intervalMs), Math.max(0, nextAt - Date.now()));
  };

  const apply = (newRate: FleetRate) => {
    rate = rateOf(newRate);
    clearTimeout(timer);
    if ('runsPerMinute' in rate) tick(Date.now(), 60_000 / rate.runsPerMinute);
    else fill();
  };
  apply(rate);

  return {
    agents,
    records,
    runs,
    get missedStarts() {
      return missedStarts;
    },
    inFlight: () => inFlight.size,
    summary: (window?: Window) => summarize(records, runs, window),
    setRate: (newRate) => {
      if (!stopping) apply(newRate);
    },
    finished,
    async stop() {
      stopping = true;
      clearTimeout(timer);
      await Promise.all([...inFlight]);
      settleIfDone();
      await finished;
    },
  };
}
