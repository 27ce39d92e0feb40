import { Logger } from '@aws-lambda-powertools/logger';

const SECRET_KEYS = /^(key|token|password|secret|privateKey|rbacToken)$/i;
const PRIVATE_KEY_PEM = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/**
 * Second line of defence behind "never pass a secret to the logger": whatever reaches a log line
 * under a secret-sounding key, or looks like a private key, is replaced.
 */
export function redactSecrets(key: string, value: unknown): unknown {
  if (SECRET_KEYS.test(key) && value !== undefined) return '[redacted]';
  if (typeof value === 'string' && PRIVATE_KEY_PEM.test(value)) return '[redacted private key]';
  return value;
}

/** Service name and level come from POWERTOOLS_SERVICE_NAME and POWERTOOLS_LOG_LEVEL. */
export function createLogger(): Logger {
  return new Logger({ jsonReplacerFn: redactSecrets });
}
