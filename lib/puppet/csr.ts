// @peculiar/x509 resolves its crypto providers through tsyringe, which needs this polyfill first.
import 'reflect-metadata';
import * as asn1js from 'asn1js';
import { Pkcs10CertificateRequest, SubjectAlternativeNameExtension, type Extension } from '@peculiar/x509';
import { RefusedInputError } from '../errors';
import { extensionName, isPuppetArc } from './extensions';

export interface CsrFacts extends NamesAndExtensions {
  /** The subject's CN: Puppet's certname. */
  commonName: string | undefined;
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
  return {
    commonName: commonNames.length === 1 ? commonNames[0] : undefined,
    ...readNamesAndExtensions(csr.extensions),
    signatureValid: await csr.verify().catch(() => false),
    publicKeySha256: Buffer.from(await csr.publicKey.getThumbprint('SHA-256')).toString('hex'),
  };
}

export interface NamesAndExtensions {
  dnsAltNames: string[];
  /** Non-DNS alternative names (IP, URI, email...) — never legitimate for a compile master. */
  otherAltNames: string[];
  /** Puppet extensions by short name where known, else by OID. */
  puppetExtensions: Record<string, string>;
  /** Extensions outside Puppet's arcs and SAN (e.g. basicConstraints CA:true). */
  otherExtensionOids: string[];
}

/** What a CSR requests or a certificate carries: alternative names and extensions, sorted out. */
export function readNamesAndExtensions(extensions: readonly Extension[]): NamesAndExtensions {
  const result: NamesAndExtensions = { dnsAltNames: [], otherAltNames: [], puppetExtensions: {}, otherExtensionOids: [] };
  for (const extension of extensions) {
    if (extension.type === SAN_OID) {
      for (const name of new SubjectAlternativeNameExtension(extension.rawData).names.items) {
        if (name.type === 'dns') result.dnsAltNames.push(name.value);
        else result.otherAltNames.push(`${name.type}:${name.value}`);
      }
    } else if (isPuppetArc(extension.type)) {
      result.puppetExtensions[extensionName(extension.type)] = decodeExtensionValue(extension.value);
    } else {
      result.otherExtensionOids.push(extension.type);
    }
  }
  return result;
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
