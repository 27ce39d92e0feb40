// In-memory stand-ins for the Powertools logger and metrics: the lab's controller and the unit
// tests read what the controller logged and counted.

/** Collects metrics as Powertools would publish them. */
export class RecordingMetrics {
  readonly counts = new Map<string, number>();

  addMetric(name: string, _unit: unknown, value: number): this {
    this.counts.set(name, (this.counts.get(name) ?? 0) + value);
    return this;
  }

  get(name: string): number {
    return this.counts.get(name) ?? 0;
  }
}

/** A logger that keeps its lines, serialised the way they would be printed. */
export class RecordingLogger {
  readonly lines: Array<{ level: string; message: string; attributes: unknown }> = [];
  /** Called with each line as it is logged (the lab's live trace). */
  onLine?: (line: { level: string; message: string; attributes: unknown }) => void;

  debug(message: string, attributes?: Record<string, unknown>): void {
    this.record('debug', message, attributes);
  }
  info(message: string, attributes?: Record<string, unknown>): void {
    this.record('info', message, attributes);
  }
  warn(message: string, attributes?: Record<string, unknown>): void {
    this.record('warn', message, attributes);
  }
  error(message: string, attributes?: Record<string, unknown>): void {
    this.record('error', message, attributes);
  }

  messages(level?: string): string[] {
    return this.lines.filter((line) => !level || line.level === level).map((line) => line.message);
  }

  private record(level: string, message: string, attributes: unknown): void {
    this.lines.push({ level, message, attributes });
    this.onLine?.({ level, message, attributes });
  }
}
