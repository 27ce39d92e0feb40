/**
 * What the fleet records: one entry per HTTP request an agent made (and one per real
 * `puppet agent --test`), and what the load scenario reads from them.
 */

/** The parts of a Puppet 7 agent run, in order; `agent-run` is a whole real `puppet agent --test`. */
export const STEPS = ['node', 'pluginsync', 'catalog', 'file_metadata', 'file_content', 'report', 'agent-run'] as const;
export type Step = (typeof STEPS)[number];

export interface RequestRecord {
  /** The agent's certname. */
  agent: string;
  /** The run's transaction_uuid: the same id the report carries into PuppetDB. */
  runId: string;
  step: Step;
  /** e.g. `GET /puppet/v3/node/<certname>` (no query string). */
  request: string;
  /** The HTTP status, or 'connection-error' when no answer came; a real agent run records its exit code. */
  status: number | 'connection-error';
  /** The error code of a connection error (ECONNREFUSED, ERR_TLS_CERT_ALTNAME_INVALID, UND_ERR_SOCKET…). */
  errorCode?: string;
  /** Retry-After of a 503 (a Puppet Server with no free JRuby answers so). */
  retryAfter?: string;
  /** The start of the body of an answer that was not 2xx, on one line: Puppet Server says why. */
  detail?: string;
  ok: boolean;
  latencyMs: number;
  /** Epoch ms when the request was sent. */
  startedAt: number;
  /** CN of the certificate the TLS peer presented: through a TCP pass-through load balancer, the compile master's own. */
  answeredBy?: string;
}

export interface RunRecord {
  agent: string;
  runId: string;
  startedAt: number;
  durationMs: number;
  ok: boolean;
  /** The step whose failure ended the run. */
  failedStep?: Step;
  /** Why, when it was an answer the agent could not use rather than a failed request. */
  error?: string;
}

export interface Window {
  /** Epoch ms, inclusive. */
  from?: number;
  /** Epoch ms, exclusive. */
  to?: number;
}

export interface FleetSummary {
  window: { from: number | null; to: number | null };
  requests: number;
  failures: number;
  failuresByStep: Partial<Record<Step, number>>;
  /** 'connection-error:ECONNREFUSED', '503', …: what went wrong, counted. */
  failuresByKind: Record<string, number>;
  runs: { started: number; succeeded: number; failed: number };
  /** Latency of the successful catalog requests (ms); null without any. */
  catalog: { count: number; p50Ms: number | null; p95Ms: number | null; maxMs: number | null };
  /** Requests answered per compile master certname (requests without a TLS peer are not counted). */
  byCompileMaster: Record<string, number>;
}

/** Nearest-rank percentile of ascending `sorted`; null when empty. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** What went wrong with a failed request: its HTTP status, or `connection-error:<code>`. */
export function failureKind(record: RequestRecord): string {
  return record.status === 'connection-error' ? `connection-error:${record.errorCode ?? 'unknown'}` : String(record.status);
}

function inWindow(startedAt: number, window: Window): boolean {
  return (window.from === undefined || startedAt >= window.from) && (window.to === undefined || startedAt < window.to);
}

/** Counts over the requests and runs that started inside `window` (everything when it is empty). */
export function summarize(records: readonly RequestRecord[], runs: readonly RunRecord[], window: Window = {}): FleetSummary {
  const selected = records.filter((record) => inWindow(record.startedAt, window));
  const failuresByStep: Partial<Record<Step, number>> = {};
  const failuresByKind: Record<string, number> = {};
  const byCompileMaster: Record<string, number> = {};
  const catalogLatencies: number[] = [];
  let failures = 0;
  for (const record of selected) {
    if (record.answeredBy !== undefined) byCompileMaster[record.answeredBy] = (byCompileMaster[record.answeredBy] ?? 0) + 1;
    if (record.ok) {
      if (record.step === 'catalog') catalogLatencies.push(record.latencyMs);
      continue;
    }
    failures += 1;
    failuresByStep[record.step] = (failuresByStep[record.step] ?? 0) + 1;
    const kind = failureKind(record);
    failuresByKind[kind] = (failuresByKind[kind] ?? 0) + 1;
  }
  catalogLatencies.sort((a, b) => a - b);
  const selectedRuns = runs.filter((run) => inWindow(run.startedAt, window));
  const succeeded = selectedRuns.filter((run) => run.ok).length;
  return {
    window: { from: window.from ?? null, to: window.to ?? null },
    requests: selected.length,
    failures,
    failuresByStep,
    failuresByKind,
    runs: { started: selectedRuns.length, succeeded, failed: selectedRuns.length - succeeded },
    catalog: {
      count: catalogLatencies.length,
      p50Ms: percentile(catalogLatencies, 50),
      p95Ms: percentile(catalogLatencies, 95),
      maxMs: catalogLatencies.at(-1) ?? null,
    },
    byCompileMaster,
  };
}
