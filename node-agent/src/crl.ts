// @peculiar/x509 resolves its crypto providers through tsyringe, which needs this polyfill first.
import 'reflect-metadata';
import { X509Certificate, X509Crl } from '@peculiar/x509';
import * as asn1js from 'asn1js';

/**
 * Whether a CRL from the CA may replace the one this compile master's Puppet Server checks clients
 * against. Puppet 7's CA serves one PEM bundle with a CRL per CA of its chain (the intermediate's
 * and the root's), and Puppet keeps that bundle as hostcrl; each CRL is judged against the CRL of
 * the same issuer in the installed bundle.
 */

const PEM_CRL = /-----BEGIN (?:X509 )?CRL-----[\s\S]+?-----END (?:X509 )?CRL-----/g;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const CRL_NUMBER_OID = '2.5.29.20';

/** One CRL of a bundle, as far as the install decision cares. */
export interface CrlFacts {
  issuer: string;
  /** The CRLNumber extension (RFC 5280 5.2.3), which Puppet's CA raises at every revocation. */
  number: bigint | undefined;
  thisUpdate: Date;
  /** Its issuer is a certificate of the pinned CA bundle and its signature verifies with that key. */
  signedByPinnedCa: boolean;
}

export type CrlBundle = { readable: true; pem: string; crls: CrlFacts[] } | { readable: false; problem: string };

/** Parses a PEM CRL bundle and checks every CRL's signature against the pinned CA certificates. */
export async function inspectCrlBundle(pem: string, pinnedCaPem: string): Promise<CrlBundle> {
  const blocks = pem.match(PEM_CRL) ?? [];
  if (blocks.length === 0) return { readable: false, problem: 'no PEM CRL in it' };
  const cas = (pinnedCaPem.match(PEM_CERTIFICATE) ?? []).map((block) => new X509Certificate(block));
  try {
    const crls = await Promise.all(blocks.map((block) => crlFacts(block, cas)));
    return { readable: true, pem, crls };
  } catch (error) {
    return { readable: false, problem: `it does not parse: ${(error as Error).message}` };
  }
}

async function crlFacts(block: string, cas: readonly X509Certificate[]): Promise<CrlFacts> {
  // Same cap as crlSerials (lib/puppet/x509.ts): a busy CA's CRL passes asn1js's default 10,000 nodes.
  const crl = new X509Crl(block, { berOptions: { maxNodes: Math.max(10_000, block.length) } });
  const issuerCa = cas.find((ca) => ca.subject === crl.issuer);
  return {
    issuer: crl.issuer,
    number: crlNumber(crl),
    thisUpdate: crl.thisUpdate,
    signedByPinnedCa: issuerCa !== undefined && (await crl.verify({ publicKey: issuerCa })),
  };
}

function crlNumber(crl: X509Crl): bigint | undefined {
  const extension = crl.getExtension(CRL_NUMBER_OID);
  if (!extension) return undefined;
  const integer = asn1js.fromBER(extension.value).result;
  if (!(integer instanceof asn1js.Integer)) throw new Error('its CRL number is not an INTEGER');
  return integer.toBigInt();
}

export type CrlDecision = { kind: 'install'; reason: string } | { kind: 'unchanged' } | { kind: 'refuse'; reason: string };

/**
 * Install only a CRL the pinned CA signed, and never one older than what is installed: an older
 * CRL would re-admit every certificate revoked since. `installed` is undefined when there is no
 * file; CRLs in it that the pinned CA did not sign carry no information worth keeping.
 */
export function decideCrlInstall(fetched: CrlBundle, installed: CrlBundle | undefined): CrlDecision {
  if (!fetched.readable) return { kind: 'refuse', reason: `the CA's CRL is unreadable: ${fetched.problem}` };
  const unsigned = fetched.crls.find((crl) => !crl.signedByPinnedCa);
  if (unsigned) return { kind: 'refuse', reason: `the CA's CRL for "${unsigned.issuer}" is not signed by the pinned CA certificate` };
  if (installed === undefined) return { kind: 'install', reason: 'no CRL is installed' };
  if (!installed.readable) return { kind: 'install', reason: `the installed CRL is unreadable: ${installed.problem}` };
  if (samePem(fetched.pem, installed.pem)) return { kind: 'unchanged' };
  const changes: string[] = [];
  for (const old of installed.crls.filter((crl) => crl.signedByPinnedCa)) {
    const next = fetched.crls.find((crl) => crl.issuer === old.issuer);
    if (!next) return { kind: 'refuse', reason: `the CA's CRL has no CRL for "${old.issuer}", which the installed one has` };
    const order = compareCrls(next, old);
    if (order < 0) return { kind: 'refuse', reason: `the CA's CRL for "${old.issuer}" is older than the installed one (${describe(next)} < ${describe(old)})` };
    if (order > 0) changes.push(`"${old.issuer}" ${describe(old)} → ${describe(next)}`);
  }
  return { kind: 'install', reason: changes.length > 0 ? `newer: ${changes.join('; ')}` : 'it differs from the installed one and is not older' };
}

/** By CRL number when both have one (Puppet's CA always sets it), else by thisUpdate. */
export function compareCrls(a: CrlFacts, b: CrlFacts): number {
  if (a.number !== undefined && b.number !== undefined) return a.number === b.number ? 0 : a.number > b.number ? 1 : -1;
  return Math.sign(a.thisUpdate.getTime() - b.thisUpdate.getTime());
}

function describe(crl: CrlFacts): string {
  return crl.number === undefined ? `thisUpdate ${crl.thisUpdate.toISOString()}` : `number ${crl.number}`;
}

function samePem(a: string, b: string): boolean {
  return a.trim() === b.trim();
}
