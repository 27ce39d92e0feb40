// @peculiar/x509 resolves its crypto providers through tsyringe, which needs this polyfill first.
import 'reflect-metadata';
import { X509Certificate as NodeX509Certificate, createPrivateKey } from 'node:crypto';
import { X509Certificate } from '@peculiar/x509';
import { parseBundle, parseToken } from '../lambdas/controller/aws/secrets';
import type { ClientBundle } from '../lambdas/controller/ports';
import { ConfigError } from '../lib/errors';
import { explain } from './checks';

/** What an operator may see about a verified client certificate: nothing secret. */
export interface BundleSummary {
  certname: string | undefined;
  notAfter: Date;
  issuer: string;
}

const MAX_CHAIN = 5;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Checks a lifecycle client bundle the way the primary will: the certificate chains to the CA
 * (signatures and validity of every link), the key is the certificate's, and it is valid now.
 * Messages name the part that is wrong, never its content.
 */
export async function verifyBundle(bundle: ClientBundle, where: string, now: Date = new Date()): Promise<BundleSummary> {
  // The controller's own shape rules, so nothing is stored that it would refuse to read.
  rewordHint(() => parseBundle(JSON.stringify(bundle), where), 'pass PEM files: the certificate, its unencrypted private key and the CA certificate(s)');
  const cert = parseCertificate(bundle.cert, `${where}: the certificate`);
  const authorities = (bundle.ca.match(PEM_CERTIFICATE) ?? []).map((pem, index) => parseCertificate(pem, `${where}: CA certificate #${index + 1}`));
  if (cert.notBefore > now || cert.notAfter < now) {
    throw new ConfigError(`${where}: the certificate is valid only from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}`, {
      hint: 'make a new lifecycle client certificate on the primary (npx compile-masters primary-setup shows how)',
    });
  }
  await verifyChain(cert, authorities, where, now);
  if (!keyMatches(bundle.cert, bundle.key, where)) {
    throw new ConfigError(`${where}: the private key does not belong to the certificate`, {
      hint: 'use the key file made together with this certificate (private_keys/<certname>.pem next to certs/<certname>.pem)',
    });
  }
  return { certname: cert.subjectName.getField('CN')[0], notAfter: cert.notAfter, issuer: cert.issuer };
}

/** The RBAC token as the controller will read it; empty counts as missing. */
export function verifyToken(text: string, where: string): string {
  const token = rewordHint(() => parseToken(text, where), 'the file must hold the token alone, as `puppet access login --print` prints it');
  if (token.length === 0) {
    throw new ConfigError(`${where}: the RBAC token is empty`, { hint: 'mint one with `puppet access login --lifetime 1y --print` on the primary' });
  }
  return token;
}

/** The controller's rules, with a hint for someone holding files rather than filling a secret by hand. */
function rewordHint<T>(parse: () => T, hint: string): T {
  try {
    return parse();
  } catch (error) {
    throw new ConfigError(explain(error).detail, { cause: error, hint });
  }
}

function parseCertificate(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (cause) {
    throw new ConfigError(`${what} is not a readable PEM certificate`, { cause });
  }
}

async function verifyChain(cert: X509Certificate, authorities: X509Certificate[], where: string, now: Date): Promise<void> {
  let current = cert;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    const issuer = authorities.find((candidate) => candidate.subject === current.issuer);
    const verified = issuer !== undefined && (await current.verify({ publicKey: issuer, date: now }).catch(() => false));
    if (!issuer || !verified) {
      throw new ConfigError(`${where}: ${depth === 0 ? 'the certificate' : `the CA certificate "${current.subject}"`} is not ${issuer ? 'validly ' : ''}signed by any certificate in the CA file (issuer "${current.issuer}")`, {
        hint: "use the primary's CA certificate (puppet config print localcacert --section server) and a certificate that CA issued",
      });
    }
    if (issuer.subject === issuer.issuer) return;
    current = issuer;
  }
  throw new ConfigError(`${where}: the CA chain is longer than ${MAX_CHAIN} certificates or loops`);
}

function keyMatches(certPem: string, keyPem: string, where: string): boolean {
  try {
    return new NodeX509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch (cause) {
    throw new ConfigError(`${where}: the private key is not a readable PEM key`, { cause });
  }
}
