import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection, isIPv4 } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TargetGroupSettings } from '../../cdk/target-groups';
import { ensurePackages } from '../packages';

/**
 * HAProxy standing in for the stack's NLB: TCP pass-through per listener port, health checks,
 * registration and deregistration as the NLB's target groups do them, configured from the same
 * `targetGroupSettings()` the CDK construct builds the target groups from.
 *
 * Targets are dynamic servers (`add server`, supported in TCP backends by 2.6), named by their
 * target id, so `show servers state` and the connection log speak in instance ids.
 */

export type TargetState = 'initial' | 'healthy' | 'unhealthy' | 'draining';

export interface TargetHealth {
  readonly targetId: string;
  readonly ip: string;
  readonly port: number;
  readonly state: TargetState;
}

export interface HaproxyNlbOptions {
  readonly settings: readonly TargetGroupSettings[];
  /** The address the listeners bind to (in the namespace, when there is one). */
  readonly bindAddress: string;
  /** Config, pid file, runtime-API socket and log; a unix socket path must stay under 108 bytes. */
  readonly runDir: string;
  /** Runs haproxy through this, e.g. ['ip', 'netns', 'exec', 'nlb']; it must exec haproxy. */
  readonly spawnPrefix?: readonly string[];
  readonly log?: (line: string) => void;
}

export interface HaproxyFiles {
  readonly configFile: string;
  readonly socketPath: string;
  readonly pidFile: string;
  /** HAProxy's own messages and one line per connection (tcplog: frontend, backend/server, timers). */
  readonly logFile: string;
}

export function haproxyFiles(runDir: string): HaproxyFiles {
  return {
    configFile: join(runDir, 'haproxy.cfg'),
    socketPath: join(runDir, 'admin.sock'),
    pidFile: join(runDir, 'haproxy.pid'),
    logFile: join(runDir, 'haproxy.log'),
  };
}

export const backendName = (group: TargetGroupSettings): string => `tg${group.port}`;

/** An NLB's idle timeout for TCP flows. */
const NLB_TCP_IDLE_TIMEOUT_SECONDS = 350;

export function haproxyConfig(settings: readonly TargetGroupSettings[], bindAddress: string, socketPath: string): string {
  const lines = [
    'global',
    `  stats socket ${socketPath} mode 600 level admin`,
    '  stats timeout 30s',
    // One thread: round-robin order is then exact, which the tests rely on, and a lab needs no more.
    '  nbthread 1',
    // Within the 20000 open files a CI container allows (2 per connection and some).
    '  maxconn 4000',
    '  log stdout format raw daemon',
    '',
    'defaults',
    '  mode tcp',
    '  log global',
    '  option tcplog',
    '  timeout connect 10s',
    `  timeout client ${NLB_TCP_IDLE_TIMEOUT_SECONDS}s`,
    `  timeout server ${NLB_TCP_IDLE_TIMEOUT_SECONDS}s`,
    // An NLB forwards a connection to one target and never retries it elsewhere: a refused or
    // timed-out connect reaches the client.
    '  retries 0',
    '  no option redispatch',
  ];
  for (const group of settings) {
    const check = group.healthCheck;
    lines.push(
      '',
      `frontend listener${group.port}`,
      `  bind ${bindAddress}:${group.port}`,
      `  default_backend ${backendName(group)}`,
      '',
      `backend ${backendName(group)}`,
      // Per connection, as an NLB's flow hash is; round-robin keeps the tests deterministic.
      '  balance roundrobin',
      `  timeout check ${check.timeoutSeconds * 1000}`,
    );
    if (check.protocol !== 'TCP') {
      lines.push(`  option httpchk GET ${check.path ?? '/'}`, `  http-check expect ${httpCodeMatcher(check.healthyHttpCodes ?? '200')}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The runtime-API command that adds a target to a backend, with the target group's health check. */
export function addServerCommand(group: TargetGroupSettings, targetId: string, ip: string): string {
  const check = group.healthCheck;
  const words = [`add server ${backendName(group)}/${targetId} ${ip}:${group.port} check`];
  // An NLB does not verify the target's certificate, nor send one.
  if (check.protocol === 'HTTPS') words.push('check-ssl verify none');
  if (check.port !== 'traffic-port') words.push(`port ${check.port}`);
  words.push(`inter ${check.intervalSeconds * 1000} rise ${check.healthyThreshold} fall ${check.unhealthyThreshold}`);
  return words.join(' ');
}

/** "200" | "200,202" | "200-299" (the target group's matcher syntax) as an http-check expectation. */
export function httpCodeMatcher(codes: string): string {
  if (/^\d{3}$/.test(codes)) return `status ${codes}`;
  const all = codes.split(',').flatMap((part) => {
    const range = /^(\d{3})-(\d{3})$/.exec(part.trim());
    if (!range) {
      if (!/^\d{3}$/.test(part.trim())) throw new Error(`healthy HTTP codes ${JSON.stringify(codes)}: ${JSON.stringify(part)} is not a code or range`);
      return [part.trim()];
    }
    return Array.from({ length: Number(range[2]) - Number(range[1]) + 1 }, (_, i) => String(Number(range[1]) + i));
  });
  return `rstatus ^(${all.join('|')})$`;
}

/** haproxy, installed with apt when missing, as the rest of the lab's packages are. */
export function ensureHaproxy(log: (line: string) => void): void {
  ensurePackages(log, ['haproxy']);
}

interface Target {
  readonly ip: string;
  /** Ports whose server has not yet passed `healthyThreshold` checks since registration. */
  readonly initial: Set<number>;
  draining: boolean;
}

interface ServerState {
  /** srv_op_state: 0 stopped (down), 1 starting, 2 running, 3 stopping. */
  readonly opState: number;
  /** srv_check_result: 2 failed, 3 passed. */
  readonly checkResult: number;
}

const CHECK_FAILED = 2;
const OP_RUNNING = 2;
const SERVER_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

export async function startHaproxyNlb(options: HaproxyNlbOptions): Promise<HaproxyNlb> {
  const log = options.log ?? (() => {});
  ensureHaproxy(log);
  const files = haproxyFiles(options.runDir);
  mkdirSync(options.runDir, { recursive: true });
  writeFileSync(files.configFile, haproxyConfig(options.settings, options.bindAddress, files.socketPath));
  const prefix = options.spawnPrefix ?? [];
  const argv = [...prefix, 'haproxy', '-W', '-db', '-f', files.configFile, '-p', files.pidFile];
  const out = openSync(files.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', out, out] });
  } finally {
    closeSync(out);
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const nlb = new HaproxyNlb(options.settings, files, child, exited);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const gone = await Promise.race([exited, sleep(100).then(() => undefined)]);
    if (gone !== undefined) throw new Error(`haproxy exited ${gone} at start:\n${tail(files.logFile)}`);
    if (await nlb.command('show info').then(() => true, () => false)) break;
    if (Date.now() > deadline) {
      await nlb.stop();
      throw new Error(`haproxy's runtime API did not answer within 10 s:\n${tail(files.logFile)}`);
    }
  }
  log(`haproxy listening on ${options.settings.map((g) => `${options.bindAddress}:${g.port}`).join(', ')}`);
  return nlb;
}

function tail(file: string): string {
  return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
}

export class HaproxyNlb {
  private readonly targets = new Map<string, Target>();
  /** Runtime-API commands go one at a time, so a promotion never lands after a drain. */
  private queue: Promise<unknown> = Promise.resolve();
  private promoter: NodeJS.Timeout | undefined;
  private readonly delays = new Set<{ timer: NodeJS.Timeout; reject: (error: Error) => void }>();
  private stopped = false;

  constructor(
    readonly settings: readonly TargetGroupSettings[],
    readonly files: HaproxyFiles,
    private readonly child: ChildProcess,
    private readonly exited: Promise<number | null>,
  ) {}

  /**
   * Adds the target to every target group. Like an NLB target in "initial" state it gets no
   * connection until it has passed `healthyThreshold` checks: HAProxy puts a server that leaves
   * maintenance straight UP ("start OK but check immediately"), so it leaves maintenance into
   * drain (checked, no new connections), is forced DOWN, and is made ready only once its checks
   * have brought it back UP.
   */
  async register(targetId: string, ip: string): Promise<void> {
    if (!SERVER_NAME.test(targetId)) throw new Error(`target id ${JSON.stringify(targetId)} is not a valid HAProxy server name`);
    if (!isIPv4(ip)) throw new Error(`target address ${JSON.stringify(ip)} is not an IPv4 address`);
    if (this.targets.has(targetId)) throw new Error(`target ${targetId} is already registered`);
    const target: Target = { ip, initial: new Set(), draining: false };
    this.targets.set(targetId, target);
    for (const group of this.settings) {
      const server = `${backendName(group)}/${targetId}`;
      await this.serial(async () => {
        await this.expect(addServerCommand(group, targetId, ip), 'New server registered.');
        await this.expect(`enable health ${server}`);
        await this.expect(`set server ${server} state drain`);
        await this.expect(`set server ${server} health down`);
      });
      target.initial.add(group.port);
    }
    this.schedulePromotion();
  }

  /**
   * Stops new connections to the target at once and keeps the open ones for the deregistration
   * delay; then closes them (connection termination) and removes the target. Resolves when the
   * target is gone, as the Auto Scaling group only moves on to the terminate hook then.
   */
  async deregister(targetId: string): Promise<void> {
    const target = this.targets.get(targetId);
    if (!target) throw new Error(`target ${targetId} is not registered`);
    if (target.draining) throw new Error(`target ${targetId} is already draining`);
    target.draining = true;
    await this.serial(async () => {
      for (const group of this.settings) await this.expect(`set server ${backendName(group)}/${targetId} state maint`);
    });
    // The target groups share one delay in the stack; the longest one rules all the same.
    await this.delay(Math.max(...this.settings.map((g) => g.deregistrationDelaySeconds)) * 1000);
    for (const group of this.settings) {
      const server = `${backendName(group)}/${targetId}`;
      if (group.connectionTermination) await this.serial(() => this.expect(`shutdown sessions server ${server}`));
      // `del server` refuses while a connection is still open (closing is asynchronous, and
      // without connection termination the connections end on their own).
      while ((await this.serial(() => this.command(`del server ${server}`))).trim() !== 'Server deleted.') {
        await this.delay(100);
      }
    }
    this.targets.delete(targetId);
  }

  async health(): Promise<TargetHealth[]> {
    const servers = await this.serversState();
    return [...this.targets].flatMap(([targetId, target]) =>
      this.settings.map((group) => ({
        targetId,
        ip: target.ip,
        port: group.port,
        state: stateOf(target, group.port, servers.get(`${backendName(group)}/${targetId}`)),
      })),
    );
  }

  /** Ends HAProxy (every connection with it); pending deregistrations reject. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.promoter);
    for (const pending of this.delays) {
      clearTimeout(pending.timer);
      pending.reject(new Error('the load balancer stopped'));
    }
    this.delays.clear();
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const forced = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
      await this.exited;
      clearTimeout(forced);
    }
  }

  /** One runtime-API command (non-interactive: HAProxy answers and closes). */
  command(line: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(this.files.socketPath);
      let answer = '';
      socket.setTimeout(5_000, () => socket.destroy(new Error(`haproxy did not answer ${JSON.stringify(line)}`)));
      socket.on('connect', () => socket.write(`${line}\n`));
      socket.on('data', (chunk) => (answer += chunk.toString()));
      socket.on('end', () => resolve(answer));
      socket.on('error', reject);
    });
  }

  private async expect(line: string, success = ''): Promise<void> {
    const answer = (await this.command(line)).trim();
    if (answer !== success) throw new Error(`haproxy refused "${line}": ${answer}`);
  }

  private serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => {});
    return run;
  }

  private delay(ms: number): Promise<void> {
    if (this.stopped) return Promise.reject(new Error('the load balancer stopped'));
    return new Promise((resolve, reject) => {
      const pending = {
        timer: setTimeout(() => {
          this.delays.delete(pending);
          resolve();
        }, ms),
        reject,
      };
      this.delays.add(pending);
    });
  }

  /** Polls while a target is initial; a fifth of the shortest interval keeps the lag small. */
  private schedulePromotion(): void {
    if (this.promoter || this.stopped) return;
    const pollMs = Math.min(...this.settings.map((g) => g.healthCheck.intervalSeconds * 200));
    this.promoter = setTimeout(() => {
      this.promoter = undefined;
      this.promote().then(
        () => {
          if ([...this.targets.values()].some((t) => t.initial.size > 0 && !t.draining)) this.schedulePromotion();
        },
        () => this.schedulePromotion(),
      );
    }, pollMs);
    this.promoter.unref();
  }

  private async promote(): Promise<void> {
    const servers = await this.serversState();
    for (const [targetId, target] of this.targets) {
      for (const group of this.settings) {
        if (!target.initial.has(group.port)) continue;
        if (servers.get(`${backendName(group)}/${targetId}`)?.opState !== OP_RUNNING) continue;
        const server = `${backendName(group)}/${targetId}`;
        await this.serial(async () => {
          if (target.draining || this.stopped) return;
          await this.expect(`set server ${server} state ready`);
          target.initial.delete(group.port);
        });
      }
    }
  }

  private async serversState(): Promise<Map<string, ServerState>> {
    const dump = await this.command('show servers state');
    const servers = new Map<string, ServerState>();
    for (const line of dump.split('\n')) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 13 || line.startsWith('#')) continue;
      servers.set(`${fields[1]}/${fields[3]}`, { opState: Number(fields[5]), checkResult: Number(fields[11]) });
    }
    return servers;
  }
}

/**
 * An initial target that failed its last check is reported unhealthy at once (an NLB waits for
 * `unhealthyThreshold` failures: HAProxy keeps no count of failures of a server that is down).
 */
function stateOf(target: Target, port: number, server: ServerState | undefined): TargetState {
  if (target.draining) return 'draining';
  if (!server) return 'initial';
  if (target.initial.has(port)) return server.checkResult === CHECK_FAILED ? 'unhealthy' : 'initial';
  return server.opState === 0 ? 'unhealthy' : 'healthy';
}
