import type { Logger } from '../../../node-agent/src/log';
import type { Clock } from '../../../node-agent/src/poll';

export function memoryLog(): Logger & { lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const at = (level: string) => (message: string, fields: Record<string, unknown> = {}) => lines.push({ level, message, ...fields });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

/** Time that moves only when the code under test sleeps. */
export function fakeClock(start = Date.parse('2026-01-01T00:00:00Z')): Clock & { slept: number[] } {
  let now = start;
  const slept: number[] = [];
  return {
    slept,
    now: () => now,
    random: () => 0.5,
    sleep: async (ms) => {
      slept.push(ms);
      now += ms;
    },
  };
}

/** A CRL signed by a test CA, listing the given serials (hex). */
export async function makeCrl(ca: { cert: string; key: string }, serialsHex: string[]): Promise<string> {
  const { webcrypto } = await import('node:crypto');
  const x509 = await import('@peculiar/x509');
  const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const der = x509.PemConverter.decodeFirst(ca.key);
  const signingKey = await webcrypto.subtle.importKey('pkcs8', der, algorithm, false, ['sign']);
  const crl = await x509.X509CrlGenerator.create({
    issuer: new x509.X509Certificate(ca.cert).subject,
    signingKey: signingKey as unknown as Parameters<typeof x509.X509CrlGenerator.create>[0]["signingKey"],
    signingAlgorithm: algorithm,
    thisUpdate: new Date(Date.now() - 60_000),
    nextUpdate: new Date(Date.now() + 86_400_000),
    entries: serialsHex.map((serialNumber) => ({ serialNumber, revocationDate: new Date(Date.now() - 30_000) })),
  });
  // RFC 7468's label, which Puppet (OpenSSL) writes and lib/puppet reads.
  return crl.toString('pem').replace(/-----(BEGIN|END) CRL-----/g, '-----$1 X509 CRL-----');
}
