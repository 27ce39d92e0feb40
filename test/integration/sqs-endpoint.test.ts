import { execFile } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeAgentNotice } from '../../lib/node-agent-notice';
import { messageBody } from '../../node-agent/src/notify';
import { labAwsCa, type AwsLabCa } from '../../lab/aws/ca';
import { InstanceCredentials } from '../../lab/aws/credentials';
import { sqsHostsLine, sqsQueueUrl, sqsTrustDropIn, startSqsEndpoint, type SqsEndpoint, type SqsMessage } from '../../lab/aws/sqs-endpoint';
import { startImdsDouble, type ImdsDouble } from '../../lab/imds-double';

/**
 * The lab's arrangement end to end, in a process of its own as on a machine: the endpoint on
 * port 443 of an address that the process's /etc/hosts maps the SQS names to (a private mount
 * namespace, so the host's file is untouched), the lab CA trusted only through the drop-in's
 * NODE_EXTRA_CA_CERTS, credentials from IMDS through the SDK's default chain, and the SDK's
 * default endpoint. Needs root (port 443, unshare), as the lab does.
 */

const execFileAsync = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const REGION = 'us-west-2';
const ROLE_ID = 'AROAEXAMPLECOMPILEMASTR';
const QUEUE_URL = sqsQueueUrl(REGION, '123456789012', 'compile-masters-lifecycle');
const INSTANCE = 'i-0000000000a000007';

let dir: string;
let ca: AwsLabCa;
let endpoint: SqsEndpoint;
let imds: ImdsDouble;
let hostsFile: string;
const registry = new InstanceCredentials({ roleId: ROLE_ID });
const delivered: SqsMessage[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sqs-endpoint-it-'));
  ca = await labAwsCa(dir);
  // A loopback address of its own, so port 443 is free whatever else runs here.
  const address = `127.${randomInt(16, 250)}.${randomInt(0, 250)}.${randomInt(2, 250)}`;
  endpoint = await startSqsEndpoint({ host: address, port: 443, region: REGION, ca, credentials: registry, queueUrls: [QUEUE_URL], deliver: (message) => void delivered.push(message) });
  imds = await startImdsDouble({ instanceId: INSTANCE, region: REGION, localHostname: 'ip-10-0-0-9.us-west-2.compute.internal' });
  imds.metadata.set('iam/security-credentials/', registry.roleName);
  imds.metadata.set(`iam/security-credentials/${registry.roleName}`, JSON.stringify(registry.credentialsFor(INSTANCE)));
  hostsFile = join(dir, 'hosts');
  await writeFile(hostsFile, `127.0.0.1 localhost\n${sqsHostsLine(address, REGION)}\n`);
});

afterAll(async () => {
  await endpoint?.close();
  await imds?.close();
  await rm(dir, { recursive: true, force: true });
});

/** The real notifier in a child whose /etc/hosts is the machine's, with the unit's environment. */
async function sendFromMachine(extraEnv: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url, ...extraEnv };
  try {
    const { stderr } = await execFileAsync(
      'unshare',
      ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount --bind "$0" /etc/hosts && exec "$@"', hostsFile, process.execPath, '--import', 'tsx', join(ROOT, 'test/support/send-notice.ts'), REGION, QUEUE_URL, INSTANCE],
      { cwd: ROOT, env, timeout: 60_000 },
    );
    return { code: 0, stderr };
  } catch (error) {
    const failed = error as { code?: number; stderr?: string };
    return { code: failed.code ?? -1, stderr: failed.stderr ?? '' };
  }
}

describe('a machine node agent reaches the lab SQS endpoint', () => {
  it('refuses to talk to the endpoint without the lab CA: the trust comes from the drop-in, nothing else', async () => {
    const result = await sendFromMachine({});
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/self[- ]signed|unable to (get|verify)|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED/i);
    expect(delivered).toEqual([]);
  });

  it("delivers the notice with the instance's SenderId when the unit's NODE_EXTRA_CA_CERTS names the lab CA", async () => {
    const dropIn = sqsTrustDropIn(ca);
    const variable = /Environment=NODE_EXTRA_CA_CERTS=(.+)/.exec(dropIn.text);
    expect(variable?.[1]).toBe(dropIn.caPath);
    // On the machine the CA is copied to dropIn.caPath; here it is read where the lab keeps it.
    const result = await sendFromMachine({ NODE_EXTRA_CA_CERTS: dropIn.hostCaPath });
    expect(result.code, result.stderr).toBe(0);
    expect(delivered).toHaveLength(1);
    expect(delivered[0]).toMatchObject({ queueUrl: QUEUE_URL, body: messageBody(nodeAgentNotice(INSTANCE, 'booted')), senderId: `${ROLE_ID}:${INSTANCE}` });
    expect(imds.requests).toContain(`GET /latest/meta-data/iam/security-credentials/${registry.roleName}`);
  });
});
