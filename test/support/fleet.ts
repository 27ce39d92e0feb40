import { mapLimit } from '../../lib/concurrency';
import { eventually, storeFacts, type LabClients } from '../../lab/clients';
import { requestCertificate } from '../../lab/csr';
import { uniqueCertname } from '../../lab/running-lab';

export interface SimulatedNode {
  certname: string;
  serial: bigint;
}

/**
 * Compile masters as the CA and PuppetDB know them after enrollment: a signed certificate and
 * facts in PuppetDB. Made through the real lab, outside any timed part of a benchmark.
 */
export async function enrollSimulatedNodes(clients: LabClients, count: number, prefix = 'ip-10-8-0'): Promise<SimulatedNode[]> {
  const nodes = await mapLimit(Array.from({ length: count }, () => uniqueCertname(prefix)), 6, async (certname) => {
    await requestCertificate({ certname, dnsAltNames: [certname] });
    await clients.ca.sign(certname);
    await storeFacts(clients.puppetdb, certname);
    const status = await clients.ca.getStatus(certname);
    return { certname, serial: BigInt(status!.serial_number!) };
  });
  await mapLimit(nodes, 6, (node) => eventually(() => clients.puppetdb.getNode(node.certname), `${node.certname} in PuppetDB`));
  return nodes;
}
