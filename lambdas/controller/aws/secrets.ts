import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import * as z from 'zod';
import { ConfigError } from '../../../lib/errors';
import type { ClientBundle, SecretsPort } from '../ports';
import { errorName, toAwsCallError } from './call';

const pem = (label: RegExp, what: string) => z.string(`must be a string holding ${what}`).regex(label, `must hold ${what}`);
const BundleSchema = z.object({
  cert: pem(/-----BEGIN CERTIFICATE-----/, 'a PEM certificate'),
  key: pem(/-----BEGIN (?:RSA |EC )?PRIVATE KEY-----/, 'a PEM private key'),
  ca: pem(/-----BEGIN CERTIFICATE-----/, 'the PEM CA certificate'),
});

/**
 * Reads the two secrets once per container. A failed read is not cached, so the next invocation
 * tries again. Values appear in no error message: only which field is wrong.
 */
export class SecretsManagerSecrets implements SecretsPort {
  private bundle: Promise<ClientBundle> | undefined;
  private token: Promise<string> | undefined;

  constructor(
    private readonly client: SecretsManagerClient,
    private readonly arns: { clientCert: string; rbacToken: string },
  ) {}

  clientBundle(): Promise<ClientBundle> {
    this.bundle ??= this.read(this.arns.clientCert, 'lifecycle client certificate bundle').then((text) => parseBundle(text, this.arns.clientCert));
    this.bundle.catch(() => (this.bundle = undefined));
    return this.bundle;
  }

  rbacToken(): Promise<string> {
    this.token ??= this.read(this.arns.rbacToken, 'RBAC token').then((text) => parseToken(text, this.arns.rbacToken));
    this.token.catch(() => (this.token = undefined));
    return this.token;
  }

  private async read(arn: string, what: string): Promise<string> {
    try {
      const answer = await this.client.send(new GetSecretValueCommand({ SecretId: arn }));
      if (!answer.SecretString?.trim()) throw new ConfigError(`The ${what} secret ${arn} is empty`, { hint: putHint(what) });
      return answer.SecretString;
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      if (errorName(error) === 'ResourceNotFoundException') {
        throw new ConfigError(`The ${what} secret ${arn} has no value (or does not exist)`, { cause: error, hint: putHint(what) });
      }
      throw toAwsCallError('GetSecretValue', error);
    }
  }
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
