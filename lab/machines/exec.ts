import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  input?: string;
  /** Default 60 s; the command is killed after it. */
  timeoutMs?: number;
}

/**
 * Runs a command to completion without blocking the event loop: the lab's in-process servers
 * (IMDS, the AWS stand-ins) must keep answering the machines while the host waits on them.
 */
export async function execFile(command: string, args: string[], options: ExecOptions = {}): Promise<ExecResult> {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: options.timeoutMs ?? 60_000 });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.on('error', () => undefined).end(options.input ?? '');
  const code = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (status, signal) => resolve(status ?? (signal ? 128 : -1)));
  });
  // A process it left running in the background may hold the pipes open for good: take what
  // arrives shortly after the exit, then let go of them.
  await Promise.race([new Promise((resolve) => child.once('close', resolve)), sleep(200)]);
  child.stdout.destroy();
  child.stderr.destroy();
  return { code, stdout, stderr };
}
