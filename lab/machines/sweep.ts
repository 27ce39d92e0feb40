import { readdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { unmountBelow } from './mounts';

/**
 * What a killed run leaves behind (its machines, HAProxy, overlays, namespaces and bridge) is
 * removed before the next run starts. Only called under the lab's lock, so no live run owns any of
 * it: every process whose command line names a path under `scenarioDir` belongs to a dead run.
 */
export function sweepLeftovers(scenarioDir: string, log: (line: string) => void = () => undefined): void {
  let killed = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string;
    try {
      args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      continue;
    }
    if (!(/^(systemd-nspawn|haproxy) /.test(args) && args.includes(scenarioDir)) && !machineInitOf(entry, scenarioDir)) continue;
    try {
      process.kill(Number(entry), 'SIGKILL');
      killed += 1;
    } catch {
      // gone already
    }
  }
  if (killed > 0) {
    log(`killed ${killed} machine or load-balancer processes of an earlier run`);
    // Their children (the machines' systemd) go with them; give the kernel a moment to reap.
    spawnSync('sleep', ['1']);
  }
  unmountBelow(scenarioDir);
  for (const name of ip(['netns', 'list']).map((line) => line.split(' ')[0] ?? '')) {
    if (/^cm[0-9a-f]{6}-/.test(name)) spawnSync('ip', ['netns', 'delete', name]);
  }
  for (const line of ip(['-o', 'link', 'show', 'type', 'bridge'])) {
    const name = line.split(':')[1]?.trim().split('@')[0];
    if (name && /^cmlab[0-9a-f]{6}$/.test(name)) spawnSync('ip', ['link', 'delete', name]);
  }
}

/**
 * A machine's systemd outlives a killed systemd-nspawn (it is reparented, its PID namespace with
 * it): it is found by its root, an overlay whose upper layer is under the scenario directory.
 * Killing it ends every process of the machine.
 */
function machineInitOf(pid: string, scenarioDir: string): boolean {
  try {
    if (!readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes('container=systemd-nspawn')) return false;
    return readFileSync(`/proc/${pid}/mountinfo`, 'utf8').includes(`upperdir=${scenarioDir}/`);
  } catch {
    return false;
  }
}

function ip(args: string[]): string[] {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  return (result.stdout ?? '').split('\n').filter(Boolean);
}
