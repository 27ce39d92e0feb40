import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabWorld, NLB_DNS_NAME, REGION } from '../../lab/scenario/world';
import { labClients, type LabClients } from '../../lab/clients';
import { requestCertificate, type CsrOptions } from '../../lab/csr';
import { loadLab, type LabDescription } from '../../lab/running-lab';
import { nodeAgentNotice } from '../../lib/node-agent-notice';
import { readCsr } from '../../lib/puppet/csr';

/**
 * Forged CSRs of members, judged where it matters: at the real CA, which must still hold each of
 * them unsigned after the controller looked (the cases controller.test.ts does not already cover).
 * A CN other than the certname never gets this far: Puppet Server itself refuses such a CSR.
 */
let lab: LabDescription;
let clients: LabClients;
const subnet = `10.${randomInt(1, 255)}.${randomInt(0, 255)}`;
const submitted: string[] = [];

beforeAll(() => {
  lab = loadLab();
  clients = labClients({ lab });
});
afterAll(async () => {
  await clients.ca.clean(submitted).catch(() => undefined);
  await clients.close();
});

const forged: Array<[string, (instanceId: string, certname: string) => Partial<CsrOptions>, RegExp]> = [
  ['pp_cli_auth, which would open the CA API to it', (id) => ({ extensions: { pp_instance_id: id, pp_role: 'compile_master', pp_cli_auth: 'true' } }), /not configured: "pp_cli_auth"/],
  ['another role', (id) => ({ extensions: { pp_instance_id: id, pp_role: 'primary' } }), /pp_role "primary" is not the configured "compile_master"/],
  ['another region', (id) => ({ extensions: { pp_instance_id: id, pp_role: 'compile_master', pp_region: 'eu-west-1' } }), /pp_region "eu-west-1" is not us-west-2/],
  ['no pp_instance_id', () => ({ extensions: { pp_role: 'compile_master' } }), /carries no pp_instance_id/],
  ["the primary's name as an alt name", (_id, certname) => ({ dnsAltNames: [certname, 'primary.lab.test'] }), /outside the allowed set: "primary.lab.test"/],
];

describe('forged CSRs from members, against the real CA', () => {
  it.each(forged)('leaves a CSR with %s unsigned and ABANDONs the launch, saying why', async (_name, csr, reason) => {
    const world = new LabWorld(lab);
    const instance = world.cloud.launch({ privateIp: `${subnet}.${10 + submitted.length}` });
    const certname = instance.privateDnsName as string;
    submitted.push(certname);
    // A member's own CSR (made with the key it reported), forged in what it asks for.
    const request = await requestCertificate(
      { certname, dnsAltNames: [certname, NLB_DNS_NAME], extensions: { pp_instance_id: instance.instanceId, pp_role: 'compile_master', pp_region: REGION }, ...csr(instance.instanceId, certname) },
      lab,
    );
    world.cloud.notifyFrom(nodeAgentNotice(instance.instanceId, 'csr-submitted', readCsr(request.csrPem).publicKeySha256));
    await world.until(() => world.cloud.group.stateOf(instance.instanceId) === undefined, 'the launch to be abandoned', 60_000);

    expect((await clients.ca.getStatus(certname))?.state).toBe('requested');
    expect(world.cloud.group.completions).toContainEqual(expect.objectContaining({ instanceId: instance.instanceId, hook: 'launch', result: 'ABANDON' }));
    expect(world.cloud.registry.peek(instance.instanceId)).toBeUndefined();
    expect(world.tap.count('puppet.sign')).toBe(0);
    const refusal = world.logger.lines.find((line) => line.message === 'Refused: abandoning the launch');
    expect((refusal?.attributes as { reasons: string[] }).reasons.join('; ')).toMatch(reason);
  });
});
