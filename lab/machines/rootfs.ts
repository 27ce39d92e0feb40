import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { holdLabLock } from '../lock';
import { ensurePackages, PUPPET_MODULE_PACKAGES } from '../packages';
import { run } from '../processes';
import { removeTree } from './mounts';

/**
 * What every lab machine has installed: a systemd Debian 12 with the tools the tests and the
 * bootstrap use, and Debian's Puppet agent and Puppet Server (the Puppet class applied later
 * configures and enables the server). The puppet-module-puppetlabs-*-core packages are Puppet
 * Server's Recommends: since Puppet 6 the host, mount, cron, augeas, selinux and sshkeys types
 * live in those modules, and recommends are not installed here. Add packages here: the cache key
 * is this list, so a change builds a new root file system.
 */
export const MACHINE_PACKAGES = [
  'systemd',
  'systemd-sysv',
  'dbus',
  'iproute2',
  'ca-certificates',
  'curl',
  'procps',
  'puppet-agent',
  'puppetserver',
  'puppet-terminus-puppetdb',
  'puppet-module-puppetlabs-augeas-core',
  'puppet-module-puppetlabs-cron-core',
  'puppet-module-puppetlabs-host-core',
  'puppet-module-puppetlabs-mount-core',
  'puppet-module-puppetlabs-selinux-core',
  'puppet-module-puppetlabs-sshkeys-core',
  'augeas-tools',
  'lsb-release',
  // The primary's modulepath holds these too: a compile master serves the same code.
  ...PUPPET_MODULE_PACKAGES,
];

/** What a machine must not start by itself at boot: the Puppet class enables puppetserver later. */
export const DISABLED_UNITS = ['puppetserver.service', 'puppet.service'];
/** Timers that reach for the network (apt, man-db is harmless but slow on 2 cores). */
export const MASKED_UNITS = ['apt-daily.timer', 'apt-daily-upgrade.timer', 'man-db.timer', 'e2scrub_all.timer', 'fstrim.timer'];

/** Host tools the machines need: debootstrap for the build, systemd-nspawn to boot them. */
export const HOST_PACKAGES = ['debootstrap', 'systemd-container'];

const SUITE = 'bookworm';
/** Bumped when the build steps below change in a way the package list does not show. */
const RECIPE = 1;

export interface RootfsBuild {
  dir: string;
  seconds: number;
  bytes: number;
}

export interface RootfsOptions {
  /** Where root file systems are cached, e.g. /var/tmp/compile-masters-lab/machines. */
  cacheDir: string;
  progress?: (line: string) => void;
  packages?: readonly string[];
}

/**
 * The cached root file system for `packages`, built once with debootstrap. It is built into a
 * temporary directory and renamed when complete, so a crash never leaves a half-built tree that a
 * later run would take; a flock serialises builds of concurrent runs.
 */
export async function ensureRootfs(options: RootfsOptions): Promise<string> {
  const packages = options.packages ?? MACHINE_PACKAGES;
  const progress = options.progress ?? (() => undefined);
  const dir = rootfsDir(options.cacheDir, packages);
  // systemd-nspawn boots the machines even when the tree was cached by an earlier run.
  ensurePackages(progress, HOST_PACKAGES);
  if (existsSync(dir)) return dir;
  mkdirSync(options.cacheDir, { recursive: true });
  const lock = await holdLabLock(join(options.cacheDir, 'rootfs.lock'));
  try {
    if (existsSync(dir)) return dir;
    const build = buildRootfs(dir, packages, progress);
    writeFileSync(`${dir}.json`, `${JSON.stringify(build, null, 2)}\n`);
    progress(`root file system ${dir}: ${build.seconds.toFixed(0)} s, ${(build.bytes / 2 ** 20).toFixed(0)} MiB`);
    return dir;
  } finally {
    await lock.release();
  }
}

/** The build figures recorded beside a cached root file system, when it was built here. */
export function rootfsBuildInfo(dir: string): RootfsBuild | undefined {
  const file = `${dir}.json`;
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as RootfsBuild) : undefined;
}

export function rootfsDir(cacheDir: string, packages: readonly string[] = MACHINE_PACKAGES): string {
  const key = createHash('sha256')
    .update(JSON.stringify({ SUITE, RECIPE, packages: [...packages].sort(), DISABLED_UNITS, MASKED_UNITS }))
    .digest('hex')
    .slice(0, 12);
  return join(cacheDir, `rootfs-${key}`);
}

function buildRootfs(dir: string, packages: readonly string[], progress: (line: string) => void): RootfsBuild {
  const started = Date.now();
  const staging = `${dir}.tmp`;
  // Left by a build that crashed: we hold the lock, so nobody is still writing it.
  if (existsSync(staging)) removeTree(staging);
  const sources = hostDebianSources();
  progress(`debootstrap ${SUITE} from ${sources.mirror} into ${staging}`);
  const quiet = { stdio: ['ignore', 'ignore', 'pipe'] as ('ignore' | 'pipe')[] };
  run('debootstrap', ['--variant=minbase', '--include=systemd,systemd-sysv,dbus', SUITE, staging, sources.mirror], quiet);

  // The suite's updates and security archives too, as the host has them: Debian's puppet-agent
  // 7.23 comes from bookworm-security.
  rmSync(join(staging, 'etc/apt/sources.list'), { force: true });
  writeFileSync(join(staging, 'etc/apt/sources.list.d/debian.sources'), debianSources(sources));
  // Maintainer scripts must not start services (there is no running systemd to start them in).
  writeFileSync(join(staging, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  progress(`installing ${packages.length} packages`);
  inRootfs(staging, [
    'set -e',
    'apt-get update -q',
    `apt-get install -y -q --no-install-recommends ${packages.join(' ')}`,
    `systemctl disable ${DISABLED_UNITS.join(' ')}`,
    `systemctl mask ${MASKED_UNITS.join(' ')}`,
    'apt-get clean',
    // The machines reach no archive (nothing is routed off the lab): the lists are dead weight.
    'rm -rf /var/lib/apt/lists/*',
  ]);
  rmSync(join(staging, 'usr/sbin/policy-rc.d'));
  // Each machine gets its own identity when it is created; none may inherit the build's.
  writeFileSync(join(staging, 'etc/machine-id'), '');
  rmSync(join(staging, 'var/lib/dbus/machine-id'), { force: true });
  rmSync(join(staging, 'etc/hostname'), { force: true });
  // No resolver: machines resolve lab names through /etc/hosts only.
  rmSync(join(staging, 'etc/resolv.conf'), { force: true });
  writeFileSync(join(staging, 'etc/resolv.conf'), '# lab machine: names come from /etc/hosts\n');
  const bytes = Number(run('du', ['-sb', staging]).split('\t')[0]);
  renameSync(staging, dir);
  return { dir, seconds: (Date.now() - started) / 1000, bytes };
}

/** Runs a shell script inside the tree (not booted): systemd-nspawn provides /proc, /sys and /dev. */
function inRootfs(root: string, script: string[]): void {
  run('systemd-nspawn', ['--quiet', '--register=no', '--keep-unit', `--directory=${root}`, '--setenv=DEBIAN_FRONTEND=noninteractive', 'sh', '-c', script.join('\n')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    maxBuffer: 64 * 2 ** 20,
  });
}

interface DebianSources {
  mirror: string;
  security: string;
}

/** The archive the host's apt uses for the suite and its security updates. */
export function hostDebianSources(): DebianSources {
  const entries = readHostSources();
  const mirror = entries.find((entry) => entry.suites.includes(SUITE))?.uri;
  const security = entries.find((entry) => entry.suites.includes(`${SUITE}-security`))?.uri;
  if (!mirror) throw new Error(`no apt source for ${SUITE} in /etc/apt/sources.list(.d): the lab machines are Debian 12 and need its archive`);
  return { mirror, security: security ?? 'http://deb.debian.org/debian-security' };
}

interface SourceEntry {
  uri: string;
  suites: string[];
}

function readHostSources(): SourceEntry[] {
  const files = ['/etc/apt/sources.list'];
  if (existsSync('/etc/apt/sources.list.d')) files.push(...readdirSync('/etc/apt/sources.list.d').map((name) => join('/etc/apt/sources.list.d', name)));
  return files
    .filter((file) => existsSync(file))
    .flatMap((file) => (file.endsWith('.sources') ? parseDeb822(readFileSync(file, 'utf8')) : file.endsWith('.list') ? parseOneLine(readFileSync(file, 'utf8')) : []));
}

export function parseDeb822(text: string): SourceEntry[] {
  return text.split(/\n\s*\n/).flatMap((stanza) => {
    const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, 'mi').exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
    if (!field('Types').includes('deb') || /^Enabled:\s*no/im.test(stanza)) return [];
    const suites = field('Suites');
    return field('URIs').map((uri) => ({ uri, suites }));
  });
}

export function parseOneLine(text: string): SourceEntry[] {
  return text.split('\n').flatMap((line) => {
    const words = line.replace(/#.*/, '').replace(/\[[^\]]*\]/, '').trim().split(/\s+/);
    return words[0] === 'deb' && words[1] && words[2] ? [{ uri: words[1], suites: [words[2]] }] : [];
  });
}

function debianSources({ mirror, security }: DebianSources): string {
  const stanza = (uri: string, suites: string) =>
    [`Types: deb`, `URIs: ${uri}`, `Suites: ${suites}`, 'Components: main', 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg', ''].join('\n');
  return `${stanza(mirror, `${SUITE} ${SUITE}-updates`)}\n${stanza(security, `${SUITE}-security`)}`;
}
