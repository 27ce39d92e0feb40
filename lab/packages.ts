import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { run } from './processes';

const POLICY_RC_D = '/usr/sbin/policy-rc.d';

/**
 * The Puppet modules compile_masters_compiler needs (ini_setting, file_line, stdlib's types), as
 * Debian packages them into /usr/share/puppet/modules, which is on the primary's modulepath.
 * A compile master serves the primary's modulepath, so its machine needs them too.
 */
export const PUPPET_MODULE_PACKAGES = ['puppet-module-puppetlabs-stdlib', 'puppet-module-puppetlabs-inifile'];

/**
 * Debian's own builds: Puppet Server 7.9.5, PuppetDB 7.12.1 (+ the terminus that lets the primary
 * store facts, catalogs and reports in it, as a real primary does), Puppet agent 7.23, PostgreSQL 15,
 * and the Puppet modules the primary's code uses.
 */
export const LAB_PACKAGES = ['puppetserver', 'puppetdb', 'puppet-terminus-puppetdb', 'puppet-agent', 'postgresql', ...PUPPET_MODULE_PACKAGES];

export function missingPackages(packages = LAB_PACKAGES): string[] {
  return packages.filter((name) => {
    const query = spawnSync('dpkg-query', ['-W', '-f=${Status}', name], { encoding: 'utf8' });
    return query.status !== 0 || !query.stdout.includes('install ok installed');
  });
}

/** Installs what is missing of `packages` (the lab's by default) with apt-get. */
export function ensurePackages(log: (line: string) => void, packages = LAB_PACKAGES): void {
  const missing = missingPackages(packages);
  if (missing.length === 0) return;
  log(`installing ${missing.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const quiet = { env, stdio: ['ignore', 'ignore', 'pipe'] as ('ignore' | 'pipe')[] };
  // The puppetdb package would otherwise have dbconfig-common create a database in the system
  // cluster (or fail when it is down); the lab provisions its own database instead.
  run('debconf-set-selections', [], { ...quiet, input: 'puppetdb puppetdb/dbconfig-install boolean false\n', stdio: ['pipe', 'ignore', 'pipe'] });
  const extras = missing.includes('puppetdb') ? ['dbconfig-no-thanks'] : [];
  run('apt-get', ['update'], quiet);
  withoutServiceStarts(() => run('apt-get', ['install', '-y', ...missing, ...extras], quiet));
}

/**
 * Keeps the packages' maintainer scripts from starting the distro's own puppetdb/postgresql
 * services (sysvinit scripts still run without systemd) on the ports the lab needs. This is the
 * standard policy-rc.d convention; an existing policy is left as it is.
 */
function withoutServiceStarts(install: () => void): void {
  if (existsSync(POLICY_RC_D)) return install();
  writeFileSync(POLICY_RC_D, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    install();
  } finally {
    rmSync(POLICY_RC_D, { force: true });
  }
}
