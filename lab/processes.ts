import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The lab's long-running processes are started detached (their own process group, output to a log
 * file) so they outlive `up`; a pid file per process lets `down` stop exactly what the lab started.
 */
export interface ManagedProcess {
  name: string;
  command: string;
  args: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export function pidFile(runDir: string, name: string): string {
  return join(runDir, `${name}.pid`);
}

/**
 * The pid recorded for `name`, if that process is still alive and is really ours: a recycled pid
 * would not carry the lab directory on its command line.
 */
export function runningPid(runDir: string, name: string, marker: string): number | null {
  const file = pidFile(runDir, name);
  if (!existsSync(file)) return null;
  const pid = Number.parseInt(readFileSync(file, 'utf8'), 10);
  return Number.isInteger(pid) && commandLine(pid).includes(marker) ? pid : null;
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

export function startDetached(runDir: string, logsDir: string, spec: ManagedProcess): number {
  mkdirSync(runDir, { recursive: true });
  mkdirSync(logsDir, { recursive: true });
  const log = openSync(join(logsDir, `${spec.name}.log`), 'a');
  try {
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      detached: true,
      stdio: ['ignore', log, log],
    });
    if (child.pid === undefined) throw new Error(`could not start ${spec.name} (${spec.command})`);
    child.unref();
    writeFileSync(pidFile(runDir, spec.name), `${child.pid}\n`);
    return child.pid;
  } finally {
    closeSync(log);
  }
}

/** Stops a process the lab started (and its children: it leads its own group). */
export async function stopProcess(runDir: string, name: string, marker: string, graceMs = 30_000): Promise<boolean> {
  const pid = runningPid(runDir, name, marker);
  if (pid === null) {
    rmSync(pidFile(runDir, name), { force: true });
    return false;
  }
  signalGroup(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(250);
  if (isAlive(pid)) signalGroup(pid, 'SIGKILL');
  while (isAlive(pid)) await sleep(100);
  rmSync(pidFile(runDir, name), { force: true });
  return true;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (exited, not yet reaped by init) still answers signal 0.
  return !/^State:\s+Z/m.test(readProcStatus(pid));
}

function readProcStatus(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return '';
  }
}

/** Runs a short command to completion; throws with its output when it fails. */
export function run(command: string, args: string[], options: SpawnSyncOptions = {}): string {
  const result = spawnSync(command, args, { encoding: 'utf8', ...options });
  if (result.error) throw new Error(`${command} could not run: ${result.error.message}`);
  if (result.status !== 0) {
    const output = `${String(result.stdout ?? '')}${String(result.stderr ?? '')}`.trim();
    throw new Error(`${command} ${args.join(' ')} exited ${result.status}:\n${output}`);
  }
  return String(result.stdout ?? '');
}
