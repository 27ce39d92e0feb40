// @peculiar/x509 resolves its crypto providers through tsyringe, which needs this polyfill first.
import 'reflect-metadata';
import { X509Certificate, X509Crl } from '@peculiar/x509';

/** Serial numbers are compared as integers: the CA API gives decimals, X.509 gives hex. */
export function serialToBigInt(serial: string | number | bigint): bigint {
  if (typeof serial === 'bigint') return serial;
  if (typeof serial === 'number') return BigInt(serial);
  const hex = serial.replace(/[^0-9a-f]/gi, '');
  return BigInt(`0x${hex || '0'}`);
}

export function crlSerials(crlPem: string): Set<bigint> {
  const crl = new X509Crl(crlPem);
  return new Set(crl.entries.map((entry) => serialToBigInt(entry.serialNumber)));
}

export function isSerialRevoked(crlPem: string, serial: string | number | bigint): boolean {
  return crlSerials(crlPem).has(serialToBigInt(serial));
}

export interface CertificateFacts {
  subjectCommonName: string | undefined;
  issuer: string;
  serial: bigint;
  /** "AB:CD:…", SHA-256, the format Puppet's CA reports as `fingerprint`. */
  sha256Fingerprint: string;
  notAfter: Date;
  /** SHA-256 of the SubjectPublicKeyInfo, hex: compare with CsrFacts.publicKeySha256. */
  publicKeySha256: string;
}

export async function certificateFacts(pem: string): Promise<CertificateFacts> {
  const cert = new X509Certificate(pem);
  const thumbprint = new Uint8Array(await cert.getThumbprint('SHA-256'));
  return {
    subjectCommonName: cert.subjectName.getField('CN')[0],
    issuer: cert.issuer,
    serial: serialToBigInt(cert.serialNumber),
    sha256Fingerprint: [...thumbprint].map((byte) => byte.toString(16).padStart(2, '0').toUpperCase()).join(':'),
    notAfter: cert.notAfter,
    publicKeySha256: Buffer.from(await cert.publicKey.getThumbprint('SHA-256')).toString('hex'),
  };
}
