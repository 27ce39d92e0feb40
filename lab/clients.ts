import { CaClient, OrchestratorClient, PuppetDbClient, type RetryPolicy } from '../lib/puppet';
import { OrchestratorPrimaryRun } from '../lambdas/controller/primary-run/orchestrator';
import { PuppetApis } from '../lambdas/controller/puppet';
import { loadLab, orchestratorToken, readPems, type LabDescription, type LabPems } from './running-lab';

export interface LabClients {
  ca: CaClient;
  puppetdb: PuppetDbClient;
  orchestrator: OrchestratorClient;
  close(): Promise<void>;
}

/** The project's own Puppet clients, pointed at the lab with one of its client identities. */
export function labClients(
  options: { identity?: 'lifecycle' | 'forbidden'; token?: string; retry?: RetryPolicy; lab?: LabDescription; pems?: LabPems } = {},
): LabClients {
  const lab = options.lab ?? loadLab();
  const pems = options.pems ?? readPems(lab);
  const tls = { ca: pems.ca, ...pems[options.identity ?? 'lifecycle'] };
  const common = { tls, ...(options.retry ? { retry: options.retry } : {}) };
  const ca = new CaClient({ ...common, baseUrl: lab.ca.url });
  const puppetdb = new PuppetDbClient({ ...common, baseUrl: lab.puppetdb.url });
  const orchestrator = new OrchestratorClient({ ...common, baseUrl: lab.orchestrator.url, token: options.token ?? orchestratorToken(lab) });
  return {
    ca,
    puppetdb,
    orchestrator,
    async close() {
      await Promise.all([ca.close(), puppetdb.close(), orchestrator.close()]);
    },
  };
}

/** Polls until `check` returns a value (PuppetDB processes commands asynchronously). */
export async function eventually<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Makes PuppetDB know a node, as an agent run would, so deactivation has something to act on. */
export async function storeFacts(puppetdb: PuppetDbClient, certname: string, environment = 'production'): Promise<void> {
  await puppetdb.submitCommand('replace_facts', 5, certname, {
    certname,
    environment,
    producer_timestamp: new Date().toISOString(),
    producer: 'primary.lab.test',
    values: { kernel: 'Linux', role: 'compile_master' },
  });
}

/** A lab server's host and port, from its URL in the lab's description. */
export function endpoint(address: string): { hostname: string; port: number } {
  const url = new URL(address);
  return { hostname: url.hostname, port: Number(url.port || 443) };
}

/** The controller's own Puppet adapter, wired to the lab as the Lambda wires it from its secrets. */
export function labPuppetApis(lab: LabDescription = loadLab(), pems: LabPems = readPems(lab)): PuppetApis {
  return PuppetApis.create({ ca: endpoint(lab.ca.url), puppetdb: endpoint(lab.puppetdb.url) }, { ...pems.lifecycle, ca: pems.ca });
}

/** The controller's orchestrator runner, against the lab's orchestrator double with the lab's token. */
export function labOrchestratorRun(lab: LabDescription = loadLab(), pems: LabPems = readPems(lab)): OrchestratorPrimaryRun {
  const bundle = { ...pems.lifecycle, ca: pems.ca };
  const token = orchestratorToken(lab);
  return new OrchestratorPrimaryRun({
    secrets: { clientBundle: async () => bundle, rbacToken: async () => token },
    orchestrator: { ...endpoint(lab.orchestrator.url), environment: lab.primary.environment },
    primaryCertname: lab.primary.certname,
  });
}
