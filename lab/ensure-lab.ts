import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { labDir } from './description';
import { orchestratorHealthy, puppetDbHealthy, puppetServerHealthy } from './health';
import { layout } from './layout';
import { writePuppetCode } from './puppet-code';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

async function labHealthy(): Promise<boolean> {
  const paths = layout(labDir());
  if (!existsSync(paths.descriptionFile)) return false;
  const checks = await Promise.all([puppetServerHealthy(paths), puppetDbHealthy(), orchestratorHealthy(paths)]);
  return checks.every(Boolean);
}

function startLab(): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    // Progress (stderr) shows in the test output; the description (stdout) is read from lab.json.
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'lab', 'puppet-lab.ts'), 'up'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolvePromise() : reject(new Error(`\`npm run lab:puppet -- up\` exited ${code}`))));
  });
}

/**
 * Starts the Puppet lab unless it is already healthy (then only its Puppet code is converged). It is deliberately left running afterwards:
 * the next run reuses it, and CI machines are thrown away.
 */
export default async function setup(): Promise<void> {
  if (await labHealthy()) {
    // What `up` does to a healthy lab: the Puppet code may be newer than the running lab's.
    writePuppetCode(layout(labDir()));
    return;
  }
  await startLab();
}
