import { PuppetApiError } from '../lib/errors';
import { CA_REFUSALS, type CaClient } from '../lib/puppet/ca';
import { probeCertname, probeCsr } from '../lib/puppet/ca-probe';

export type AltNamesVerdict = { allowed: true } | { allowed: false; detail: string };

/** Its 409 for a CSR whose signature does not verify: the check after the alt-names one. */
const SIGNATURE_REFUSED = /does not correspond to the signing key/i;

/**
 * Asks the CA whether it would sign a CSR with subject alternative names, without it ever
 * issuing anything: the probe CSR asks for an alt name and carries a broken signature. Puppet
 * Server checks alt names before signatures, so the answer is the alt-names refusal when they are
 * disallowed and the signature refusal when they are allowed. The CSR is deleted afterwards.
 */
export async function probeAltNames(ca: CaClient): Promise<AltNamesVerdict> {
  const certname = probeCertname('doctor-probe');
  await ca.submitCsr(certname, probeCsr(certname, [certname, `alt-${certname}`]));
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
