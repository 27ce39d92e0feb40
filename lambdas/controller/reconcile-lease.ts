import { CompileMastersError } from '../../lib/errors';
import type { Log } from './execute';
import type { LeasePort } from './ports';

/**
 * One reconcile at a time, without reserved concurrency (issue 12): the SQS event source runs at
 * most EVENT_SOURCE_MAX_CONCURRENCY invocations, so it never receives a batch it cannot hand to
 * one, and the invocations take turns through a lease in the registry table. An invocation that
 * finds the lease held waits for it instead of failing its batch, so contention costs no receive.
 */

/** The controller's Lambda timeout; the stack sets it from here. */
export const CONTROLLER_TIMEOUT_SECONDS = 120;
/** The least maximum concurrency Lambda accepts for an SQS event source. */
export const EVENT_SOURCE_MAX_CONCURRENCY = 2;
/**
 * Longer than an invocation can live, counted from when it took the lease (after it started): a
 * live holder never loses the lease, and one that crashed or timed out frees it by itself.
 */
export const LEASE_SECONDS = CONTROLLER_TIMEOUT_SECONDS + 30;
/**
 * The invocation's own pass gets at least this much of its time: it waits for the lease only
 * until then. Passes take seconds; with two invocations at most, a waiter follows the one holder.
 */
export const PASS_RESERVE_SECONDS = 60;
export const LEASE_POLL_MILLISECONDS = 500;
/** How long a waiter's claim on the next turn lasts unless it asks again (it does every poll). */
export const NEXT_TURN_SECONDS = 5;

export interface LeaseTurn {
  lease: LeasePort;
  /** Unique per invocation: the Lambda request id. */
  holder: string;
  clock: () => Date;
  sleep: (milliseconds: number) => Promise<void>;
  /** When to give up waiting (the invocation's deadline less PASS_RESERVE_SECONDS). */
  waitUntil: Date;
  logger: Log;
}

/** The lease stayed held for the whole wait: the batch fails and comes back after the visibility timeout. */
export class LeaseBusyError extends CompileMastersError {
  override name = 'LeaseBusyError';
}

/** Runs `pass` while holding the lease, waiting for it first if another invocation holds it. */
export async function whileHoldingLease<T>(turn: LeaseTurn, pass: () => Promise<T>): Promise<T> {
  const { lease, holder, clock, logger } = turn;
  const began = clock().getTime();
  for (;;) {
    const now = clock();
    const until = { lease: new Date(now.getTime() + LEASE_SECONDS * 1000), nextTurn: new Date(now.getTime() + NEXT_TURN_SECONDS * 1000) };
    if (await lease.acquire(holder, now, until)) break;
    if (now.getTime() + LEASE_POLL_MILLISECONDS > turn.waitUntil.getTime()) {
      throw new LeaseBusyError(`another reconcile held the lease for the whole wait (${Math.round((now.getTime() - began) / 1000)} s)`, {
        hint: 'its holder may have died mid-pass: the lease expires by itself and this batch comes back after the visibility timeout',
      });
    }
    await turn.sleep(LEASE_POLL_MILLISECONDS);
  }
  const waited = clock().getTime() - began;
  if (waited > 0) logger.debug('Waited for the reconcile lease', { waitedMs: waited });
  try {
    return await pass();
  } finally {
    try {
      await lease.release(holder);
    } catch (error) {
      // The pass's outcome stands; the lease runs out by itself within LEASE_SECONDS.
      logger.warn('Could not release the reconcile lease; it expires by itself', { error: error as Error });
    }
  }
}
