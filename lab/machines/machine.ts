import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../processes';
import { mountsBelow, removeTree, unmountBelow } from './mounts';
import { execFile, type ExecOptions, type ExecResult } from './exec';
import type { NetworkHost } from './network';

export interface MachineFile {
  /** Absolute path inside the machine. */
  path: string;
  content: string;
  mode?: number;
}

export interface MachineBind {
  source: string;
  target: string;
  /** Default true: the machine must not change what the host lends it. */
  readOnly?: boolean;
}

export interface MachineOptions {
  /** The machine's host name (/etc/hostname), e.g. the EC2 private DNS name. */
  hostname: string;
  /** The cached root file system (ensureRootfs): the overlay's read-only lower layer. */
  rootfs: string;
  /** The machine's own directory: overlay upper and work dirs, mount point, console log. */
  stateDir: string;
  /** Its namespace on the lab network (LabNetwork.addHost). */
  network: NetworkHost;
  /** /etc/hosts entries, name → address (primary.lab.test → gateway, the NLB name → HAProxy, …). */
  hosts?: Record<string, string>;
  /** Written into the machine's root before its first boot (units, drop-ins, configuration). */
  files?: MachineFile[];
  binds?: MachineBind[];
  /**
   * Run once, at the first boot only, as cloud-init runs an instance's user data (the stack's
   * user data mounts EFS, then runs `bash /mnt/compile-masters/bootstrap.sh`).
   */
  userData?: string;
}

export interface RunningState {
  /** `systemctl is-system-running`: "running", or "degraded" with the failed units listed. */
  state: string;
  failedUnits: string[];
}

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const USER_DATA_UNIT = 'lab-user-data.service';
/** systemd-nspawn's exit status when the machine's systemd rebooted. */
const REBOOT_EXIT = 133;

/**
 * A Debian 12 machine booted with systemd as PID 1 under systemd-nspawn, on its own network
 * namespace. Its root is a copy-on-write overlay of the cached root file system, so it keeps its
 * changes (machine-id, Puppet identity, …) across reboots and loses them only at destroy(), as an
 * instance keeps its root volume until it is terminated.
 */
export class Machine {
  private nspawn: ChildProcess | undefined;
  private bootCount = 0;
  private readonly exitCodes: Array<number | null> = [];
  private stopping = false;
  private halted: Promise<number | null> = Promise.resolve(null);
  private resolveHalted: (code: number | null) => void = () => undefined;

  private constructor(
    readonly options: MachineOptions,
    readonly machineId: string,
  ) {}

  /** Mounts the machine's overlay and writes its identity and the caller's files; does not boot. */
  static create(options: MachineOptions): Machine {
    const machine = new Machine(options, randomBytes(16).toString('hex'));
    const { upper, work, root } = machine.paths;
    for (const dir of [upper, work, root]) mkdirSync(dir, { recursive: true });
    run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${options.rootfs},upperdir=${upper},workdir=${work}`, root]);
    try {
      machine.writeFirstBootFiles();
    } catch (error) {
      machine.destroy();
      throw error;
    }
    return machine;
  }

  get paths() {
    const dir = this.options.stateDir;
    return { upper: join(dir, 'upper'), work: join(dir, 'work'), root: join(dir, 'root'), consoleLog: join(dir, 'console.log') };
  }

  get hostname(): string {
    return this.options.hostname;
  }

  /** How many times systemd-nspawn has started this machine (a reboot is one more). */
  get boots(): number {
    return this.bootCount;
  }

  /** systemd-nspawn's exit status of each boot so far: 133 for a reboot, 0 for a poweroff. */
  get exits(): ReadonlyArray<number | null> {
    return this.exitCodes;
  }

  get running(): boolean {
    return this.nspawn !== undefined;
  }

  /** Starts the machine; it boots again by itself after a reboot until poweroff() or kill(). */
  boot(): void {
    if (this.nspawn) throw new Error(`${this.hostname} is running already`);
    this.stopping = false;
    this.halted = new Promise((resolve) => (this.resolveHalted = resolve));
    this.start();
  }

  /** Resolves with systemd-nspawn's last exit status once the machine is off for good. */
  whenHalted(): Promise<number | null> {
    return this.halted;
  }

  /** The machine's PID 1 (its systemd), as the host sees it; waits while it starts. */
  async pid1(timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pid = this.nspawn?.pid === undefined ? undefined : containerInit(this.nspawn.pid);
      if (pid !== undefined) return pid;
      if (Date.now() > deadline) throw new Error(`${this.hostname}: no systemd PID 1 after ${timeoutMs} ms (see ${this.paths.consoleLog})`);
      await sleep(50);
    }
  }

  /** Runs a command inside the running machine (all its namespaces, its root, a clean environment). */
  async exec(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    const pid = await this.pid1();
    const nsenter = ['--target', String(pid), '--mount', '--uts', '--ipc', '--net', '--pid', '--cgroup', '--root', '--wd=/'];
    return execFile('nsenter', [...nsenter, '--', '/usr/bin/env', '-i', `PATH=${PATH}`, 'LANG=C.UTF-8', 'HOME=/root', ...argv], options);
  }

  /**
   * Waits until systemd has finished booting; "degraded" is accepted, with its failed units.
   * Booting includes every start job of multi-user.target, the node agent's oneshot boot step too:
   * while a compile master enrolls (signing, a Puppet run: minutes), the system stays "starting".
   * Wait for that with a longer timeout, or watch the unit (`systemctl show -p ActiveState`) instead.
   */
  async waitUntilRunning(timeoutMs = 120_000): Promise<RunningState> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // Before the machine's systemd has its bus up, systemctl cannot connect: ask again.
      const { stdout } = await this.exec(['systemctl', 'is-system-running', '--wait'], { timeoutMs: Math.max(1_000, deadline - Date.now()) });
      const state = stdout.trim();
      if (state === 'running') return { state, failedUnits: [] };
      if (state === 'degraded') {
        const failed = await this.exec(['systemctl', 'list-units', '--failed', '--plain', '--no-legend', '--no-pager']);
        return { state, failedUnits: failed.stdout.split('\n').map((line) => line.split(/\s+/)[0] ?? '').filter(Boolean) };
      }
      if (Date.now() > deadline) throw new Error(`${this.hostname} is not up after ${timeoutMs} ms: ${state || 'no answer'} (see ${this.paths.consoleLog})`);
      await sleep(200);
    }
  }

  /** `systemctl reboot` inside: systemd-nspawn exits 133 and the machine boots again, same root. */
  async reboot(timeoutMs = 120_000): Promise<RunningState> {
    const before = this.bootCount;
    await this.exec(['systemctl', '--no-block', 'reboot']);
    const deadline = Date.now() + timeoutMs;
    while (this.bootCount === before) {
      if (!this.running) throw new Error(`${this.hostname} halted instead of rebooting (exit ${String(this.exitCodes.at(-1))})`);
      if (Date.now() > deadline) throw new Error(`${this.hostname} did not reboot within ${timeoutMs} ms`);
      await sleep(100);
    }
    return this.waitUntilRunning(Math.max(1_000, deadline - Date.now()));
  }

  /**
   * A graceful power-off, as an EC2 stop or terminate does (an ACPI power button): systemd stops
   * every unit, so their ExecStop runs. Resolves with systemd-nspawn's exit status.
   */
  async poweroff(timeoutMs = 120_000): Promise<number | null> {
    if (!this.nspawn) return this.exitCodes.at(-1) ?? null;
    this.stopping = true;
    await this.exec(['systemctl', '--no-block', 'poweroff']);
    const timer = setTimeout(() => void this.kill(), timeoutMs);
    try {
      return await this.halted;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Pulls the plug: the machine's PID 1 is killed (and with it every process in the machine). */
  async kill(): Promise<void> {
    if (!this.nspawn) return;
    this.stopping = true;
    const pid = this.nspawn.pid === undefined ? undefined : containerInit(this.nspawn.pid);
    if (pid !== undefined) signal(pid, 'SIGKILL');
    else this.nspawn.kill('SIGKILL');
    await this.halted;
  }

  /** `journalctl -u unit` inside the machine, or from its root's persistent journal when it is off. */
  async journal(unit: string, options: { output?: string } = {}): Promise<string> {
    const args = ['--no-pager', '--quiet', '-o', options.output ?? 'short-iso', '-u', unit];
    if (this.running) return (await this.exec(['journalctl', ...args])).stdout;
    return run('journalctl', [`--root=${this.paths.root}`, ...args], { maxBuffer: 64 * 2 ** 20 });
  }

  /** Stops the machine if it runs, unmounts its root and deletes its state (its "root volume"). */
  async destroy(): Promise<void> {
    await this.kill();
    unmountBelow(this.paths.root);
    if (mountsBelow(this.options.stateDir).length > 0) throw new Error(`${this.options.stateDir} still has mounts`);
    removeTree(this.options.stateDir);
  }

  private start(): void {
    const { root, consoleLog } = this.paths;
    const log = openSync(consoleLog, 'a');
    try {
      const child = spawn('systemd-nspawn', this.nspawnArgs(root), { stdio: ['ignore', log, log] });
      this.nspawn = child;
      this.bootCount += 1;
      child.once('exit', (code) => {
        this.exitCodes.push(code);
        this.nspawn = undefined;
        if (code === REBOOT_EXIT && !this.stopping) return this.start();
        this.resolveHalted(code);
      });
    } finally {
      closeSync(log);
    }
  }

  private nspawnArgs(root: string): string[] {
    // No Node.js from the host: the node agent runs on the runtime the share ships, as on EC2.
    const binds = this.options.binds ?? [];
    return [
      '--quiet',
      '--boot',
      // No machined on the host to register with; the machine runs in our process's scope.
      '--register=no',
      '--keep-unit',
      `--directory=${root}`,
      `--machine=${this.hostname.split('.')[0]}`,
      `--uuid=${this.machineId}`,
      `--network-namespace-path=${this.options.network.netnsPath}`,
      // Its own journal, in its own root: readable after it is off.
      '--link-journal=no',
      // Names come from /etc/hosts; the host's resolver and timezone stay out.
      '--resolv-conf=off',
      '--timezone=off',
      '--console=read-only',
      ...binds.map(({ source, target, readOnly }) => `--${readOnly === false ? 'bind' : 'bind-ro'}=${source}:${target}`),
    ];
  }

  private writeFirstBootFiles(): void {
    const { hostname, network, hosts = {}, files = [], userData } = this.options;
    const short = hostname.split('.')[0] ?? hostname;
    const hostLines = ['127.0.0.1\tlocalhost', `${network.ip}\t${hostname}${short === hostname ? '' : ` ${short}`}`, ...Object.entries(hosts).map(([name, address]) => `${address}\t${name}`)];
    const all: MachineFile[] = [
      { path: '/etc/hostname', content: `${hostname}\n` },
      { path: '/etc/machine-id', content: `${this.machineId}\n`, mode: 0o444 },
      { path: '/etc/hosts', content: `${hostLines.join('\n')}\n` },
      // Persistent journal: the shutdown steps can be read after the machine is off.
      { path: '/var/log/journal/.keep', content: '' },
      ...files,
    ];
    if (userData !== undefined) all.push({ path: `/etc/systemd/system/${USER_DATA_UNIT}`, content: userDataUnit(userData) });
    for (const file of all) this.writeFile(file);
    if (userData !== undefined) {
      const wants = join(this.paths.root, 'etc/systemd/system/multi-user.target.wants');
      mkdirSync(wants, { recursive: true });
      symlinkSync(`/etc/systemd/system/${USER_DATA_UNIT}`, join(wants, USER_DATA_UNIT));
    }
  }

  private writeFile(file: MachineFile): void {
    const target = join(this.paths.root, file.path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, file.content, { mode: file.mode ?? 0o644 });
  }
}

/**
 * cloud-init runs user data once per instance, whatever its outcome: the marker is set before the
 * script runs, so a failed bootstrap is not retried at the next boot either.
 */
function userDataUnit(command: string): string {
  return `[Unit]
Description=Lab user data: what cloud-init runs at an instance's first boot
Wants=network-online.target
After=network-online.target
ConditionPathExists=!/var/lib/lab-user-data/done

[Service]
Type=oneshot
RemainAfterExit=yes
StateDirectory=lab-user-data
ExecStart=/usr/bin/touch /var/lib/lab-user-data/done
ExecStart=/bin/sh -c ${JSON.stringify(command)}
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
`;
}

/** The container's init among systemd-nspawn's children: PID 1 in its own PID namespace. */
function containerInit(nspawnPid: number): number | undefined {
  let children: number[];
  try {
    children = readFileSync(`/proc/${nspawnPid}/task/${nspawnPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return undefined;
  }
  return children.find((pid) => {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const nspid = /^NSpid:\s+(.+)$/m.exec(status)?.[1]?.trim().split(/\s+/);
      return nspid?.at(-1) === '1' && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'systemd';
    } catch {
      return false;
    }
  });
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}
