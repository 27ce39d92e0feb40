import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadLab } from '../../lab/running-lab';

/**
 * The compile-master Puppet classes against a real `puppet` and the lab's real PuppetDB (the
 * lab's setup installs puppet and Debian's stdlib/inifile modules). The class is applied for
 * real into a scratch copy of Debian's Puppet Server files; only the service is left out
 * (`--skip_tags service`: this machine is no systemd host). Starting it on a systemd machine is
 * verified by hand (see the module's README).
 */
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PUPPET_DIR = join(REPO, 'puppet');
const MODULEPATH = `${PUPPET_DIR}:${join(REPO, 'lab', 'puppet')}:/usr/share/puppet/modules`;
const DEBIAN_SERVER = '/etc/puppet/puppetserver';

function puppet(args: string[]): { status: number | null; output: string } {
  const result = spawnSync(loadLab().puppetBin, args, { encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** A confdir/vardir of our own so that `puppet apply` touches nothing of the machine's. */
function scratchPuppet(dir: string, main = 'certname = cm1.lab.test\n'): string[] {
  const confdir = join(dir, 'confdir');
  mkdirSync(confdir, { recursive: true });
  writeFileSync(join(confdir, 'puppet.conf'), `[main]\n${main}`);
  return ['--confdir', confdir, '--vardir', join(dir, 'var'), '--logdir', join(dir, 'log'), '--rundir', join(dir, 'run'), '--codedir', join(dir, 'code'), '--modulepath', MODULEPATH];
}

describe('compile_masters_compiler', () => {
  let dir: string;
  let etc: string;
  let manifest: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cm-compiler-'));
    etc = join(dir, 'etc');
    // Debian's own files, as the puppetserver package leaves them.
    for (const sub of ['conf.d', 'services.d']) mkdirSync(join(etc, 'puppetserver', sub), { recursive: true });
    mkdirSync(join(etc, 'systemd'), { recursive: true });
    copyFileSync(join(DEBIAN_SERVER, 'conf.d', 'webserver.conf'), join(etc, 'puppetserver', 'conf.d', 'webserver.conf'));
    copyFileSync(join(DEBIAN_SERVER, 'services.d', 'ca.cfg'), join(etc, 'puppetserver', 'services.d', 'ca.cfg'));
    copyFileSync('/etc/default/puppetserver', join(etc, 'default-puppetserver'));
    writeFileSync(join(etc, 'puppet.conf'), '[main]\nserver = primary.lab.test\n');
    manifest = join(dir, 'compiler.pp');
    writeFileSync(
      manifest,
      `class { 'compile_masters_compiler':
  primary_server  => 'primary.lab.test',
  puppetdb_urls   => ['https://primary.lab.test:8081', 'https://puppetdb2.lab.test:8081'],
  heap            => '640m',
  soft_write_failure => true,
  systemd_dir     => '${etc}/systemd',
  c1_only_jit     => true,
  manage_packages => false,
  confdir         => '${etc}',
  ssldir          => '/var/lib/puppet/ssl',
  server_confdir  => '${etc}/puppetserver/conf.d',
  bootstrap_dir   => '${etc}/puppetserver/services.d',
  defaults_file   => '${etc}/default-puppetserver',
}
`,
    );
  });

  it('its manifests, templates and the lab profiles pass `puppet parser validate`', () => {
    const manifests = [
      join(PUPPET_DIR, 'compile_masters_compiler', 'manifests', 'init.pp'),
      join(PUPPET_DIR, 'compile_masters_compiler', 'examples', 'init.pp'),
      join(PUPPET_DIR, 'compile_masters_primary', 'manifests', 'init.pp'),
      join(REPO, 'lab', 'puppet', 'lab_compile_master', 'manifests', 'init.pp'),
      join(REPO, 'lab', 'puppet', 'lab_primary', 'manifests', 'init.pp'),
    ];
    expect(() => execFileSync(loadLab().puppetBin, ['parser', 'validate', ...manifests], { stdio: 'pipe' })).not.toThrow();
    const templates = join(PUPPET_DIR, 'compile_masters_compiler', 'templates');
    expect(() => execFileSync(loadLab().puppetBin, ['epp', 'validate', join(templates, 'ca.cfg.epp'), join(templates, 'webserver.conf.epp')], { stdio: 'pipe' })).not.toThrow();
  });

  it('turns Debian\'s Puppet Server files into a CA-less compile master\'s, and a second run changes nothing', () => {
    const args = ['apply', '--detailed-exitcodes', '--skip_tags', 'service', ...scratchPuppet(join(dir, 'run1')), manifest];
    const first = puppet(args);
    expect(first.status, first.output).toBe(2); // changes, no failures

    const caCfg = readFileSync(join(etc, 'puppetserver', 'services.d', 'ca.cfg'), 'utf8');
    expect(caCfg).toContain('puppetlabs.services.ca.certificate-authority-disabled-service/certificate-authority-disabled-service');
    expect(caCfg).not.toMatch(/^puppetlabs\.services\.ca\.certificate-authority-service\//m);
    expect(caCfg).toContain('filesystem-watch-service');

    const webserver = readFileSync(join(etc, 'puppetserver', 'conf.d', 'webserver.conf'), 'utf8');
    expect(webserver).toContain('ssl-cert: "/var/lib/puppet/ssl/certs/cm1.lab.test.pem"');
    expect(webserver).toContain('ssl-key: "/var/lib/puppet/ssl/private_keys/cm1.lab.test.pem"');
    expect(webserver).toContain('ssl-ca-cert: "/var/lib/puppet/ssl/certs/ca.pem"');
    expect(webserver).toContain('ssl-crl-path: "/var/lib/puppet/ssl/crl.pem"');
    expect(webserver).toContain('ssl-port: 8140');

    const puppetConf = readFileSync(join(etc, 'puppet.conf'), 'utf8');
    expect(puppetConf).toMatch(/\[main\][^[]*server = primary\.lab\.test/);
    expect(puppetConf).toMatch(/\[main\][^[]*ca_server = primary\.lab\.test/);
    expect(puppetConf).toMatch(/\[main\][^[]*ca_port = 8140/);
    expect(puppetConf).toMatch(/\[server\][^[]*storeconfigs = true/);
    expect(puppetConf).toMatch(/\[server\][^[]*storeconfigs_backend = puppetdb/);
    expect(puppetConf).toMatch(/\[server\][^[]*reports = puppetdb/);
    expect(readFileSync(join(etc, 'puppetdb.conf'), 'utf8')).toMatch(/\[main\]\s*\nserver_urls = https:\/\/primary\.lab\.test:8081,https:\/\/puppetdb2\.lab\.test:8081/);
    expect(readFileSync(join(etc, 'puppetdb.conf'), 'utf8')).toMatch(/\[main\][^[]*soft_write_failure = true/);
    expect(readFileSync(join(etc, 'systemd', 'puppetserver.service.d', 'compile-master.conf'), 'utf8')).toMatch(/\[Service\]\nRestart=on-failure\nRestartSec=5\nTimeoutStartSec=600\n/);
    expect(readFileSync(join(etc, 'routes.yaml'), 'utf8')).toBe('---\nserver:\n  facts:\n    terminus: puppetdb\n    cache: yaml\n');

    const defaults = readFileSync(join(etc, 'default-puppetserver'), 'utf8');
    const javaArgs = defaults.split('\n').filter((line) => line.startsWith('JAVA_ARGS='));
    expect(javaArgs).toEqual(['JAVA_ARGS="-Xms640m -Xmx640m -XX:TieredStopAtLevel=1 -Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger"']);
    expect(defaults).toContain('BOOTSTRAP_CONFIG='); // the rest of the file is left alone

    const second = puppet(args);
    expect(second.status, second.output).toBe(0);
  });
});

describe('compile_masters_primary allow_compile_masters', () => {
  it('writes the fixed clients and every active compile master PuppetDB knows into the allow-list', async () => {
    const lab = loadLab();
    const dir = mkdtempSync(join(tmpdir(), 'cm-allowlist-'));
    const allowlist = join(dir, 'certificate-allowlist');
    writeFileSync(allowlist, 'stale-compile-master.lab.test\nprimary.lab.test\n');
    // puppetdb_query runs where the catalog is compiled: here, with the primary's certificate.
    const args = scratchPuppet(dir, `certname = ${lab.primary.certname}\nssldir = ${lab.primary.ssldir}\n`);
    writeFileSync(join(dir, 'confdir', 'puppetdb.conf'), `[main]\nserver_urls = ${lab.puppetdb.url}\n`);
    const manifest = join(dir, 'primary.pp');
    writeFileSync(
      manifest,
      `class { 'compile_masters_primary':
  lifecycle_certname         => '${lab.lifecycleClient.certname}',
  manage_auth_rule           => false,
  manage_alt_names           => false,
  puppetdb_allowlist         => '${allowlist}',
  allow_compile_masters      => true,
  puppetdb_allowlist_entries => ['${lab.primary.certname}'],
}
`,
    );
    const query = 'inventory[certname] { trusted.extensions.pp_role = "compile_master" }';
    const response = await fetch(`${lab.puppetdb.plainUrl}/pdb/query/v4?query=${encodeURIComponent(query)}`);
    const compileMasters = ((await response.json()) as { certname: string }[]).map((node) => node.certname);

    const result = puppet(['apply', '--detailed-exitcodes', ...args, manifest]);
    expect(result.status, result.output).toBe(2);
    const expected = [...new Set([lab.primary.certname, lab.lifecycleClient.certname, ...compileMasters])].sort();
    expect(readFileSync(allowlist, 'utf8')).toBe(`${expected.join('\n')}\n`);
  });
});
