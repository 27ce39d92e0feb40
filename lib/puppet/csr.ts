// @peculiar/x509 resolves its crypto providers through tsyringe, which needs this polyfill first.
import 'reflect-metadata';
import * as asn1js from 'asn1js';
import { Pkcs10CertificateRequest, SubjectAlternativeNameExtension } from '@peculiar/x509';
import { RefusedInputError } from '../errors';
import { extensionName, isPuppetArc } from './extensions';

export interface CsrFacts {
  /** The subject's CN: Puppet's certname. */
  commonName: string | undefined;
  /** DNS subject alternative names requested. */
  dnsAltNames: string[];
  /** Non-DNS alternative names (IP, URI, email...) — normally none; any is grounds to refuse. */
  otherAltNames: string[];
  /** Requested Puppet extensions, by short name where known, else by OID. */
  puppetExtensions: Record<string, string>;
  /** Requested extensions outside Puppet's arcs and SAN (e.g. basicConstraints CA:true). */
  otherExtensionOids: string[];
  /** Whether the CSR is signed by the key it carries. */
  signatureValid: boolean;
  /**
   * SHA-256 of the SubjectPublicKeyInfo, hex. The CA signs whatever CSR it holds at signing time,
   * so a signer compares this with the issued certificate's key to prove it signed what it checked.
   */
  publicKeySha256: string;
}

const SAN_OID = '2.5.29.17';
const MAX_CSR_PEM_LENGTH = 16_384;

/** Reads what a CSR asks for, so the controller can decide whether to sign it. */
export async function readCsr(pem: string): Promise<CsrFacts> {
  if (pem.length > MAX_CSR_PEM_LENGTH) throw new RefusedInputError(`Refused CSR: ${pem.length} bytes is too large`);
  let csr: Pkcs10CertificateRequest;
  try {
    csr = new Pkcs10CertificateRequest(pem);
  } catch (cause) {
    throw new RefusedInputError('Refused CSR: it is not a PEM-encoded PKCS#10 request', { cause });
  }
  const commonNames = csr.subjectName.getField('CN');
  const sanRaw = csr.getExtension(SAN_OID);
  const names = sanRaw ? new SubjectAlternativeNameExtension(sanRaw.rawData).names.items : [];
  const puppetExtensions: Record<string, string> = {};
  const otherExtensionOids: string[] = [];
  for (const extension of csr.extensions) {
    if (isPuppetArc(extension.type)) puppetExtensions[extensionName(extension.type)] = decodeExtensionValue(extension.value);
    else if (extension.type !== SAN_OID) otherExtensionOids.push(extension.type);
  }
  return {
    commonName: commonNames.length === 1 ? commonNames[0] : undefined,
    dnsAltNames: names.filter((name) => name.type === 'dns').map((name) => name.value),
    otherAltNames: names.filter((name) => name.type !== 'dns').map((name) => `${name.type}:${name.value}`),
    puppetExtensions,
    otherExtensionOids,
    signatureValid: await csr.verify().catch(() => false),
    publicKeySha256: Buffer.from(await csr.publicKey.getThumbprint('SHA-256')).toString('hex'),
  };
}

/**
 * Puppet DER-encodes extension values as a UTF8String inside the extension's OCTET STRING (older
 * agents wrote the bare string); accept both, as Puppet Server does.
 */
export function decodeExtensionValue(value: ArrayBuffer): string {
  const parsed = asn1js.fromBER(value);
  if (parsed.offset !== -1 && parsed.offset === value.byteLength) {
    const block = parsed.result;
    if (block instanceof asn1js.Utf8String || block instanceof asn1js.PrintableString || block instanceof asn1js.IA5String) {
      return block.valueBlock.value;
    }
  }
  return new TextDecoder('utf-8', { fatal: false }).decode(value);
}
