import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { installLabModules } from './lab-modules';
import { ENVIRONMENT, type LabLayout } from './layout';

/**
 * The primary's Puppet code (environment `production`). The primary gets `lab_primary`, compile
 * masters (pp_role compile_master) `lab_compile_master` (both from lab/lab-modules.ts); everything else — the load fleet's agents and real agent
 * runs through the load balancer — gets
 * `lab_fleet`, a small but real catalog: a directory, two files served by the file server (so
 * agents ask for file_metadata), one with inline content, and a notify.
 *
 * The lab's Puppet Server runs with environment_timeout = 0 (Puppet's default; nothing in the
 * lab's puppet.conf changes it), so rewriting these files reaches the next compilation without a
 * restart. Files are replaced by rename, so a compilation never reads a half-written file.
 */
export const LAB_MODULES: Record<string, Record<string, string>> = {
  lab_fleet: {
    'manifests/init.pp': `# What every non-compile-master node of the lab gets. Everything it manages lives under the
# agent's own vardir (the lab_fleet_vardir fact, synced from this module): the catalog is compiled
# on the server, where $settings::vardir is the server's. The primary's own agent runs get this
# class too, so nothing here may touch anything outside that directory.
class lab_fleet {
  notify { 'lab_fleet':
    message => "lab_fleet for \${trusted['certname']}",
  }

  $vardir = $facts['lab_fleet_vardir']
  if $vardir =~ String and $vardir =~ /^\\/./ {
    $dir = "\${vardir}/lab_fleet"
    file { $dir:
      ensure => directory,
      mode   => '0755',
    }
    file { "\${dir}/motd.txt":
      ensure => file,
      mode   => '0644',
      source => 'puppet:///modules/lab_fleet/motd.txt',
    }
    file { "\${dir}/fleet.conf":
      ensure => file,
      mode   => '0644',
      source => 'puppet:///modules/lab_fleet/fleet.conf',
    }
    file { "\${dir}/node.txt":
      ensure  => file,
      mode    => '0644',
      content => "certname=\${trusted['certname']}\\nenvironment=\${environment}\\n",
    }
  }
}
`,
    'files/motd.txt': 'This node is part of the compile-masters lab fleet.\n',
    'files/fleet.conf': '# Served by the lab primary through puppet:///modules/lab_fleet/fleet.conf\nmanaged_by = lab_fleet\n',
    // Synced to every agent by pluginsync: the agent's vardir as a fact (Puppet is loaded when the
    // agent resolves facts; `facter` alone has no vardir, so the fact is then absent).
    'lib/facter/lab_fleet_vardir.rb': `Facter.add(:lab_fleet_vardir) do
  setcode do
    Puppet.settings[:vardir] if defined?(Puppet) && Puppet.respond_to?(:settings)
  end
end
`,
  },
};

export const SITE_PP = `node 'primary.lab.test' {
  include lab_primary
}

node default {
  if $trusted['extensions']['pp_role'] == 'compile_master' {
    include lab_compile_master
  } else {
    include lab_fleet
  }
}
`;

function replaceFile(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, content, { mode: 0o644 });
  renameSync(temporary, path);
}

/** Writes site.pp and the lab's modules into the primary's code dir; safe on a running lab. */
export function writePuppetCode(paths: LabLayout): void {
  installLabModules(paths);
  const environment = join(paths.server.codedir, 'environments', ENVIRONMENT);
  replaceFile(join(environment, 'manifests', 'site.pp'), SITE_PP);
  for (const [module, files] of Object.entries(LAB_MODULES)) {
    for (const [file, content] of Object.entries(files)) replaceFile(join(environment, 'modules', module, file), content);
  }
  // A module the lab no longer writes here would shadow one of the same name on the basemodulepath.
  const modules = join(environment, 'modules');
  for (const name of readdirSync(modules)) if (!(name in LAB_MODULES)) rmSync(join(modules, name), { recursive: true, force: true });
}
