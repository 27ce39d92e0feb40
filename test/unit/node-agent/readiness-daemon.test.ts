import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startImdsDouble, type ImdsDouble } from '../../../lab/imds-double';
import { writeBootMarker } from '../../../node-agent/src/boot-marker';
import { externalIPv4 } from '../../support/network';
import { makeTestCa, type Pem } from '../../support/pki';

/**
 * The readiness daemon as systemd runs it (`node-agent health`, its own process, stopped with
 * SIGTERM), in front of a real HTTPS server standing in for the compile master's Puppet Server:
 * a certificate for the certname signed by the pinned CA, answering /status/v1/simple. IMDS is the
 * lab's double. Drains are shortened through agent.json, as the lab's faster checker would.
 */
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CERTNAME = 'ip-10-0-1-23.eu-west-1.compute.internal';
const DRAIN_SECONDS = 3;

/** Puppet Server's status endpoint; `state` switches what it answers. */
async function startStatusServer(identity: Pem, state: { answer: 'running' | 'starting' }) {
  const server = createHttpsServer({ cert: identity.cert, key: identity.key }, (request, response) => {
    if (request.url !== '/status/v1/simple') return void response.writeHead(404).end();
    response.writeHead(state.answer === 'running' ? 200 : 503, { 'content-type': 'text/plain' }).end(state.answer);
  });
  // Every address: the daemon probes it over loopback, agents reach it from elsewhere.
  server.listen(0, '0.0.0.0');
  await once(server, 'listening');
  return server;
}

/** An agent's connection to the stand-in Puppet Server, held open until closed. */
async function agentConnection(port: number): Promise<Socket> {
  const address = externalIPv4();
  const socket = connect({ host: address, port, localAddress: address });
  await once(socket, 'connect');
  return socket;
}

async function freePort(): Promise<number> {
  const probe = createNetServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

interface Answer {
  status: number;
  body: string;
}

/** One health check as the NLB makes it: plain HTTP GET, a fresh connection, a 5 s timeout. */
async function check(port: number): Promise<Answer | 'refused'> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/ready`, { signal: AbortSignal.timeout(5_000) });
    return { status: response.status, body: (await response.text()).trim() };
  } catch (error) {
    if ((error as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED') return 'refused';
    throw error;
  }
}

async function until(port: number, wanted: (answer: Answer | 'refused') => boolean, timeoutMs = 30_000): Promise<Answer | 'refused'> {
  const deadline = Date.now() + timeoutMs;
  let last: Answer | 'refused' = 'refused';
  while (Date.now() < deadline) {
    last = await check(port);
    if (wanted(last)) return last;
    await sleep(100);
  }
  throw new Error(`the readiness check never answered as wanted; last: ${JSON.stringify(last)}`);
}

describe('readiness daemon (node-agent health), a real process against a real HTTPS server', () => {
  let dir: string;
  let caPath: string;
  let identity: Pem;
  let statusServer: Server;
  const status = { answer: 'running' as 'running' | 'starting' };
  let statusPort: number;
  const daemons: ChildProcess[] = [];
  const imdsDoubles: ImdsDouble[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'readiness-'));
    const ca = await makeTestCa('Puppet CA: primary.example.internal');
    identity = await ca.issue({ commonName: CERTNAME, dnsNames: [CERTNAME] });
    caPath = join(dir, 'ca.pem');
    await writeFile(caPath, ca.cert);
    statusServer = await startStatusServer(identity, status);
    statusPort = (statusServer.address() as AddressInfo).port;
  });

  afterEach(async () => {
    for (const daemon of daemons.splice(0)) if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
    await Promise.all(imdsDoubles.splice(0).map((imds) => imds.close()));
    status.answer = 'running';
  });

  afterAll(async () => {
    statusServer?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Starts `node-agent health` with its own marker path and port; the marker is not written yet. */
  async function startDaemon(options: { name: string; targetLifecycleState?: string; drainSeconds?: number; inFlightWaitSeconds?: number; localServerPort?: number }) {
    const imds = await startImdsDouble({ instanceId: 'i-0123456789abcdef0', region: 'eu-west-1', localHostname: CERTNAME, targetLifecycleState: options.targetLifecycleState });
    imdsDoubles.push(imds);
    const port = await freePort();
    const markerPath = join(dir, options.name, 'boot-complete.json');
    const configPath = join(dir, `${options.name}.json`);
    await writeFile(
      configPath,
      JSON.stringify({
        primaryServer: 'primary.example.internal',
        caCertPath: caPath,
        queueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/compile-masters-lifecycle',
        region: 'eu-west-1',
        localServerPort: options.localServerPort ?? statusPort,
        readinessPort: port,
        drainSeconds: options.drainSeconds ?? DRAIN_SECONDS,
        ...(options.inFlightWaitSeconds !== undefined ? { inFlightWaitSeconds: options.inFlightWaitSeconds } : {}),
        bootMarkerPath: markerPath,
        timeouts: { imdsMs: 500 },
      }),
    );
    const log: string[] = [];
    const daemon = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'node-agent', 'src', 'main.ts'), 'health', '--config', configPath], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url },
    });
    daemons.push(daemon);
    for (const stream of [daemon.stdout, daemon.stderr]) stream?.on('data', (chunk: Buffer) => log.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
    const exited = once(daemon, 'exit').then(([code]) => ({ code: code as number | null, at: Date.now() }));
    const markBooted = (certname = CERTNAME) => writeBootMarker(markerPath, { certname, instanceId: 'i-0123456789abcdef0', completedAt: new Date().toISOString() });
    return { daemon, port, exited, markBooted, log: () => log.join('\n') };
  }

  it('answers 503 until the boot step completed, 200 while Puppet Server runs, 503 while it does not', async () => {
    const { port, markBooted, log } = await startDaemon({ name: 'states' });
    expect(await until(port, (answer) => answer !== 'refused')).toEqual({ status: 503, body: "the node agent's boot step has not completed for this identity" });

    await markBooted();
    expect(await check(port)).toEqual({ status: 200, body: `ready: ${CERTNAME} is enrolled and its Puppet Server is running` });

    status.answer = 'starting';
    expect(await check(port)).toEqual({ status: 503, body: 'the local Puppet Server does not answer /status/v1/simple with "running"' });
    status.answer = 'running';
    expect(await check(port), log()).toMatchObject({ status: 200 });

    // Anything but the check's path is not the check.
    expect((await fetch(`http://127.0.0.1:${port}/status`)).status).toBe(404);
  });

  it('answers 503 when Puppet Server is down (connection refused)', async () => {
    const { port, markBooted } = await startDaemon({ name: 'down', localServerPort: await freePort() });
    await until(port, (answer) => answer !== 'refused');
    await markBooted();
    expect(await check(port)).toEqual({ status: 503, body: 'the local Puppet Server does not answer /status/v1/simple with "running"' });
  });

  it('answers 503 when the Puppet Server\'s certificate is not for the identity the boot step enrolled', async () => {
    const { port, markBooted } = await startDaemon({ name: 'other-identity' });
    await until(port, (answer) => answer !== 'refused');
    await markBooted('ip-10-0-9-99.eu-west-1.compute.internal');
    expect(await check(port)).toMatchObject({ status: 503 });
  });

  it('on SIGTERM answers 503 at once, keeps answering through the drain, then exits 0', async () => {
    const { daemon, port, markBooted, exited, log } = await startDaemon({ name: 'drain' });
    await until(port, (answer) => answer !== 'refused');
    await markBooted();
    expect(await check(port)).toMatchObject({ status: 200 });
    const lastReady = Date.now();

    daemon.kill('SIGTERM');
    const during: (Answer | 'refused')[] = [];
    let ended: { code: number | null; at: number } | undefined;
    void exited.then((value) => (ended = value));
    while (!ended) {
      during.push(await check(port));
      await sleep(200);
    }

    expect(ended.code, log()).toBe(0);
    // It did not exit before the NLB could have marked it unhealthy...
    expect(ended.at - lastReady).toBeGreaterThanOrEqual(DRAIN_SECONDS * 1000);
    // ...nor long after (process start-up aside, the drain is all it waits).
    expect(ended.at - lastReady).toBeLessThan(DRAIN_SECONDS * 1000 + 3_000);
    // Every check during the drain was answered, and "not ready", with the reason.
    const answered = during.filter((answer) => answer !== 'refused');
    expect(answered.length).toBeGreaterThanOrEqual(DRAIN_SECONDS * 3);
    expect(new Set(answered.map((answer) => JSON.stringify(answer)))).toEqual(new Set([JSON.stringify({ status: 503, body: 'draining: this node is stopping' })]));
    // Once it is gone, nothing answers (the next thing to stop is Puppet Server).
    expect(await check(port)).toBe('refused');
    expect(log()).toMatch(/draining \d+ s so the load balancer marks this target unhealthy/);
  });

  it('after the drain, waits for agents still connected to Puppet Server to finish before it exits', async () => {
    const { daemon, port, markBooted, exited, log } = await startDaemon({ name: 'in-flight' });
    await until(port, (answer) => answer !== 'refused');
    await markBooted();
    expect(await check(port)).toMatchObject({ status: 200 });
    // An agent mid-run, connected through the load balancer before the drain.
    const agent = await agentConnection(statusPort);
    daemon.kill('SIGTERM');
    let exitedAt: number | undefined;
    void exited.then(({ at }) => (exitedAt = at));
    // Well past the drain, it still waits for the run.
    await sleep(DRAIN_SECONDS * 1000 + 2_000);
    expect(exitedAt, log()).toBeUndefined();
    expect(log()).toContain('waiting for 1 agent connection(s) to finish their runs');
    const closedAt = Date.now();
    agent.destroy();
    const { code, at } = await exited;
    expect(code, log()).toBe(0);
    // It exits once the connection is gone: the next look finds none.
    expect(at - closedAt).toBeLessThan(2_500);
    expect(log()).toMatch(/every agent connection closed after \d+ s/);
  });

  it('lets Puppet Server stop when agents stay connected past the in-flight wait, and says so', async () => {
    const { daemon, port, markBooted, exited, log } = await startDaemon({ name: 'in-flight-capped', inFlightWaitSeconds: 2 });
    await until(port, (answer) => answer !== 'refused');
    await markBooted();
    expect(await check(port)).toMatchObject({ status: 200 });
    const agent = await agentConnection(statusPort);
    const stoppedAt = Date.now();
    daemon.kill('SIGTERM');
    const { code, at } = await exited;
    agent.destroy();
    expect(code, log()).toBe(0);
    expect(at - stoppedAt).toBeGreaterThanOrEqual((DRAIN_SECONDS + 2) * 1000);
    expect(at - stoppedAt).toBeLessThan((DRAIN_SECONDS + 2) * 1000 + 3_000);
    expect(log()).toMatch(/1 agent connection\(s\) still open after 2 s; Puppet Server stops now/);
  });

  it('exits at once when instance metadata says the group is terminating the instance', async () => {
    const { daemon, port, markBooted, exited, log } = await startDaemon({ name: 'terminated', targetLifecycleState: 'Terminated', drainSeconds: 30 });
    await until(port, (answer) => answer !== 'refused');
    await markBooted();
    expect(await check(port)).toMatchObject({ status: 200 });
    const stoppedAt = Date.now();
    daemon.kill('SIGTERM');
    const { code, at } = await exited;
    expect(code, log()).toBe(0);
    expect(at - stoppedAt).toBeLessThan(5_000);
    expect(log()).toContain('no drain: target lifecycle state is Terminated');
  });

  it('does not wait when it never answered ready for longer than the drain', async () => {
    const { daemon, port, exited, log } = await startDaemon({ name: 'never-ready', drainSeconds: 1 });
    expect(await until(port, (answer) => answer !== 'refused')).toMatchObject({ status: 503 });
    await sleep(1_200);
    const stoppedAt = Date.now();
    daemon.kill('SIGTERM');
    const { code, at } = await exited;
    expect(code, log()).toBe(0);
    expect(at - stoppedAt).toBeLessThan(1_000);
    expect(log()).toContain('no drain needed: this daemon started');
  });
});
