import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type Server as HttpServer, createServer as createHttpServer } from 'node:http';
import { type Server, createServer as createHttpsServer, get } from 'node:https';
import { type Server as TcpServer, createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type TargetGroupSettings, targetGroupSettings } from '../../cdk/target-groups';
import { type HaproxyNlb, addServerCommand, backendName, haproxyConfig, startHaproxyNlb } from '../../lab/nlb/haproxy';
import { type Pem, makeTestCa } from '../support/pki';
import { type Cfn, synthStack } from '../unit/cdk/stack-fixture';

// HAProxy for real in front of small TLS servers on loopback addresses, with the stack's target
// groups shortened (1 s checks, 3 s deregistration delay). Ports away from the lab's 8140.
const BIND = '127.0.77.1';
const HTTPS_PORT = 28140;
const CHECK_PORT = 28141;
const TCP_PORT = 28142;
const DELAY_SECONDS = 3;

function shortened(group: TargetGroupSettings, port: number): TargetGroupSettings {
  return { ...group, port, deregistrationDelaySeconds: DELAY_SECONDS, healthCheck: { ...group.healthCheck, port: CHECK_PORT, intervalSeconds: 1, timeoutSeconds: 1 } };
}
// PE's: the only flavor with a second (plain TCP) port, which the TCP pass-through cases use.
const [puppetServer, pcpBroker] = targetGroupSettings({ flavor: 'pe', deregistrationDelaySeconds: 60 });
if (!pcpBroker) throw new Error('PE has a PCP broker target group');
const SETTINGS = [shortened(puppetServer, HTTPS_PORT), shortened(pcpBroker, TCP_PORT)];
const RISE = puppetServer.healthCheck.healthyThreshold;
const FALL = puppetServer.healthCheck.unhealthyThreshold;

/**
 * A compile master as the NLB sees it: the HTTPS port, a TCP port, and the readiness daemon's
 * plain-HTTP check on its own port, which both target groups ask.
 */
class FakeTarget {
  status = 200;
  readonly checks: { at: number; status: number }[] = [];
  /** When each request that came through the NLB (GET /who) arrived. */
  readonly served: number[] = [];
  private readonly https: Server;
  private readonly readiness: HttpServer;
  private readonly tcp: TcpServer;

  constructor(readonly id: string, readonly ip: string, pem: Pem) {
    this.https = createHttpsServer({ ...pem }, (_request, response) => {
      this.served.push(Date.now());
      response.end(this.id);
    });
    this.readiness = createHttpServer((request, response) => {
      if (request.url !== '/ready') return void response.writeHead(404).end();
      this.checks.push({ at: Date.now(), status: this.status });
      response.writeHead(this.status).end(this.status === 200 ? 'ready' : 'not ready');
    });
    this.tcp = createTcpServer((socket) => socket.end(this.id));
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.https.listen(HTTPS_PORT, this.ip, resolve));
    await new Promise<void>((resolve) => this.readiness.listen(CHECK_PORT, this.ip, resolve));
    await new Promise<void>((resolve) => this.tcp.listen(TCP_PORT, this.ip, resolve));
    return this;
  }

  /**
   * Puppet Server is gone: new connects to the HTTPS port are refused, and the readiness check,
   * which asks it, fails from now on.
   */
  refuse(): void {
    this.https.close();
    this.status = 503;
  }

  close(): void {
    this.https.close();
    this.https.closeAllConnections();
    this.readiness.close();
    this.readiness.closeAllConnections();
    this.tcp.close();
  }
}

/** One request through the NLB on a new connection: the target's id, or the error the client saw. */
function whoViaNlb(): Promise<string> {
  return whoViaNlbAt(BIND);
}

function whoViaNlbAt(host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = get({ host, port: HTTPS_PORT, path: '/who', rejectUnauthorized: false, agent: false, timeout: 3_000 }, (response) => {
      let body = '';
      response.on('data', (chunk) => (body += chunk));
      response.on('end', () => resolve(body));
    });
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', reject);
  });
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function stateOf(nlb: HaproxyNlb, targetId: string, port = HTTPS_PORT): Promise<string | undefined> {
  return (await nlb.health()).find((t) => t.targetId === targetId && t.port === port)?.state;
}

const healthy = (nlb: HaproxyNlb, targetId: string) =>
  waitFor(`${targetId} healthy`, async () => ((await stateOf(nlb, targetId)) === 'healthy' ? true : undefined));

describe('the stack\'s target groups in HAProxy', () => {
  it('carries exactly the synthesized target groups\' health checks and deregistration settings', () => {
    const { template, config } = synthStack();
    const settings = targetGroupSettings(config);
    const groups = Object.values(template.findResources('AWS::ElasticLoadBalancingV2::TargetGroup')).map((r: Cfn) => r.Properties);
    expect(groups.map((g: Cfn) => g.Port).sort()).toEqual(settings.map((s) => s.port).sort());
    const cfg = haproxyConfig(settings, '192.0.2.1', '/run/x.sock');

    for (const group of groups) {
      const s = settings.find((candidate) => candidate.port === group.Port)!;
      const attribute = (key: string) => group.TargetGroupAttributes.find((a: Cfn) => a.Key === key)?.Value;
      expect(attribute('deregistration_delay.timeout_seconds')).toBe(String(s.deregistrationDelaySeconds));
      expect(attribute('deregistration_delay.connection_termination.enabled')).toBe(String(s.connectionTermination));
      expect(attribute('target_health_state.unhealthy.draining_interval_seconds')).toBe(String(s.unhealthyDrainingSeconds));
      expect(group.HealthCheckPort).toBe(String(s.healthCheck.port));

      const backend = cfg.split(/\n(?=\S)/).find((section) => section.startsWith(`backend ${backendName(s)}\n`))!;
      expect(cfg).toContain(`bind 192.0.2.1:${group.Port}\n`);
      expect(backend).toContain(`timeout check ${group.HealthCheckTimeoutSeconds * 1000}\n`);
      const server = addServerCommand(s, 'i-0123456789abcdef0', '10.0.0.5');
      expect(server).toBe(
        `add server ${backendName(s)}/i-0123456789abcdef0 10.0.0.5:${group.Port} check` +
          (group.HealthCheckProtocol === 'HTTPS' ? ' check-ssl verify none' : '') +
          (group.HealthCheckPort === 'traffic-port' ? '' : ` port ${group.HealthCheckPort}`) +
          ` inter ${group.HealthCheckIntervalSeconds * 1000} rise ${group.HealthyThresholdCount} fall ${group.UnhealthyThresholdCount}`,
      );
      if (group.HealthCheckProtocol === 'HTTP' || group.HealthCheckProtocol === 'HTTPS') {
        expect(backend).toContain(`option httpchk GET ${group.HealthCheckPath}\n`);
        expect(backend).toContain(`http-check expect status ${group.Matcher.HttpCode}\n`);
      } else {
        expect(group.HealthCheckProtocol).toBe('TCP');
        expect(backend).not.toContain('httpchk');
      }
    }
    // What makes HAProxy behave as an NLB rather than as a proxy that hides failures.
    expect(cfg).toMatch(/^ {2}retries 0$/m);
    expect(cfg).toMatch(/^ {2}no option redispatch$/m);
    expect(cfg).not.toMatch(/^\s*option redispatch/m);
  });

  it('makes load-balancer.ts build its target groups from targetGroupSettings', () => {
    const source = readFileSync(new URL('../../cdk/constructs/load-balancer.ts', import.meta.url), 'utf8');
    expect(source).toContain('targetGroupSettings(props)');
    expect(source).not.toMatch(/Duration\.seconds\(\d|ThresholdCount: \d|'\/status/);
  });
});

describe('HAProxy as the NLB', () => {
  let pem: Pem;
  let runDir: string;
  let nlb: HaproxyNlb;
  const targets: FakeTarget[] = [];

  const target = async (n: number) => {
    const t = await new FakeTarget(`i-0000000000000000${n}`, `127.0.77.${10 + n}`, pem).listen();
    targets.push(t);
    return t;
  };

  beforeAll(async () => {
    const ca = await makeTestCa();
    pem = await ca.issue({ commonName: 'compile-master' });
  });

  afterEach(async () => {
    await nlb?.stop();
    for (const t of targets.splice(0)) t.close();
    if (runDir) rmSync(runDir, { recursive: true, force: true });
  });

  afterAll(() => targets.forEach((t) => t.close()));

  const start = async () => {
    runDir = mkdtempSync(join(tmpdir(), 'nlb-'));
    nlb = await startHaproxyNlb({ settings: SETTINGS, bindAddress: BIND, runDir });
  };

  it(`sends a new target nothing before ${RISE} passing checks, then its share`, async () => {
    await start();
    const a = await target(1);
    const b = await target(2);
    await nlb.register(a.id, a.ip);
    await healthy(nlb, a.id);

    await nlb.register(b.id, b.ip);
    expect(await stateOf(nlb, b.id)).toBe('initial');
    const seen: string[] = [];
    while ((await stateOf(nlb, b.id)) !== 'healthy') {
      seen.push(await whoViaNlb());
      await sleep(50);
    }
    const passed = b.checks.filter((c) => c.status === 200);
    expect(passed.length).toBeGreaterThanOrEqual(RISE);
    expect(b.served.filter((at) => at <= passed[RISE - 1]!.at)).toEqual([]);
    expect(seen.length).toBeGreaterThan(20);

    const after = await Promise.all(Array.from({ length: 10 }, () => whoViaNlb()));
    expect(after.filter((id) => id === b.id).length).toBe(5);
    // The PCP broker port's check (the same readiness check) brings it up too.
    expect(await stateOf(nlb, b.id, TCP_PORT)).toBe('healthy');
  });

  it(`stops new connections to a target whose check failed ${FALL} times`, async () => {
    await start();
    const a = await target(1);
    const b = await target(2);
    for (const t of [a, b]) await nlb.register(t.id, t.ip);
    for (const t of [a, b]) await healthy(nlb, t.id);

    b.status = 503;
    const failing = Date.now();
    const servedByB: number[] = [];
    await waitFor('b unhealthy', async () => {
      if ((await whoViaNlb()) === b.id) servedByB.push(Date.now());
      return (await stateOf(nlb, b.id)) === 'unhealthy' ? true : undefined;
    });
    const failures = b.checks.filter((c) => c.at >= failing && c.status === 503);
    expect(failures.length).toBeGreaterThanOrEqual(FALL);
    // Until the threshold it still had its share, as behind an NLB.
    expect(servedByB.some((at) => at < failures[FALL - 1]!.at)).toBe(true);

    const served = b.served.length;
    const ids = [];
    for (let i = 0; i < 10; i++) ids.push(await whoViaNlb());
    expect(ids.every((id) => id === a.id)).toBe(true);
    expect(b.served.length).toBe(served);
  });

  it('drains a deregistered target: no new connection at once, open ones until the delay, then closed', async () => {
    await start();
    const a = await target(1);
    const b = await target(2);
    for (const t of [a, b]) await nlb.register(t.id, t.ip);
    for (const t of [a, b]) await healthy(nlb, t.id);

    const open = await waitFor('a connection to b', () => keepAliveConnection().then((c) => (c.id === b.id ? c : (c.close(), undefined))));
    const started = Date.now();
    const deregistered = nlb.deregister(b.id).then(() => Date.now());
    await waitFor('b draining', async () => ((await stateOf(nlb, b.id)) === 'draining' ? true : undefined), 1_000);

    const ids = await Promise.all(Array.from({ length: 10 }, () => whoViaNlb()));
    expect(ids.every((id) => id === a.id)).toBe(true);
    await sleep(1_000);
    expect(await open.ask()).toBe(b.id);

    const closedAt = await open.closed;
    expect(closedAt - started).toBeGreaterThanOrEqual(DELAY_SECONDS * 1000);
    expect(closedAt - started).toBeLessThan(DELAY_SECONDS * 1000 + 1_500);
    expect((await deregistered) - started).toBeGreaterThanOrEqual(DELAY_SECONDS * 1000);
    expect((await nlb.health()).map((t) => t.targetId)).toEqual([a.id, a.id]);
    expect(await nlb.command(`show servers state ${backendName(SETTINGS[0]!)}`)).not.toContain(b.id);
  });

  it('never retries a refused connection on another target: the client sees it fail', async () => {
    await start();
    const a = await target(1);
    const b = await target(2);
    for (const t of [a, b]) await nlb.register(t.id, t.ip);
    for (const t of [a, b]) await healthy(nlb, t.id);

    // b still counts as healthy until FALL checks notice: connections sent to it are refused.
    b.refuse();
    const servedByA = a.served.length;
    const outcomes = await Promise.all(Array.from({ length: 10 }, () => whoViaNlb().catch((error: Error) => error)));
    const failed = outcomes.filter((o) => o instanceof Error);
    expect(failed.length).toBe(5);
    expect(outcomes.filter((o) => o === a.id).length).toBe(5);
    expect(a.served.length - servedByA).toBe(5);
    // One log line per connection names the server; the refused ones ended at connect ("SC"), not retried.
    const refused = readFileSync(join(runDir, 'haproxy.log'), 'utf8')
      .split('\n')
      .filter((line) => line.includes(`tg${HTTPS_PORT}/${b.id} `) && / SC /.test(line));
    expect(refused.length).toBe(5);
  });
  it('runs in a network namespace through spawnPrefix and checks targets there', async () => {
    const ns = `nlb-test-${process.pid}`;
    spawnSync('ip', ['netns', 'add', ns], { stdio: 'inherit' });
    const inNs = ['ip', 'netns', 'exec', ns];
    let server: ReturnType<typeof spawn> | undefined;
    try {
      spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'], { stdio: 'inherit' });
      runDir = mkdtempSync(join(tmpdir(), 'nlb-'));
      writeFileSync(join(runDir, 'target.json'), JSON.stringify(pem));
      // A target inside the namespace, at an address that only exists there.
      const script = `const pem = require(${JSON.stringify(join(runDir, 'target.json'))});
        require('node:https').createServer(pem, (q, s) => s.end('ok')).listen(${HTTPS_PORT}, '127.0.0.2');
        require('node:http').createServer((q, s) => s.end('ready')).listen(${CHECK_PORT}, '127.0.0.2');
        require('node:net').createServer((s) => s.end()).listen(${TCP_PORT}, '127.0.0.2');`;
      server = spawn(inNs[0]!, [...inNs.slice(1), process.execPath, '-e', script], { stdio: 'ignore' });
      nlb = await startHaproxyNlb({ settings: SETTINGS, bindAddress: '127.0.0.1', runDir, spawnPrefix: inNs });
      await nlb.register('i-0000000000000000e', '127.0.0.2');
      await healthy(nlb, 'i-0000000000000000e');
      // Its listeners are in the namespace, not on the host's loopback.
      await expect(whoViaNlbAt('127.0.0.1')).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await nlb?.stop();
      server?.kill();
      spawnSync('ip', ['netns', 'delete', ns]);
    }
  });
});

/** A TLS connection through the NLB kept open across requests (as a Puppet agent's keep-alive). */
async function keepAliveConnection(): Promise<{ id: string; ask: () => Promise<string>; closed: Promise<number>; close: () => void }> {
  const socket = tlsConnect({ host: BIND, port: HTTPS_PORT, rejectUnauthorized: false });
  const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
  socket.on('error', () => {});
  let pending: ((body: string) => void) | undefined;
  let buffer = '';
  socket.on('data', (chunk) => {
    buffer += chunk.toString();
    const match = /\r\n\r\n([\s\S]*)$/.exec(buffer);
    const length = /content-length: (\d+)/i.exec(buffer);
    if (match && length && match[1]!.length >= Number(length[1])) {
      const body = match[1]!.slice(0, Number(length[1]));
      buffer = '';
      pending?.(body);
    }
  });
  const ask = () =>
    new Promise<string>((resolve, reject) => {
      pending = resolve;
      socket.write('GET /who HTTP/1.1\r\nHost: nlb\r\n\r\n', (error) => error && reject(error));
      setTimeout(() => reject(new Error('no answer on the open connection')), 3_000).unref();
    });
  await new Promise((resolve) => socket.once('secureConnect', resolve));
  return { id: await ask(), ask, closed, close: () => socket.destroy() };
}
