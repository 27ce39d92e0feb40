import { AwsCallError } from '../../../lib/errors';

/** Attempts per call, including the SDK's own retries of throttled and transient errors. */
export const SDK_MAX_ATTEMPTS = 6;

/** Runs one AWS call; an SDK failure (after the SDK's own retries) becomes an AwsCallError. */
export async function awsCall<T>(operation: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (cause) {
    throw toAwsCallError(operation, cause);
  }
}

/** Names the operation and keeps the SDK error as `cause`, for the log. */
export function toAwsCallError(operation: string, cause: unknown): AwsCallError {
  const name = errorName(cause) ?? 'Error';
  const message = cause instanceof Error ? cause.message : String(cause);
  const throttled = /Throttl|TooManyRequests|RequestLimitExceeded/.test(name);
  return new AwsCallError(`${operation} failed: ${name}: ${message}`, {
    cause,
    hint: throttled ? 'AWS kept throttling after the SDK retried; the queue will deliver the trigger again' : undefined,
  });
}

/** The SDK's error name, for the few errors that mean "already done" or "lost a race". */
export function errorName(error: unknown): string | undefined {
  const name = (error as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' ? name : undefined;
}
