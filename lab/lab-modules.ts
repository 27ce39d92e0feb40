import { cpSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LabLayout } from './layout';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The project's own Puppet modules the lab's primary serves from its code dir's `modules/`
 * (on its basemodulepath, beside Debian's packaged modules in /usr/share/puppet/modules): the
 * compile-master class with the lab's profile that declares it for each lab machine classified
 * `pp_role = compile_master`, and the primary class with the lab primary's profile, which
 * allows the compile masters in PuppetDB. Copied afresh on every `up` (cold or not) and by the integration setup, so the primary compiles
 * what the repository holds.
 */
const LAB_MODULES: Record<string, string> = {
  compile_masters_compiler: join(REPO_ROOT, 'puppet', 'compile_masters_compiler'),
  lab_compile_master: join(REPO_ROOT, 'lab', 'puppet', 'lab_compile_master'),
  lab_primary: join(REPO_ROOT, 'lab', 'puppet', 'lab_primary'),
  compile_masters_primary: join(REPO_ROOT, 'puppet', 'compile_masters_primary'),
};

export function installLabModules(paths: LabLayout): void {
  const modules = join(paths.server.codedir, 'modules');
  mkdirSync(modules, { recursive: true });
  for (const [name, source] of Object.entries(LAB_MODULES)) {
    // Beside it first, then swapped in: a compilation on the running lab never sees half a module.
    const target = join(modules, name);
    const staging = `${target}.${process.pid}.new`;
    const old = `${target}.${process.pid}.old`;
    rmSync(staging, { recursive: true, force: true });
    cpSync(source, staging, { recursive: true });
    if (existsSync(target)) renameSync(target, old);
    renameSync(staging, target);
    rmSync(old, { recursive: true, force: true });
  }
}
