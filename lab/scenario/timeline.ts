import type { RecordingLogger } from '../recorders';

export interface TimelineEvent {
  /** Seconds since the scenario started. */
  at: number;
  who: string;
  text: string;
}

export interface StepRecord {
  number: number;
  title: string;
  seconds: number;
  events: TimelineEvent[];
}

/** Controller log messages worth a line in the timeline; the rest are in the full log. */
const NOTABLE = new Set([
  'Signed',
  'Signed re-enrollment',
  'Purged',
  'Lifecycle action completed',
  'Refused: abandoning the launch',
  'Refused a certificate request',
  "Started the primary's run",
  "The primary's run finished",
  "The primary's run failed after retrying",
  'Drift',
  'Reconcile failed; its messages will be retried',
  'Controller crashed mid-batch; the whole batch comes back after the visibility timeout',
  'Compile master in service',
  'Registry entry marked purged without touching Puppet',
  'Completing terminate action without a purge',
  'Message ignored',
  'Malformed message dropped',
  'Message dropped: its sender may not say this',
  'Removed a certificate request the instance did not make',
  'Damaged registry item left alone',
]);

/**
 * What happened, step by step, with times: the controller's own log lines (the notable ones),
 * what the scenario did, node agents' decisions and faults. `names` turns instance ids and
 * certnames into the scenario's labels so lines stay short.
 */
export class Timeline {
  readonly steps: StepRecord[] = [];
  private readonly started = Date.now();
  private current: StepRecord | undefined;
  private seen = 0;

  constructor(
    private readonly logger: RecordingLogger,
    private readonly names: (text: string) => string,
  ) {}

  async step(number: number, title: string, work: () => Promise<void>): Promise<void> {
    this.current = { number, title, seconds: 0, events: [] };
    this.steps.push(this.current);
    const started = Date.now();
    try {
      await work();
    } finally {
      this.collect();
      this.current.seconds = (Date.now() - started) / 1000;
    }
  }

  note(who: string, text: string): void {
    this.collect();
    this.current?.events.push({ at: this.elapsed(), who, text: this.names(text) });
  }

  /** Moves the controller's new log lines into the current step. */
  collect(): void {
    const lines = this.logger.lines.slice(this.seen);
    this.seen = this.logger.lines.length;
    for (const line of lines) {
      if (!NOTABLE.has(line.message)) continue;
      this.current?.events.push({ at: this.elapsed(), who: 'controller', text: this.names(describeLine(line.message, line.attributes)) });
    }
  }

  format(): string {
    const out: string[] = [];
    for (const step of this.steps) {
      out.push(`${step.number}. ${step.title}  (${step.seconds.toFixed(1)} s)`);
      for (const event of step.events) out.push(`   +${event.at.toFixed(1).padStart(6)} s  ${event.who.padEnd(12)} ${event.text}`);
    }
    return out.join('\n');
  }

  private elapsed(): number {
    return (Date.now() - this.started) / 1000;
  }
}

/** One controller log line as text: the message and the attributes an operator would look at. */
export function describeLine(message: string, attributes: unknown): string {
  const fields = (attributes ?? {}) as Record<string, unknown>;
  const shown: string[] = [];
  for (const key of ['instanceId', 'instanceIds', 'certname', 'certnames', 'hook', 'result', 'outcome', 'runId', 'covers', 'detail', 'reason', 'reasons', 'action', 'error']) {
    const value = fields[key];
    if (value === undefined) continue;
    const text = value instanceof Error ? value.message : Array.isArray(value) ? value.join(', ') : String(value);
    if (key === 'certname' && fields.instanceId !== undefined) continue;
    const short = text.length > 160 ? `${text.slice(0, 160)}…` : text;
    shown.push(key === 'instanceId' || key === 'instanceIds' || key === 'certname' || key === 'certnames' ? short : `${key}: ${short}`);
  }
  return shown.length > 0 ? `${message} — ${shown.join('; ')}` : message;
}
