import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Checks an AWS Signature Version 4 Authorization header the way an AWS front end does, for a
 * request whose body it has in full. Written from the SigV4 specification (canonical request,
 * string to sign, derived key) rather than with the SDK's own signer, so a test that passes
 * shows the SDK and the specification agree, not that a signer agrees with itself.
 */

export interface SignedRequest {
  method: string;
  /** The request target as received: path and query, still percent-encoded. */
  url: string;
  /** Node's `rawHeaders`: name, value, name, value… as they came, duplicates kept. */
  rawHeaders: readonly string[];
  body: Buffer;
}

export interface SigningKey {
  secret: string;
}

export type SigV4Result<K extends SigningKey> =
  | { ok: true; accessKeyId: string; key: K; signedAt: Date }
  | { ok: false; reason: 'missing' | 'malformed' | 'unknown-key' | 'scope' | 'mismatch' | 'skewed'; message: string; accessKeyId?: string };

const ALGORITHM = 'AWS4-HMAC-SHA256';
const AUTHORIZATION = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([a-z0-9\-;]+),\s*Signature=([0-9a-f]{64})$/;

export function verifySigV4<K extends SigningKey>(
  request: SignedRequest,
  expected: { region: string; service: string; now: Date; maxSkewMs: number },
  keyFor: (accessKeyId: string) => K | undefined,
): SigV4Result<K> {
  const headers = headerValues(request.rawHeaders);
  const authorization = headers.get('authorization');
  if (authorization === undefined) return { ok: false, reason: 'missing', message: 'Request is missing Authentication Token' };
  const match = AUTHORIZATION.exec(authorization);
  if (!match) return { ok: false, reason: 'malformed', message: `Authorization header requires the ${ALGORITHM} form: Credential, SignedHeaders and Signature` };
  const [, accessKeyId = '', scopeDate = '', region, service, signedHeaderList = '', signature = ''] = match;
  const amzDate = headers.get('x-amz-date');
  const signedAt = amzDate === undefined ? undefined : parseAmzDate(amzDate);
  if (!signedAt) return { ok: false, reason: 'malformed', message: 'Authorization header requires an X-Amz-Date header of the form yyyyMMddTHHmmssZ', accessKeyId };
  if (region !== expected.region || service !== expected.service || scopeDate !== amzDate?.slice(0, 8)) {
    return { ok: false, reason: 'scope', message: `Credential should be scoped to a valid region, service and date: ${scopeDate}/${expected.region}/${expected.service}/aws4_request`, accessKeyId };
  }
  const signedHeaders = signedHeaderList.split(';');
  if (!signedHeaders.includes('host') || !signedHeaders.includes('x-amz-date') || signedHeaders.join(';') !== [...signedHeaders].sort().join(';')) {
    return { ok: false, reason: 'malformed', message: 'SignedHeaders must be sorted and include host and x-amz-date', accessKeyId };
  }
  const key = keyFor(accessKeyId);
  if (!key) return { ok: false, reason: 'unknown-key', message: 'The security token included in the request is invalid.', accessKeyId };

  const missing = signedHeaders.find((name) => !headers.has(name));
  const canonicalRequest = [
    request.method,
    canonicalUri(request.url),
    canonicalQuery(request.url),
    ...signedHeaders.map((name) => `${name}:${(headers.get(name) ?? '').trim().replace(/\s+/g, ' ')}`),
    '',
    signedHeaderList,
    sha256Hex(request.body),
  ].join('\n');
  const scope = `${scopeDate}/${region}/${service}/aws4_request`;
  const stringToSign = [ALGORITHM, amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${key.secret}`, scopeDate), expected.region), expected.service), 'aws4_request');
  const computed = Buffer.from(hmac(signingKey, stringToSign).toString('hex'));
  // @aws-sdk/client-sqs 3.1169 sends and signs x-amz-content-sha256; were it trusted without
  // this check, the signature would cover the header's hash and not the body that came.
  const declaredHash = headers.get('x-amz-content-sha256');
  if (missing !== undefined || (declaredHash !== undefined && declaredHash !== sha256Hex(request.body)) || !timingSafeEqual(computed, Buffer.from(signature))) {
    return {
      ok: false,
      reason: 'mismatch',
      message: 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
      accessKeyId,
    };
  }
  const skew = Math.abs(expected.now.getTime() - signedAt.getTime());
  if (skew > expected.maxSkewMs) {
    return { ok: false, reason: 'skewed', message: `Signature expired: ${amzDate} is outside ${expected.maxSkewMs / 60_000} min. of ${amzDateOf(expected.now)}`, accessKeyId };
  }
  return { ok: true, accessKeyId, key, signedAt };
}

/** Lower-case header name → values in arrival order joined with ',' (SigV4's rule for repeats). */
function headerValues(rawHeaders: readonly string[]): Map<string, string> {
  const values = new Map<string, string>();
  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    const name = (rawHeaders[index] ?? '').toLowerCase();
    const value = (rawHeaders[index + 1] ?? '').trim();
    const before = values.get(name);
    values.set(name, before === undefined ? value : `${before},${value}`);
  }
  return values;
}

/** Non-S3 services: each path segment URI-encoded once more (the path arrives encoded already). */
function canonicalUri(url: string): string {
  const path = url.split('?')[0] || '/';
  return path.split('/').map(rfc3986).join('/');
}

function canonicalQuery(url: string): string {
  const query = url.includes('?') ? url.slice(url.indexOf('?') + 1) : '';
  if (query === '') return '';
  return [...new URLSearchParams(query)]
    .map(([name, value]) => [rfc3986(name), rfc3986(value)] as const)
    .sort(([a, av], [b, bv]) => (a === b ? (av < bv ? -1 : av > bv ? 1 : 0) : a < b ? -1 : 1))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

function rfc3986(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (character) => `%${character.charCodeAt(0).toString(16).toUpperCase()}`);
}

function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

function parseAmzDate(text: string): Date | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!match) return undefined;
  const [, year, month, day, hour, minute, second] = match.map(Number);
  const date = new Date(Date.UTC(year ?? 0, (month ?? 1) - 1, day, hour, minute, second));
  return Number.isNaN(date.getTime()) ? undefined : date;
}

export function amzDateOf(at: Date): string {
  return at.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
}
