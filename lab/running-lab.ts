import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { labDescriptionSchema, labDir, type ClientCertificate, type LabDescription } from './description';

export type { LabDescription } from './description';

/** The running lab, as `npm run lab:puppet -- up` described it (the integration global setup starts it). */
export function loadLab(): LabDescription {
  const file = join(labDir(), 'lab.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new Error(`no Puppet lab description at ${file}: run \`npm run lab:puppet -- up\` (as root) first`);
  }
  return labDescriptionSchema.parse(JSON.parse(text));
}

export interface ClientPems {
  cert: string;
  key: string;
}

export interface LabPems {
  ca: string;
  lifecycle: ClientPems;
  forbidden: ClientPems;
}

function clientPems(client: ClientCertificate): ClientPems {
  return { cert: readFileSync(client.certPath, 'utf8'), key: readFileSync(client.keyPath, 'utf8') };
}

/** The lab CA and both client identities, in memory (as the controller holds them from Secrets Manager). */
export function readPems(lab: LabDescription = loadLab()): LabPems {
  return {
    ca: readFileSync(lab.caCertPath, 'utf8'),
    lifecycle: clientPems(lab.lifecycleClient),
    forbidden: clientPems(lab.forbiddenClient),
  };
}

export function orchestratorToken(lab: LabDescription = loadLab()): string {
  return readFileSync(lab.orchestrator.tokenPath, 'utf8').trim();
}

/**
 * An undici dispatcher that pins the lab CA and, unless `client` is 'anonymous', presents that
 * client certificate. Close it when done.
 */
export function labAgent(client: 'lifecycle' | 'forbidden' | 'anonymous', pems: LabPems = readPems()): Agent {
  const identity = client === 'anonymous' ? {} : pems[client];
  return new Agent({ connect: { ca: pems.ca, ...identity } });
}

// One tag per test process keeps certnames unique across runs, since the lab's CA outlives them.
const runTag = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
let sequence = 0;

/**
 * A fresh certname shaped like an EC2 private DNS name: `ip-10-0-1` gives
 * `ip-10-0-1-<n>-<run tag>.lab.test`, e.g. `ip-10-0-1-23-mhz3k9x1a4f2.lab.test`. Lowercase and
 * DNS-style, as Puppet requires.
 */
export function uniqueCertname(prefix = 'ip-10-0-1'): string {
  sequence += 1;
  return `${prefix}-${sequence}-${runTag}.lab.test`;
}

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Fault injection on the lab's servers: stop or start the CA (Puppet Server), PuppetDB or the orchestrator double. */
export async function labCommand(
  command: 'stop-ca' | 'start-ca' | 'stop-puppetdb' | 'start-puppetdb' | 'stop-orchestrator' | 'start-orchestrator',
): Promise<void> {
  await promisify(execFile)(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'lab', 'puppet-lab.ts'), command], {
    cwd: REPO_ROOT,
    timeout: 600_000,
  });
}

export interface OrchestratorFaults {
  token?: 'valid' | 'revoked' | 'expired';
  deploy?: 'normal' | 'error' | 'hang';
  runs?: 'real' | 'fail' | 'hang';
}

/** Switches the orchestrator double's faults (see lab/orchestrator-double.ts); returns them all. */
export async function setOrchestratorFaults(faults: OrchestratorFaults, lab: LabDescription = loadLab()): Promise<Required<OrchestratorFaults>> {
  const dispatcher = labAgent('anonymous', readPems(lab));
  try {
    const response = await request(`${lab.orchestrator.url}/lab/v1/faults`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'x-authentication': orchestratorToken(lab) },
      body: JSON.stringify(faults),
      dispatcher,
    });
    const body = await response.body.text();
    if (response.statusCode !== 200) throw new Error(`orchestrator double refused faults ${JSON.stringify(faults)}: ${body}`);
    return JSON.parse(body) as Required<OrchestratorFaults>;
  } finally {
    await dispatcher.close();
  }
}
