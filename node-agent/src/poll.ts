import { CompileMastersError } from '../../lib/errors';
import { backoffDelay, type RetryPolicy } from '../../lib/puppet';

export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
  random(): number;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
};

export interface PollOptions {
  /** What we wait for, for the timeout message: "the certificate to be signed". */
  what: string;
  timeoutMs: number;
  /** `attempts` is ignored: the deadline bounds the wait. */
  backoff: Omit<RetryPolicy, 'attempts'>;
  clock: Clock;
  hint?: string;
  /** The last reason for "not yet", attached to the timeout error as its cause. */
  lastReason?: () => unknown;
}

/**
 * Calls `probe` until it returns a value, sleeping a full-jitter backoff between tries so that
 * a group scaling out by many instances does not poll the CA in lockstep. `probe` returns
 * undefined for "not yet" and throws for anything that waiting cannot fix.
 */
export async function pollUntil<T>(probe: () => Promise<T | undefined>, options: PollOptions): Promise<T> {
  const { clock } = options;
  const deadline = clock.now() + options.timeoutMs;
  for (let attempt = 0; ; attempt++) {
    const value = await probe();
    if (value !== undefined) return value;
    const delay = backoffDelay(attempt, { attempts: Number.POSITIVE_INFINITY, ...options.backoff }, clock.random);
    if (clock.now() + delay > deadline) {
      throw new CompileMastersError(`Gave up waiting for ${options.what} after ${Math.round(options.timeoutMs / 1000)} s`, {
        cause: options.lastReason?.(),
        hint: options.hint,
      });
    }
    await clock.sleep(delay);
  }
}
