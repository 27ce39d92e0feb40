/** One fault of the `--faults` run: what, when, and how the system got over it. */
export interface FaultRecord {
  fault: string;
  step: number;
  /** Seconds since the scenario started. */
  injectedAt: number;
  recoveredAt?: number;
  /** How the system recovered, as observed. */
  recovery: string;
}

interface PendingRecovery {
  record: FaultRecord;
  ready: () => boolean;
  recover: () => Promise<void>;
  running?: Promise<void>;
  error?: unknown;
}

/**
 * The faults injected during a run, and the repairs waiting for their moment: a stopped server
 * comes back once the controller has met the fault, not after a fixed sleep, so every fault is
 * really seen. Repairs run beside the controller (a CA restart takes ~40 s), polled by `tick`.
 */
export class FaultLog {
  readonly records: FaultRecord[] = [];
  private readonly pending: PendingRecovery[] = [];
  private readonly started = Date.now();

  /** Records a fault injected now; `recovery` says how the system is expected to get over it. */
  injected(fault: string, step: number, recovery: string): FaultRecord {
    const record: FaultRecord = { fault, step, injectedAt: this.elapsed(), recovery };
    this.records.push(record);
    return record;
  }

  /** Repairs the fault with `recover` once `ready` holds (checked on every tick). */
  repairWhen(record: FaultRecord, ready: () => boolean, recover: () => Promise<void> = async () => undefined): void {
    this.pending.push({ record, ready, recover });
  }

  /** Marks a fault the system got over by itself (a lost event, a throttled call). */
  recovered(record: FaultRecord): void {
    record.recoveredAt ??= this.elapsed();
  }

  /** Starts repairs whose moment has come; rethrows a repair's failure. */
  tick(): void {
    const failed = this.pending.find((item) => item.error !== undefined);
    if (failed) throw failed.error;
    this.startReady();
  }

  /**
   * Starts repairs whose moment has come, without judging earlier ones: also called from inside
   * the controller's port calls, where a hung call would otherwise hold back its own repair.
   */
  startReady(): void {
    for (const item of this.pending) if (!item.running && item.ready()) this.start(item);
  }

  /** Whether a repair is under way (e.g. a server still starting). */
  repairing(): boolean {
    return this.pending.some((item) => item.running !== undefined);
  }

  /**
   * Ends every repair, starting those whose moment never came: the shared lab must never be left
   * with a server stopped.
   */
  async settle(): Promise<void> {
    for (const item of this.pending) if (!item.running) this.start(item);
    await Promise.all(this.pending.map((item) => item.running));
    const failed = this.pending.find((item) => item.error !== undefined);
    this.pending.length = 0;
    if (failed) throw failed.error;
  }

  private start(item: PendingRecovery): void {
    item.running = item.recover().then(
      () => {
        item.record.recoveredAt = this.elapsed();
        this.pending.splice(this.pending.indexOf(item), 1);
      },
      (error: unknown) => {
        item.error = error ?? new Error('repair failed');
      },
    );
  }

  private elapsed(): number {
    return (Date.now() - this.started) / 1000;
  }
}
