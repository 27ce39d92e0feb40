import { randomBytes, type webcrypto } from 'node:crypto';
import { mapLimit } from '../../lib/concurrency';
import { labClients } from '../clients';
import { generateKeyPair, makeCsr, submitCsr } from '../csr';
import { loadLab, type LabDescription } from '../running-lab';
import type { AgentIdentity } from './agent-run';

export const FLEET_DOMAIN = 'fleet.lab.test';

/** A prefix no earlier run used: the lab CA outlives runs, and a certname is signed once. */
export function fleetRunPrefix(): string {
  return `r${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
}

export interface EnrollOptions {
  count: number;
  /** Certnames are `agent-<k>.<prefix>.fleet.lab.test`; a fresh prefix by default. */
  prefix?: string;
  /**
   * Distinct RSA 2048 key pairs, reused round-robin: one costs ~0.25 s of CPU here and the CA and
   * TLS do not care whether two agents share one. Default: one per agent up to 8.
   */
  keyPairs?: number;
  /** CSRs submitted and signed at once. */
  concurrency?: number;
  lab?: LabDescription;
}

export const agentCertname = (prefix: string, index: number) => `agent-${index + 1}.${prefix}.${FLEET_DOMAIN}`;

/**
 * N agent identities signed by the lab CA through its API, as `puppet ssl submit_request` and an
 * operator's `puppetserver ca sign` would make them: the agent submits its CSR unauthenticated, the
 * lifecycle client (allowed on certificate_status) signs it.
 */
export async function enrollAgents(options: EnrollOptions): Promise<AgentIdentity[]> {
  const lab = options.lab ?? loadLab();
  const prefix = options.prefix ?? fleetRunPrefix();
  const keyCount = Math.max(1, Math.min(options.count, options.keyPairs ?? 8));
  // WebCrypto generates in libuv's thread pool: these run on both cores at once.
  const keys: webcrypto.CryptoKeyPair[] = await Promise.all(Array.from({ length: keyCount }, () => generateKeyPair()));
  const clients = labClients({ lab });
  try {
    return await mapLimit(
      Array.from({ length: options.count }, (_, index) => index),
      options.concurrency ?? 4,
      async (index) => {
        const certname = agentCertname(prefix, index);
        const csr = await makeCsr({ certname, keyPair: keys[index % keyCount]! });
        await submitCsr(csr, lab);
        await clients.ca.sign(certname);
        const certPem = await clients.ca.getCertificate(certname);
        if (certPem === undefined) throw new Error(`the lab CA signed ${certname} but serves no certificate for it`);
        return { certname, certPem, keyPem: csr.privateKeyPem, index };
      },
    );
  } finally {
    await clients.close();
  }
}

/** Cleans the agents' certificates at the CA and deactivates them in PuppetDB (their reports stay until PuppetDB's GC). */
export async function retireAgents(identities: readonly AgentIdentity[], lab: LabDescription = loadLab()): Promise<void> {
  if (identities.length === 0) return;
  const clients = labClients({ lab });
  try {
    await clients.ca.clean(identities.map((identity) => identity.certname));
    await mapLimit(identities, 4, (identity) => clients.puppetdb.deactivateNode(identity.certname));
  } finally {
    await clients.close();
  }
}
