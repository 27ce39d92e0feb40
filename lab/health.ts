import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { URLS, type LabLayout } from './layout';

/**
 * Readiness probes. Each answers false (never throws) so callers can poll; TLS is verified
 * against the lab CA like any other client of the lab.
 */
async function get(url: string, ca?: string): Promise<{ status: number; body: string } | null> {
  const dispatcher = new Agent({ connect: { ca, timeout: 2_000 }, headersTimeout: 5_000, bodyTimeout: 5_000 });
  try {
    const response = await request(url, { dispatcher });
    return { status: response.statusCode, body: await response.body.text() };
  } catch {
    return null;
  } finally {
    await dispatcher.close();
  }
}

function labCa(paths: LabLayout): string | undefined {
  try {
    return readFileSync(paths.server.caCert, 'utf8');
  } catch {
    return undefined;
  }
}

/** Puppet Server answers "running" on its simple status once the CA and JRuby pool are up. */
export async function puppetServerHealthy(paths: LabLayout): Promise<boolean> {
  const ca = labCa(paths);
  if (!ca) return false;
  const response = await get(`${URLS.ca}/status/v1/simple`, ca);
  return response?.status === 200 && response.body.trim() === 'running';
}

/** PuppetDB is "running" only after its database migrations are done. */
export async function puppetDbHealthy(): Promise<boolean> {
  const response = await get(`${URLS.puppetdbPlain}/status/v1/services/puppetdb-status`);
  if (response?.status !== 200) return false;
  try {
    return (JSON.parse(response.body) as { state?: string }).state === 'running';
  } catch {
    return false;
  }
}

export async function orchestratorHealthy(paths: LabLayout): Promise<boolean> {
  const ca = labCa(paths);
  if (!ca) return false;
  const response = await get(`${URLS.orchestrator}/status/v1/simple`, ca);
  return response?.status === 200 && response.body.trim() === 'running';
}
