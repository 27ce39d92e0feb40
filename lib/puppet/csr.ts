import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { Certificate, Extensions, GeneralName, SubjectAlternativeName, type Extension, type Name, type SubjectPublicKeyInfo } from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';
import { RefusedInputError } from '../errors';
import { extensionName, isPuppetArc } from './extensions';

/*
 * CSRs and certificates are read here with @peculiar's ASN.1 schemas and Node's own crypto, not
 * with @peculiar/x509: that library brings a WebCrypto provider registry (tsyringe,
 * reflect-metadata) and CMS, PKCS#8/#9/#12 and post-quantum schemas, ~170 KB of the controller's
 * bundle parsed at every cold start, for what is two ASN.1 reads and one signature check here.
 * lib/puppet/x509.ts keeps @peculiar/x509 for CRLs, which only the node agent, the CLI and the
 * tests read.
 */

export interface CsrFacts extends NamesAndExtensions {
  /** The subject's CN: Puppet's certname. */
  commonName: string | undefined;
  /** Whether the CSR is signed, with a SHA-2 RSA, ECDSA or Ed25519 signature, by the key it carries. */
  signatureValid: boolean;
  /**
   * SHA-256 of the public key, hex. The CA signs whatever CSR it holds at signing time, so a
   * signer compares this (with the names and extensions) with what the CA issued.
   */
  publicKeySha256: string;
}

const SAN_OID = '2.5.29.17';
const COMMON_NAME_OID = '2.5.4.3';
const EXTENSION_REQUEST_OID = '1.2.840.113549.1.9.14';
const MAX_CSR_PEM_LENGTH = 16_384;

/**
 * Signature algorithms a Puppet agent uses (RSA by default, EC or Ed25519 with `key_type`), with
 * their digest and key type. Anything else (SHA-1, RSA-PSS parameters, unknown OIDs) does not
 * verify: a compile master from this project's bootstrap never sends one.
 */
const SIGNATURE_ALGORITHMS: ReadonlyMap<string, { digest: string | null; keyType: string }> = new Map([
  ['1.2.840.113549.1.1.11', { digest: 'sha256', keyType: 'rsa' }],
  ['1.2.840.113549.1.1.12', { digest: 'sha384', keyType: 'rsa' }],
  ['1.2.840.113549.1.1.13', { digest: 'sha512', keyType: 'rsa' }],
  ['1.2.840.10045.4.3.2', { digest: 'sha256', keyType: 'ec' }],
  ['1.2.840.10045.4.3.3', { digest: 'sha384', keyType: 'ec' }],
  ['1.2.840.10045.4.3.4', { digest: 'sha512', keyType: 'ec' }],
  ['1.3.101.112', { digest: null, keyType: 'ed25519' }],
]);

/** Reads what a CSR asks for, so the controller can decide whether to sign it. */
export function readCsr(pem: string): CsrFacts {
  if (pem.length > MAX_CSR_PEM_LENGTH) throw new RefusedInputError(`Refused CSR: ${pem.length} bytes is too large`);
  try {
    const der = pemBody(pem, /^(?:NEW )?CERTIFICATE REQUEST$/);
    const csr = AsnConvert.parse(der, CertificationRequest);
    // DER only, nothing before or after: what this reads is then exactly what the CA will read.
    if (!Buffer.from(AsnConvert.serialize(csr)).equals(Buffer.from(der))) throw new Error('not a DER-encoded PKCS#10 request');
    const key = publicKey(csr.certificationRequestInfo.subjectPKInfo);
    const info = csr.certificationRequestInfo;
    const requests = info.attributes.filter((attribute) => attribute.type === EXTENSION_REQUEST_OID).flatMap((attribute) => attribute.values);
    // Which of two would the CA honour? Neither is worth finding out.
    if (requests.length > 1) throw new RefusedInputError('Refused CSR: it carries more than one extension request');
    const extensions = requests[0] === undefined ? [] : AsnConvert.parse(requests[0], Extensions);
    return {
      commonName: commonName(info.subject),
      ...readNamesAndExtensions(extensions),
      signatureValid: signatureVerifies(csr, key),
      publicKeySha256: keySha256(key),
    };
  } catch (cause) {
    if (cause instanceof RefusedInputError) throw cause;
    throw new RefusedInputError('Refused CSR: it is not a PEM-encoded PKCS#10 request', { cause });
  }
}

export interface CertificateContents extends NamesAndExtensions {
  commonName: string | undefined;
  /** Compare with CsrFacts.publicKeySha256. */
  publicKeySha256: string;
  serial: bigint;
  /**
   * "AB:CD:…", SHA-256 of the certificate's DER, the format Puppet's CA reports as `fingerprint`:
   * what tells this very certificate from another one issued for the same certname.
   */
  sha256Fingerprint: string;
}

/**
 * What a certificate certifies: whose it is, for which key, with which names and extensions, and
 * which certificate it is (serial, fingerprint). The first certificate of the PEM text counts, so
 * a certificate followed by its chain, or preceded by `openssl` bag attributes, reads as that
 * certificate.
 */
export function readCertificate(pem: string): CertificateContents {
  const block = /-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----/.exec(pem)?.[0];
  if (block === undefined) throw new RefusedInputError('Not a certificate: no PEM CERTIFICATE block');
  const der = pemBody(block, /^CERTIFICATE$/);
  const tbs = AsnConvert.parse(der, Certificate).tbsCertificate;
  return {
    commonName: commonName(tbs.subject),
    publicKeySha256: keySha256(publicKey(tbs.subjectPublicKeyInfo)),
    serial: BigInt(`0x${Buffer.from(tbs.serialNumber).toString('hex') || '0'}`),
    sha256Fingerprint: (createHash('sha256').update(Buffer.from(der)).digest('hex').toUpperCase().match(/../g) as string[]).join(':'),
    ...readNamesAndExtensions(tbs.extensions ?? []),
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
function readNamesAndExtensions(extensions: readonly Extension[]): NamesAndExtensions {
  const result: NamesAndExtensions = { dnsAltNames: [], otherAltNames: [], puppetExtensions: {}, otherExtensionOids: [] };
  const seen = new Set<string>();
  for (const extension of extensions) {
    // X.509 allows each extension once; with two pp_instance_id, which would count?
    if (seen.has(extension.extnID)) throw new RefusedInputError(`Refused: extension ${extensionName(extension.extnID)} appears more than once`);
    seen.add(extension.extnID);
    if (extension.extnID === SAN_OID) {
      for (const name of AsnConvert.parse(extension.extnValue.buffer, SubjectAlternativeName)) {
        if (name.dNSName !== undefined) result.dnsAltNames.push(name.dNSName);
        else result.otherAltNames.push(describeGeneralName(name));
      }
    } else if (isPuppetArc(extension.extnID)) {
      result.puppetExtensions[extensionName(extension.extnID)] = decodeExtensionValue(extension.extnValue.buffer);
    } else {
      result.otherExtensionOids.push(extension.extnID);
    }
  }
  return result;
}

/**
 * Puppet DER-encodes extension values as a UTF8String inside the extension's OCTET STRING (older
 * agents wrote the bare string); accept both, as Puppet Server does.
 */
function decodeExtensionValue(value: ArrayBuffer): string {
  const parsed = asn1js.fromBER(value);
  if (parsed.offset !== -1 && parsed.offset === value.byteLength) {
    const block = parsed.result;
    if (block instanceof asn1js.Utf8String || block instanceof asn1js.PrintableString || block instanceof asn1js.IA5String) {
      return block.valueBlock.value;
    }
  }
  return new TextDecoder('utf-8', { fatal: false }).decode(value);
}

/**
 * The DER inside one PEM block with the given label. Strict base64: Buffer's decoder skips junk
 * and stops at the first `=`, so the body must be exactly what the DER encodes to.
 */
function pemBody(pem: string, label: RegExp): ArrayBuffer {
  const match = /^\s*-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END \1-----\s*$/.exec(pem);
  if (!match || !label.test(match[1] as string)) throw new Error('not a single PEM block of the expected type');
  const base64 = (match[2] as string).replace(/\r?\n/g, '');
  const der = Buffer.from(base64, 'base64');
  if (der.toString('base64') !== base64) throw new Error('the PEM body is not plain base64');
  return der.buffer.slice(der.byteOffset, der.byteOffset + der.byteLength);
}

function publicKey(spki: SubjectPublicKeyInfo): KeyObject {
  return createPublicKey({ key: Buffer.from(AsnConvert.serialize(spki)), format: 'der', type: 'spki' });
}

/**
 * The project's one key hash (CsrFacts.publicKeySha256): what a node agent reports for the key it
 * is about to request a certificate for, and what the controller compares with the CSR. Takes a
 * public or private key, as a KeyObject or PEM; a private key hashes as its public half.
 */
export function publicKeySha256(key: KeyObject | string): string {
  return keySha256(typeof key !== 'string' && key.type === 'public' ? key : createPublicKey(key));
}

/**
 * Over the key's JWK members (RSA n and e, EC curve and x and y, OKP curve and x) rather than its
 * SPKI bytes, so a CSR's key and its certificate's key hash alike however either encodes it (an EC
 * point may come compressed in one and not in the other).
 */
function keySha256(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  const members = [jwk.kty, jwk.crv, jwk.n, jwk.e, jwk.x, jwk.y].map((member) => member ?? '');
  return createHash('sha256').update(members.join('.')).digest('hex');
}

function signatureVerifies(csr: CertificationRequest, key: KeyObject): boolean {
  const algorithm = SIGNATURE_ALGORITHMS.get(csr.signatureAlgorithm.algorithm);
  // The signature covers the request info exactly as sent; the parser keeps those bytes.
  const signed = csr.certificationRequestInfoRaw;
  if (!algorithm || algorithm.keyType !== key.asymmetricKeyType || !signed) return false;
  try {
    return verify(algorithm.digest, Buffer.from(signed), key, Buffer.from(csr.signature));
  } catch {
    return false;
  }
}

/**
 * The subject's CN when there is exactly one, as a string, as Puppet's certname; otherwise
 * undefined (refused). A CN of another ASN.1 type would read as hex, a plausible certname.
 */
function commonName(name: Name): string | undefined {
  const values = name.flatMap((rdn) => rdn.filter((attribute) => attribute.type === COMMON_NAME_OID)).map(({ value }) =>
    value.utf8String ?? value.printableString ?? value.ia5String ?? value.teletexString ?? value.bmpString ?? value.universalString,
  );
  return values.length === 1 ? values[0] : undefined;
}

function describeGeneralName(name: GeneralName): string {
  if (name.iPAddress !== undefined) return `ip:${name.iPAddress}`;
  if (name.rfc822Name !== undefined) return `email:${name.rfc822Name}`;
  if (name.uniformResourceIdentifier !== undefined) return `url:${name.uniformResourceIdentifier}`;
  if (name.registeredID !== undefined) return `id:${name.registeredID}`;
  if (name.otherName !== undefined) return `other:${name.otherName.typeId}`;
  if (name.directoryName !== undefined) return 'dn';
  return 'other';
}
