import { RefusedInputError } from './errors';

/**
 * Certnames we accept: lowercase DNS-style names (what EC2 private DNS names and sensible Puppet
 * certnames look like). Puppet itself allows far more; we do not, because a certname ends up in
 * URL paths of APIs that can revoke certificates, and in registry keys.
 */
const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const CERTNAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
export const MAX_CERTNAME_LENGTH = 253;

export function certnameProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return 'is not a string';
  if (value.length === 0) return 'is empty';
  if (value.length > MAX_CERTNAME_LENGTH) return `is ${value.length} characters long (at most ${MAX_CERTNAME_LENGTH})`;
  if (!CERTNAME.test(value)) {
    return 'is not a lowercase DNS-style name (only a-z, 0-9, "-" and "." between labels; no "/", "%", "..", spaces or uppercase)';
  }
  return undefined;
}

export function isValidCertname(value: unknown): value is string {
  return certnameProblem(value) === undefined;
}

/** Returns the certname unchanged, or throws a RefusedInputError that shows (a safe prefix of) it. */
export function assertCertname(value: unknown, what = 'certname'): string {
  const problem = certnameProblem(value);
  if (problem) {
    throw new RefusedInputError(`Refused ${what} ${describeUntrusted(value)}: it ${problem}`);
  }
  return value as string;
}

/** A short, printable rendering of untrusted input for log lines and error messages. */
export function describeUntrusted(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  const shown = text.length > 80 ? `${text.slice(0, 80)}…(${text.length} chars)` : text;
  return JSON.stringify(shown);
}
