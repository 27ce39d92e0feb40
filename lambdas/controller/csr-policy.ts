import { describeUntrusted } from '../../lib/certname';
import type { CsrFacts } from '../../lib/puppet/csr';

export interface CsrPolicy {
  region: string;
  nlbDnsName: string;
  extraAltNames: readonly string[];
  expectedExtensions: Readonly<Record<string, string>>;
}

/**
 * DESIGN rule 2, the part a CSR can be judged on by itself: what it asks for must be exactly what
 * a compile master of this instance asks for. Membership and registry state are the planner's
 * part. Returns every problem found (empty: signable), each phrased for the refusal log line.
 */
export function csrProblems(facts: CsrFacts, expected: { certname: string; instanceId: string }, policy: CsrPolicy): string[] {
  const problems: string[] = [];
  if (!facts.signatureValid) problems.push('its signature does not verify with the key it carries');
  if (facts.commonName !== expected.certname) {
    problems.push(`its CN ${describeUntrusted(facts.commonName ?? '(none)')} is not the instance's certname ${expected.certname}`);
  }

  const extensions = { ...facts.puppetExtensions };
  const instanceId = extensions.pp_instance_id;
  delete extensions.pp_instance_id;
  if (instanceId === undefined) problems.push('it carries no pp_instance_id');
  else if (instanceId !== expected.instanceId) {
    problems.push(`its pp_instance_id ${describeUntrusted(instanceId)} is not ${expected.instanceId}`);
  }
  const region = extensions.pp_region;
  delete extensions.pp_region;
  if (region !== undefined && region !== policy.region) {
    problems.push(`its pp_region ${describeUntrusted(region)} is not ${policy.region}`);
  }
  for (const [name, value] of Object.entries(policy.expectedExtensions)) {
    const requested = extensions[name];
    delete extensions[name];
    if (requested === undefined) problems.push(`it lacks the configured extension ${name}=${value}`);
    else if (requested !== value) problems.push(`its ${name} ${describeUntrusted(requested)} is not the configured ${describeUntrusted(value)}`);
  }
  const unexpected = Object.keys(extensions);
  if (unexpected.length > 0) problems.push(`it requests extensions that are not configured: ${describeUntrusted(unexpected.join(', '))}`);
  if (facts.otherExtensionOids.length > 0) {
    problems.push(`it requests non-Puppet X.509 extensions: ${describeUntrusted(facts.otherExtensionOids.join(', '))}`);
  }

  const allowed = new Set([expected.certname, policy.nlbDnsName, ...policy.extraAltNames]);
  const extraNames = facts.dnsAltNames.filter((name) => !allowed.has(name.toLowerCase()));
  if (extraNames.length > 0) problems.push(`it requests DNS alt names outside the allowed set: ${describeUntrusted(extraNames.join(', '))}`);
  if (facts.otherAltNames.length > 0) {
    problems.push(`it requests non-DNS alt names: ${describeUntrusted(facts.otherAltNames.join(', '))}`);
  }
  return problems;
}
