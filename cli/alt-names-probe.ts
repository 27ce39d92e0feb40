// @peculiar/x509 resolves its crypto providers through tsyringe, which needs this polyfill first.
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { Pkcs10CertificateRequest, Pkcs10CertificateRequestGenerator, SubjectAlternativeNameExtension } from '@peculiar/x509';
import { PuppetApiError } from '../lib/errors';
import { CA_REFUSALS, type CaClient } from '../lib/puppet/ca';

export type AltNamesVerdict = { allowed: true } | { allowed: false; detail: string };

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
/** Its 409 for a CSR whose signature does not verify: the check after the alt-names one. */
const SIGNATURE_REFUSED = /does not correspond to the signing key/i;

/**
 * Asks the CA whether it would sign a CSR with subject alternative names, without it ever
 * issuing anything: the probe CSR asks for an alt name and carries a broken signature. Puppet
 * Server checks alt names before signatures, so the answer is the alt-names refusal when they are
 * disallowed and the signature refusal when they are allowed. The CSR is deleted afterwards.
 */
export async function probeAltNames(ca: CaClient): Promise<AltNamesVerdict> {
  const certname = `doctor-probe-${randomBytes(6).toString('hex')}.compile-masters.invalid`;
  await ca.submitCsr(certname, await brokenCsr(certname));
  try {
    await ca.sign(certname);
    return { allowed: true };
  } catch (error) {
    if (!(error instanceof PuppetApiError) || error.status !== 409) throw error;
    if (SIGNATURE_REFUSED.test(error.message)) return { allowed: true };
    if (CA_REFUSALS.altNames.test(error.message)) return { allowed: false, detail: error.summary };
    throw error;
  } finally {
    // Signed only if the CA checked no signature at all; then it must not stay valid either.
    if ((await ca.getStatus(certname))?.state === 'signed') await ca.clean([certname]);
    await ca.delete(certname);
  }
}

async function brokenCsr(certname: string): Promise<string> {
  const keys = (await webcrypto.subtle.generateKey(ALGORITHM, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await Pkcs10CertificateRequestGenerator.create(
    {
      name: [{ CN: [certname] }],
      keys,
      signingAlgorithm: ALGORITHM,
      extensions: [new SubjectAlternativeNameExtension([{ type: 'dns', value: certname }, { type: 'dns', value: `alt-${certname}` }])],
    },
    webcrypto,
  );
  // The signature is the DER's last bytes: flipping the final one keeps the CSR well-formed.
  const der = new Uint8Array(csr.rawData.slice(0));
  der[der.length - 1]! ^= 0xff;
  return new Pkcs10CertificateRequest(der).toString('pem');
}
