import 'reflect-metadata';
import { createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import * as asn1js from 'asn1js';
import {
  Extension,
  PemConverter,
  Pkcs10CertificateRequestGenerator,
  SubjectAlternativeNameExtension,
  type JsonGeneralName,
} from '@peculiar/x509';
import { CaClient, PUPPET_EXTENSION_OIDS, type PuppetExtensionName } from '../lib/puppet';
import { loadLab, readPems, type LabDescription } from './running-lab';

export interface CsrOptions {
  certname: string;
  /** Subject CN; defaults to the certname (set it to build a mismatching CSR). */
  commonName?: string;
  dnsAltNames?: string[];
  /** IP alternative names: never legitimate for a compile master, handy for refusal tests. */
  ipAltNames?: string[];
  /** Extension requests by Puppet short name or dotted OID, as csr_attributes.yaml's extension_requests. */
  extensions?: Partial<Record<PuppetExtensionName, string>> & Record<string, string>;
  /**
   * A key pair from generateKeyPair() to reuse: RSA 2048 generation costs ~0.25 s of CPU here, which
   * adds up in tests that enroll hundreds of nodes. The CA does not mind shared keys.
   */
  keyPair?: webcrypto.CryptoKeyPair;
}

export interface GeneratedCsr {
  certname: string;
  csrPem: string;
  privateKeyPem: string;
}

const RSA: webcrypto.RsaHashedKeyGenParams = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };

export async function generateKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

/** A PEM private key (PKCS#1 or PKCS#8, as Puppet or the node agent wrote it) as a key pair for makeCsr(). */
export async function keyPairFromPem(privateKeyPem: string): Promise<webcrypto.CryptoKeyPair> {
  const pkcs8 = createPrivateKey(privateKeyPem).export({ type: 'pkcs8', format: 'der' });
  const spki = createPublicKey(privateKeyPem).export({ type: 'spki', format: 'der' });
  return {
    privateKey: await webcrypto.subtle.importKey('pkcs8', pkcs8, RSA, true, ['sign']),
    publicKey: await webcrypto.subtle.importKey('spki', spki, RSA, true, ['verify']),
  };
}

/** Puppet DER-encodes each requested extension value as a UTF8String inside the extension. */
function puppetExtension(nameOrOid: string, value: string): Extension {
  const oid = PUPPET_EXTENSION_OIDS[nameOrOid as PuppetExtensionName] ?? nameOrOid;
  if (!/^\d+(\.\d+)+$/.test(oid)) throw new Error(`unknown Puppet extension ${nameOrOid}`);
  return new Extension(oid, false, new asn1js.Utf8String({ value }).toBER(false));
}

/**
 * An RSA 2048 key and a PKCS#10 CSR, made in memory the way `puppet ssl submit_request` makes
 * them: CN = certname, alt names and extension requests in the extReq attribute. (RSA because
 * Puppet Server 7's CA signs it everywhere; EC support came later and is patchy.)
 */
export async function makeCsr(options: CsrOptions): Promise<GeneratedCsr> {
  const keys = options.keyPair ?? (await generateKeyPair());
  const altNames: JsonGeneralName[] = [
    ...(options.dnsAltNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ipAltNames ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const extensions: Extension[] = Object.entries(options.extensions ?? {}).map(([name, value]) => puppetExtension(name, value));
  if (altNames.length > 0) extensions.push(new SubjectAlternativeNameExtension(altNames));
  const csr = await Pkcs10CertificateRequestGenerator.create(
    { name: [{ CN: [options.commonName ?? options.certname] }], keys, signingAlgorithm: RSA, extensions },
    webcrypto,
  );
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certname: options.certname, csrPem: csr.toString('pem'), privateKeyPem: PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}

/** Submits a CSR as an agent does: unauthenticated PUT to the CA, TLS verified against the lab CA. */
export async function submitCsr(csr: GeneratedCsr, lab: LabDescription = loadLab()): Promise<void> {
  const ca = new CaClient({ baseUrl: lab.ca.url, tls: { ca: readPems(lab).ca } });
  try {
    await ca.submitCsr(csr.certname, csr.csrPem);
  } finally {
    await ca.close();
  }
}

/** makeCsr + submitCsr: the CA now holds a pending request for the certname. */
export async function requestCertificate(options: CsrOptions, lab: LabDescription = loadLab()): Promise<GeneratedCsr> {
  const csr = await makeCsr(options);
  await submitCsr(csr, lab);
  return csr;
}
