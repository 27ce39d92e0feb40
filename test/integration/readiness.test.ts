import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startImdsDouble, type ImdsDouble } from '../../lab/imds-double';
import { loadLab } from '../../lab/running-lab';
import { writeBootMarker } from '../../node-agent/src/boot-marker';
import { runCli } from '../../node-agent/src/cli';

/**
 * The readiness daemon (runCli 'health', as its unit runs it) in front of the lab's real Puppet
 * Server on 127.0.0.1:8140, whose certificate is for primary.lab.test: the boot marker names that
 * certname, as an enrolled compile master's names its own. Read-only towards the lab (one status
 * request per check), so it holds no lock.
 */
const SERVER_CERTNAME = 'primary.lab.test';
const DRAIN_SECONDS = 2;

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('readiness daemon against the lab\'s Puppet Server', () => {
  let dir: string;
  let imds: ImdsDouble;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'readiness-it-'));
    imds = await startImdsDouble({ instanceId: 'i-0123456789abcdef0', region: 'eu-west-1', localHostname: 'ip-10-0-1-23.eu-west-1.compute.internal', targetLifecycleState: 'InService' });
  });

  afterAll(async () => {
    await imds?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('is ready once the boot step completed, while the real Puppet Server runs; drains at stop', async () => {
    const lab = loadLab();
    const port = await freePort();
    const markerPath = join(dir, 'run', 'boot-complete.json');
    const configPath = join(dir, 'agent.json');
    await writeFile(
      configPath,
      JSON.stringify({
        primaryServer: 'localhost',
        caCertPath: lab.caCertPath,
        queueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/compile-masters-lifecycle',
        region: 'eu-west-1',
        localServerPort: 8140,
        readinessPort: port,
        drainSeconds: DRAIN_SECONDS,
        bootMarkerPath: markerPath,
      }),
    );
    const lines: Record<string, unknown>[] = [];
    const sink = { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) };
    const stop = new AbortController();
    const exited = runCli(['health', '--config', configPath], { stdout: sink, stderr: sink, imdsEndpoint: imds.url, signal: stop.signal }).then((code) => ({ code, at: Date.now() }));
    const check = async () => {
      const response = await fetch(`http://127.0.0.1:${port}/ready`, { signal: AbortSignal.timeout(5_000) });
      return { status: response.status, body: (await response.text()).trim() };
    };
    const log = () => JSON.stringify(lines, null, 1);

    // The daemon listens within a moment of starting.
    let first: { status: number; body: string } | undefined;
    for (let attempt = 0; attempt < 50 && !first; attempt++) {
      first = await check().catch(() => undefined);
      if (!first) await sleep(100);
    }
    expect(first, log()).toEqual({ status: 503, body: "the node agent's boot step has not completed for this identity" });

    await writeBootMarker(markerPath, { certname: SERVER_CERTNAME, instanceId: 'i-0123456789abcdef0', completedAt: new Date().toISOString() });
    expect(await check(), log()).toEqual({ status: 200, body: `ready: ${SERVER_CERTNAME} is enrolled and its Puppet Server is running` });
    const lastReady = Date.now();

    stop.abort();
    expect(await check()).toEqual({ status: 503, body: 'draining: this node is stopping' });
    const { code, at } = await exited;
    expect(code, log()).toBe(0);
    expect(at - lastReady).toBeGreaterThanOrEqual(DRAIN_SECONDS * 1000);
    expect(lines.map((line) => line.message)).toContain(`draining ${DRAIN_SECONDS} s so the load balancer marks this target unhealthy while Puppet Server still serves (target lifecycle state is "InService", not Terminated: reboot or stop)`);
  });
});
