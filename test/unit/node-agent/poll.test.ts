import { describe, expect, it } from 'vitest';
import { CompileMastersError } from '../../../lib/errors';
import { pollUntil } from '../../../node-agent/src/poll';
import { fakeClock } from './fakes';

describe('pollUntil', () => {
  it('returns as soon as the probe has a value, sleeping full-jitter backoff in between', async () => {
    const clock = fakeClock();
    let calls = 0;
    const value = await pollUntil(async () => (++calls === 4 ? 'signed' : undefined), { what: 'x', timeoutMs: 60_000, backoff: { baseDelayMs: 1_000, maxDelayMs: 3_000 }, clock });
    expect(value).toBe('signed');
    // random() = 0.5 of min(max, base·2^n): 500, 1000, 1500 (capped at 3000).
    expect(clock.slept).toEqual([500, 1_000, 1_500]);
  });

  it('gives up at the deadline with what it waited for, the hint and the last reason', async () => {
    const clock = fakeClock();
    const reason = new Error('CA refused the connection');
    const attempt = pollUntil(async () => undefined, {
      what: 'the CA to answer',
      timeoutMs: 10_000,
      backoff: { baseDelayMs: 1_000, maxDelayMs: 2_000 },
      clock,
      hint: 'nothing was changed',
      lastReason: () => reason,
    });
    await expect(attempt).rejects.toBeInstanceOf(CompileMastersError);
    await expect(attempt).rejects.toThrow('Gave up waiting for the CA to answer after 10 s — nothing was changed');
    await expect(attempt).rejects.toHaveProperty('cause', reason);
    expect(clock.slept.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(10_000);
  });

  it('lets a probe error through at once', async () => {
    await expect(pollUntil(async () => Promise.reject(new Error('refused')), { what: 'x', timeoutMs: 1_000, backoff: { baseDelayMs: 1, maxDelayMs: 1 }, clock: fakeClock() })).rejects.toThrow('refused');
  });
});
