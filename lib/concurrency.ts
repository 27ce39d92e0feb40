/**
 * Maps with at most `limit` calls in flight: a batch of 50 purges must neither open 50
 * connections to PuppetDB at once nor run one after another. Every item is attempted even when
 * one fails (each call is safe to repeat, so finishing the others is pure gain); the first
 * failure is thrown once all have settled.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  const failures: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index] as T);
      } catch (error) {
        failures.push(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failures.length > 0) throw failures[0];
  return results;
}
