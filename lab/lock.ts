import { spawn } from 'node:child_process';
import { once } from 'node:events';

/**
 * The machine-wide lock that everyone sharing the lab takes around runs that stop, start or lean
 * on its servers (`flock /var/tmp/compile-masters-lab.lock npm run lab -- --faults` stops the CA).
 */
export const LAB_LOCK_FILE = '/var/tmp/compile-masters-lab.lock';

export interface HeldLock {
  release(): Promise<void>;
}

/**
 * Takes the lock with flock(1), the tool the lab's users take it with, and holds it until
 * release(). The lock lives in a child `flock … cat` that exits when its stdin closes, so it is
 * released even if this process dies without calling release().
 */
export async function holdLabLock(file = LAB_LOCK_FILE): Promise<HeldLock> {
  const holder = spawn('flock', ['--exclusive', file, 'sh', '-c', 'echo locked && exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    holder.stdout.once('data', () => resolve());
    holder.once('error', reject);
    // After the lock was taken this rejects nothing: a settled promise ignores it.
    holder.once('exit', (code) => reject(new Error(`flock ${file} exited ${String(code)} before taking the lock`)));
  });
  return {
    async release() {
      const exited = holder.exitCode === null ? once(holder, 'exit') : undefined;
      holder.stdin.end();
      await exited;
    },
  };
}
