import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  PemConverter,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509Certificate,
  X509CertificateGenerator,
} from '@peculiar/x509';

/**
 * The lab's own "AWS" certificate authority: the machines trust it (NODE_EXTRA_CA_CERTS) for the
 * AWS endpoints the lab serves, and for nothing else. Separate from the Puppet CA on purpose: a
 * machine that trusts it gains no Puppet identity, and the Puppet CA never signs an AWS name.
 * ECDSA P-256, because key generation is instant and Node's TLS takes it.
 */
export interface AwsLabCa {
  /** Where the CA certificate lives on this machine (copy it into a machine). */
  certPath: string;
  certPem: string;
  keyPem: string;
}

export interface ServerCertificate {
  certPem: string;
  keyPem: string;
}

const EC: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const DAY_MS = 24 * 3600 * 1000;

/**
 * The CA kept under `<labDir>/aws-ca/`, made on first use. Concurrent first uses both make one and
 * the first rename wins; the loser reads the winner's, so everyone trusts the same CA.
 */
export async function labAwsCa(labDir: string): Promise<AwsLabCa> {
  const dir = join(labDir, 'aws-ca');
  const existing = await readCa(dir);
  if (existing) return existing;
  const staging = `${dir}.${randomBytes(6).toString('hex')}`;
  await mkdir(staging, { recursive: true, mode: 0o700 });
  const { certPem, keyPem } = await newCa();
  await writeFile(join(staging, 'ca-key.pem'), keyPem, { mode: 0o600 });
  await writeFile(join(staging, 'ca.pem'), certPem, { mode: 0o644 });
  try {
    await rename(staging, dir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    if (!['ENOTEMPTY', 'EEXIST'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
  }
  const ca = await readCa(dir);
  if (!ca) throw new Error(`the lab AWS CA under ${dir} is incomplete: delete the directory`);
  return ca;
}

async function readCa(dir: string): Promise<AwsLabCa | undefined> {
  const certPath = join(dir, 'ca.pem');
  try {
    return { certPath, certPem: await readFile(certPath, 'utf8'), keyPem: await readFile(join(dir, 'ca-key.pem'), 'utf8') };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function newCa(): Promise<ServerCertificate> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: 'CN=Compile masters lab AWS CA, O=compile-masters lab',
      notBefore: new Date(now - DAY_MS),
      notAfter: new Date(now + 10 * 365 * DAY_MS),
      keys,
      signingAlgorithm: SIGNING,
      extensions: [
        new BasicConstraintsExtension(true, 0, true),
        new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
        await SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  );
  return { certPem: cert.toString('pem'), keyPem: await pkcs8Pem(keys.privateKey) };
}

/** A fresh key and a server certificate for `dnsNames`, signed by the CA, valid a year. */
export async function issueServerCertificate(ca: AwsLabCa, dnsNames: readonly string[]): Promise<ServerCertificate> {
  const caCert = new X509Certificate(ca.certPem);
  const caKey = await webcrypto.subtle.importKey('pkcs8', PemConverter.decodeFirst(ca.keyPem), EC, false, ['sign']);
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await X509CertificateGenerator.create(
    {
      serialNumber: serial(),
      subject: `CN=${dnsNames[0]}`,
      issuer: caCert.subject,
      notBefore: new Date(now - DAY_MS),
      notAfter: new Date(now + 365 * DAY_MS),
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: SIGNING,
      extensions: [
        new BasicConstraintsExtension(false, undefined, true),
        new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
        new ExtendedKeyUsageExtension([ExtendedKeyUsage.serverAuth]),
        new SubjectAlternativeNameExtension(dnsNames.map((value) => ({ type: 'dns' as const, value }))),
        await AuthorityKeyIdentifierExtension.create(caCert, false, webcrypto),
        await SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  );
  return { certPem: cert.toString('pem'), keyPem: await pkcs8Pem(keys.privateKey) };
}

async function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  return PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

/** A positive 16-byte serial (the top bit cleared so DER keeps it positive without padding). */
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}
