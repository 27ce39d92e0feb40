import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import * as z from 'zod';
import { type AwsCall, sdkCall } from '../../../lib/aws-calls';
import { ConfigError, SecretMissingError } from '../../../lib/errors';
import type { ClientBundle, SecretsPort } from '../ports';
import { errorName, toAwsCallError } from './call';

/** The calls below, for the IAM simulation suite. */
export const SECRETS_CALLS: readonly AwsCall[] = [sdkCall('secretsmanager:GetSecretValue', 'clientCertSecret')];
/** Only with the orchestrator: no other primary run has a token. */
export const RBAC_TOKEN_CALLS: readonly AwsCall[] = [sdkCall('secretsmanager:GetSecretValue', 'rbacTokenSecret')];

const pem = (label: RegExp, what: string) => z.string(`must be a string holding ${what}`).regex(label, `must hold ${what}`);
const BundleSchema = z.object({
  cert: pem(/-----BEGIN CERTIFICATE-----/, 'a PEM certificate'),
  key: pem(/-----BEGIN (?:RSA |EC )?PRIVATE KEY-----/, 'a PEM private key'),
  ca: pem(/-----BEGIN CERTIFICATE-----/, 'the PEM CA certificate'),
});

/** How long a secret read is used before it is read again: a rotation takes over within this. */
export const SECRETS_MAX_AGE_MS = 10 * 60_000;

export interface SecretsOptions {
  maxAgeMs?: number;
  now?: () => number;
  /** A re-read failed and the last good value stays in use; told which secret and why (no value). */
  onStale?: (what: string, error: unknown) => void;
}

/**
 * Reads the secrets (the client certificate bundle; the RBAC token only with an orchestrator) on first use and again once they are older than SECRETS_MAX_AGE_MS, so a
 * rotated token or certificate bundle takes over without a redeploy. A failed first read is not
 * cached: the next invocation tries again. A failed re-read (Secrets Manager unreachable, a
 * malformed new value) keeps the last good value, says so through onStale, and is tried again on
 * the next use. A re-read that finds the same value returns the very object read before. Values
 * appear in no error message: only which field is wrong.
 */
export class SecretsManagerSecrets implements SecretsPort {
  private readonly bundle: CachedSecret<ClientBundle>;
  /** Only a stack whose primary runs through the orchestrator has a token secret. */
  private readonly token: CachedSecret<string> | undefined;

  constructor(
    private readonly client: SecretsManagerClient,
    arns: { clientCert: string; rbacToken?: string },
    { maxAgeMs = SECRETS_MAX_AGE_MS, now = Date.now, onStale = () => {} }: SecretsOptions = {},
  ) {
    const bundleWhat = 'lifecycle client certificate bundle';
    this.bundle = new CachedSecret(() => this.read(arns.clientCert, bundleWhat).then((text) => parseBundle(text, arns.clientCert)), maxAgeMs, now, (error) => onStale(bundleWhat, error));
    const tokenArn = arns.rbacToken;
    this.token = new CachedSecret(
      () => (tokenArn === undefined ? Promise.reject(noTokenSecret()) : this.read(tokenArn, 'RBAC token').then((text) => parseToken(text, tokenArn))),
      maxAgeMs,
      now,
      (error) => onStale('RBAC token', error),
    );
  }

  clientBundle(): Promise<ClientBundle> {
    return this.bundle.get();
  }

  rbacToken(): Promise<string> {
    if (!this.token) return Promise.reject(new ConfigError('No RBAC token secret is configured', { hint: 'only a primary run through the orchestrator needs one' }));
    return this.token.get();
  }

  private async read(arn: string, what: string): Promise<string> {
    try {
      const answer = await this.client.send(new GetSecretValueCommand({ SecretId: arn }));
      if (!answer.SecretString?.trim()) throw new SecretMissingError(`The ${what} secret ${arn} is empty`, arn, { hint: putHint(what) });
      return answer.SecretString;
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      if (errorName(error) === 'ResourceNotFoundException') {
        throw new SecretMissingError(`The ${what} secret ${arn} has no value (or does not exist)`, arn, { cause: error, hint: putHint(what) });
      }
      throw toAwsCallError('GetSecretValue', error);
    }
  }
}

class CachedSecret<T> {
  private last: { value: T; readAt: number } | undefined;
  private pending: Promise<T> | undefined;

  constructor(
    private readonly load: () => Promise<T>,
    private readonly maxAgeMs: number,
    private readonly now: () => number,
    private readonly onStale: (error: unknown) => void,
  ) {}

  get(): Promise<T> {
    const last = this.last;
    if (last && this.now() - last.readAt < this.maxAgeMs) return Promise.resolve(last.value);
    this.pending ??= this.load()
      .then(
        (value) => {
          // An unchanged value stays the same object, so a caller can tell a change by identity.
          const kept = last && JSON.stringify(last.value) === JSON.stringify(value) ? last.value : value;
          this.last = { value: kept, readAt: this.now() };
          return kept;
        },
        (error: unknown) => {
          if (!last) throw error;
          this.onStale(error);
          return last.value;
        },
      )
      .finally(() => (this.pending = undefined));
    return this.pending;
  }
}

function noTokenSecret(): ConfigError {
  return new ConfigError('No RBAC token secret is configured', { hint: 'only the orchestrator runner reads the token: set PRIMARY_RUN=orchestrator with RBAC_TOKEN_SECRET_ARN, or leave the token out' });
}

function putHint(what: string): string {
  return what === 'RBAC token'
    ? 'store the token as plain text: aws secretsmanager put-secret-value --secret-id <arn> --secret-string file://token'
    : 'store {"cert","key","ca"} (PEM) as JSON: aws secretsmanager put-secret-value --secret-id <arn> --secret-string file://bundle.json';
}

export function parseBundle(text: string, arn: string): ClientBundle {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError(`The lifecycle client certificate bundle secret ${arn} is not JSON`, { hint: putHint('bundle') });
  }
  const parsed = BundleSchema.safeParse(json);
  if (!parsed.success) {
    // Only field names and expectations: the values may be key material.
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(document)'} ${issue.message}`);
    throw new ConfigError(`The lifecycle client certificate bundle secret ${arn} is wrong: ${problems.join('; ')}`, { hint: putHint('bundle') });
  }
  return parsed.data;
}

export function parseToken(text: string, arn: string): string {
  const token = text.trim();
  if (/\s/.test(token) || token.startsWith('{')) {
    throw new ConfigError(`The RBAC token secret ${arn} does not hold a bare token`, { hint: putHint('RBAC token') });
  }
  return token;
}
