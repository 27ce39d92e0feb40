import { describe, expect, it } from 'vitest';
import { PUPPETDB_CONCURRENCY, removeFromPuppet } from '../../../lambdas/controller/puppet-purge';

/** A Puppet side that records calls and can fail the CA, to observe what the purge attempts. */
function recordingPuppet(options: { failClean?: boolean } = {}) {
  const calls = { cleaned: [] as string[][], deactivated: [] as string[], maxInFlight: 0 };
  let inFlight = 0;
  return {
    calls,
    puppet: {
      async clean(certnames: readonly string[]) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        if (options.failClean) throw new Error('CA down');
        calls.cleaned.push([...certnames]);
      },
      async deactivate(certname: string) {
        inFlight++;
        calls.maxInFlight = Math.max(calls.maxInFlight, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 1));
        inFlight--;
        calls.deactivated.push(certname);
      },
    },
  };
}

describe('removeFromPuppet', () => {
  const certnames = Array.from({ length: 20 }, (_, i) => `ip-10-0-0-${i}.lab.test`);

  it('cleans the whole batch in one CA call and deactivates each node with bounded concurrency', async () => {
    const { puppet, calls } = recordingPuppet();
    await removeFromPuppet(puppet, certnames, new Date());
    expect(calls.cleaned).toEqual([certnames]);
    expect(calls.deactivated.sort()).toEqual([...certnames].sort());
    expect(calls.maxInFlight).toBe(PUPPETDB_CONCURRENCY);
  });

  it('still deactivates every node when the CA fails, then reports the CA failure', async () => {
    const { puppet, calls } = recordingPuppet({ failClean: true });
    await expect(removeFromPuppet(puppet, certnames, new Date())).rejects.toThrow('CA down');
    expect(calls.deactivated).toHaveLength(certnames.length);
  });
});
