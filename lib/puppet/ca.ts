import * as z from 'zod';
import { assertCertname } from '../certname';
import { PuppetEndpoint, parseJson, type EndpointOptions } from './http';

const PREFIX = '/puppet-ca/v1';

export const CertStatusSchema = z.looseObject({
  name: z.string(),
  state: z.enum(['requested', 'signed', 'revoked']),
  fingerprint: z.string().optional(),
  fingerprints: z.record(z.string(), z.string()).optional(),
  serial_number: z.number().optional(),
  dns_alt_names: z.array(z.string()).optional(),
  subject_alt_names: z.array(z.string()).optional(),
  authorization_extensions: z.record(z.string(), z.string()).optional(),
  not_before: z.string().optional(),
  not_after: z.string().optional(),
});
export type CertStatus = z.infer<typeof CertStatusSchema>;
export type CertState = CertStatus['state'];

export interface CrlResult {
  pem: string;
  lastModified: string | undefined;
}

/**
 * How Puppet Server 7 words its 409s for CSRs its ca.conf does not allow
 * (certificate_authority.clj: "CSR 'x' contains extra subject alternative names (…), which are
 * disallowed. To allow subject alternative names, set allow-subject-alt-names to true …").
 */
export const CA_REFUSALS = {
  altNames: /subject alternative names .*which are disallowed|allow-subject-alt-names/i,
  authorizationExtensions: /authorization extensions? .*which (is|are) disallowed|allow-authorization-extensions/i,
} as const;

const ALT_NAMES_HINT =
  "the CA refuses to sign CSRs with subject alternative names: set 'allow-subject-alt-names: true' in ca.conf on the primary and restart puppetserver";
const AUTH_EXT_HINT =
  "the CA refuses to sign CSRs with authorization extensions (pp_auth_*): set 'allow-authorization-extensions: true' in ca.conf";

/** Puppet Server's CA API (port 8140, /puppet-ca/v1). Certnames are validated before any call. */
export class CaClient {
  private readonly endpoint: PuppetEndpoint;

  constructor(options: Omit<EndpointOptions, 'server'>) {
    this.endpoint = new PuppetEndpoint({ ...options, server: 'ca' });
  }

  /** The CSR or certificate status; undefined when the CA knows neither. */
  async getStatus(certname: string): Promise<CertStatus | undefined> {
    const result = await this.endpoint.call({
      operation: 'certificate_status',
      method: 'GET',
      path: `${PREFIX}/certificate_status/${encode(certname)}`,
      accept: [200, 404],
    });
    return result.status === 404 ? undefined : parseJson(CertStatusSchema, result, 'ca', 'certificate_status');
  }

  async listStatuses(state?: CertState): Promise<CertStatus[]> {
    const result = await this.endpoint.call({
      operation: 'certificate_statuses',
      method: 'GET',
      path: `${PREFIX}/certificate_statuses/any`,
      query: state ? { state } : undefined,
      accept: [200],
    });
    return parseJson(z.array(CertStatusSchema), result, 'ca', 'certificate_statuses');
  }

  /** Signs a pending CSR. The caller validates the CSR first; the CA only checks its own policy. */
  async sign(certname: string, options: { ttlSeconds?: number } = {}): Promise<void> {
    await this.endpoint.call({
      operation: 'sign',
      method: 'PUT',
      path: `${PREFIX}/certificate_status/${encode(certname)}`,
      body: { desired_state: 'signed', ...(options.ttlSeconds ? { cert_ttl: options.ttlSeconds } : {}) },
      accept: [204],
      hint: (status, body) => {
        if (status !== 409) return undefined;
        if (CA_REFUSALS.altNames.test(body)) return ALT_NAMES_HINT;
        if (CA_REFUSALS.authorizationExtensions.test(body)) return AUTH_EXT_HINT;
        return 'there is no pending CSR to sign (already signed, or never submitted)';
      },
    });
  }

  /** Adds the certificate to the CRL; revoking a revoked certificate succeeds. */
  async revoke(certname: string): Promise<void> {
    await this.endpoint.call({
      operation: 'revoke',
      method: 'PUT',
      path: `${PREFIX}/certificate_status/${encode(certname)}`,
      body: { desired_state: 'revoked' },
      accept: [204],
    });
  }

  /** Deletes the certificate and CSR files without revoking. Returns false when there was nothing. */
  async delete(certname: string): Promise<boolean> {
    const result = await this.endpoint.call({
      operation: 'delete',
      method: 'DELETE',
      path: `${PREFIX}/certificate_status/${encode(certname)}`,
      accept: [204, 404],
    });
    return result.status === 204;
  }

  /**
   * Revokes and deletes many certificates in one call (`puppetserver ca clean`). Certnames the CA
   * does not know are reported back, not treated as failures: cleaning twice is harmless.
   */
  async clean(certnames: readonly string[]): Promise<{ missing: string[] }> {
    if (certnames.length === 0) return { missing: [] };
    certnames.forEach((name) => assertCertname(name));
    const result = await this.endpoint.call({
      operation: 'clean',
      method: 'PUT',
      path: `${PREFIX}/clean`,
      body: { certnames },
      accept: [200],
    });
    return { missing: parseMissing(result.text) };
  }

  /** The pending CSR as PEM; undefined when there is none. Unauthenticated on the CA side. */
  async getCsr(certname: string): Promise<string | undefined> {
    return this.getPem('certificate_request', certname);
  }

  async getCertificate(certname: string): Promise<string | undefined> {
    return this.getPem('certificate', certname);
  }

  async submitCsr(certname: string, csrPem: string): Promise<void> {
    await this.endpoint.call({
      operation: 'submit certificate_request',
      method: 'PUT',
      path: `${PREFIX}/certificate_request/${encode(certname)}`,
      body: csrPem,
      headers: { 'content-type': 'text/plain' },
      accept: [200],
    });
  }

  /** The CA's CRL; 'not-modified' when `ifModifiedSince` (an HTTP date) is still current. */
  async getCrl(ifModifiedSince?: string): Promise<CrlResult | 'not-modified'> {
    const result = await this.endpoint.call({
      operation: 'certificate_revocation_list',
      method: 'GET',
      path: `${PREFIX}/certificate_revocation_list/ca`,
      headers: ifModifiedSince ? { 'if-modified-since': ifModifiedSince } : {},
      accept: [200, 304],
    });
    if (result.status === 304) return 'not-modified';
    return { pem: result.text, lastModified: crlValidator(result.headers) };
  }

  close(): Promise<void> {
    return this.endpoint.close();
  }

  private async getPem(kind: 'certificate_request' | 'certificate', certname: string): Promise<string | undefined> {
    const result = await this.endpoint.call({
      operation: kind,
      method: 'GET',
      path: `${PREFIX}/${kind}/${encode(certname)}`,
      headers: { accept: 'text/plain' },
      accept: [200, 404],
    });
    return result.status === 404 ? undefined : result.text;
  }
}

/**
 * What to send as If-Modified-Since next time. Puppet Server 7 honours the header but sends no
 * Last-Modified, so fall back to a second before the answer's Date: at worst one needless 200,
 * never a missed revocation.
 */
function crlValidator(headers: Record<string, string | string[] | undefined>): string | undefined {
  const first = (name: string) => {
    const value = headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const lastModified = first('last-modified');
  if (lastModified) return lastModified;
  const date = Date.parse(first('date') ?? '');
  return Number.isNaN(date) ? undefined : new Date(date - 1_000).toUTCString();
}

function encode(certname: string): string {
  return encodeURIComponent(assertCertname(certname));
}

/** "The following certs do not exist and cannot be revoked: [a, b]" → ["a", "b"]. */
export function parseMissing(text: string): string[] {
  const match = /do not exist[^[]*\[([^\]]*)\]/.exec(text);
  if (!match?.[1]) return [];
  return match[1]
    .split(',')
    .map((name) => name.trim().replace(/^"|"$/g, ''))
    .filter((name) => name.length > 0);
}
