import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { lockedRuntime, type NodeRuntime, nodeRuntime, runtimeManifest } from '../../../cdk/node-runtime';
import { hostNodeArchitecture } from '../../../lab/machines/share';
import { IN_FLIGHT_WAIT_MAX_SECONDS, drainSeconds } from '../../../lib/readiness-check';
import { NODE_RUNTIME_BINARY_PATH, NODE_RUNTIME_MANIFEST_PATH, PACKAGE_SIGNING_KEY_PATH } from '../../../lambdas/efs-seeder/content';
import { DEFAULT_BOOT_MARKER_PATH, parseConfig } from '../../../node-agent/src/config';

const UNIT = 'node-agent/systemd/compile-master-agent.service';
const CRL_UNIT = 'node-agent/systemd/compile-master-crl-refresh.service';
const READINESS_UNIT = 'node-agent/systemd/compile-master-readiness.service';
const UNITS = ['compile-master-agent.service', 'compile-master-crl-refresh.service', 'compile-master-readiness.service'];
const BOOTSTRAP = 'node-agent/bootstrap.sh';

/** Installs a Debian package when its program is missing, so a fresh machine runs these tests too. */
function ensureProgram(program: string, debianPackage: string): void {
  if (spawnSync('sh', ['-c', `command -v ${program}`]).status === 0) return;
  const install = () => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', debianPackage], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }).status;
  if (install() !== 0) {
    spawnSync('apt-get', ['update'], { stdio: 'inherit' });
    if (install() !== 0) throw new Error(`cannot install ${debianPackage} (needed for ${program})`);
  }
}

function run(program: string, args: string[]) {
  const result = spawnSync(program, args, { encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}`.trim() };
}

describe('systemd units', () => {
  let root: string;
  beforeAll(async () => {
    ensureProgram('systemd-analyze', 'systemd');
    // A root holding the host's own units plus ours, with a stand-in for the Node.js runtime the
    // bootstrap installs: verify checks that ExecStart/ExecStop are executable.
    root = await mkdtemp(join(tmpdir(), 'agent-unit-'));
    await mkdir(join(root, 'usr/lib/systemd'), { recursive: true });
    await cp('/usr/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
    await mkdir(join(root, 'etc/systemd/system'), { recursive: true });
    for (const unit of UNITS) await cp(join('node-agent/systemd', unit), join(root, 'etc/systemd/system', unit));
    await mkdir(join(root, 'usr/local/lib/compile-master-agent/node/bin'), { recursive: true });
    await writeFile(join(root, 'usr/local/lib/compile-master-agent/node/bin/node'), '#!/bin/sh\n');
    await chmod(join(root, 'usr/local/lib/compile-master-agent/node/bin/node'), 0o755);
  }, 300_000);

  it.each(UNITS)('%s passes systemd-analyze verify without a single warning', (unit) => {
    const result = run('systemd-analyze', ['verify', `--root=${root}`, unit]);
    expect(result.output).toBe('');
    expect(result.status).toBe(0);
  });

  it('catches a broken unit (the check is real)', async () => {
    const broken = (await readFile(UNIT, 'utf8')).replace('Restart=on-failure', 'Restart=sometimes');
    await writeFile(join(root, 'etc/systemd/system/broken-agent.service'), broken);
    expect(run('systemd-analyze', ['verify', `--root=${root}`, 'broken-agent.service']).output).toMatch(/Failed to parse service restart specifier/);
  });

  it.each(UNITS)('%s is hardened: systemd rates its exposure below 3 (of 10)', (unit) => {
    const result = run('systemd-analyze', ['security', '--offline=true', `--root=${root}`, '--threshold=30', unit]);
    expect(result.output).toMatch(new RegExp(`Overall exposure level for ${unit}: [0-2]\\.\\d`));
    expect(result.status).toBe(0);
  });

  it('is a oneshot that stays active, runs boot at start and shutdown at stop, after the network', async () => {
    const unit = await readFile(UNIT, 'utf8');
    expect(unit).toMatch(/^Type=oneshot$/m);
    expect(unit).toMatch(/^RemainAfterExit=yes$/m);
    expect(unit).toMatch(/^ExecStart=\S+ \S+node-agent\.mjs boot --config \/etc\/compile-master-agent\/agent\.json$/m);
    expect(unit).toMatch(/^ExecStop=\S+ \S+node-agent\.mjs shutdown --config \/etc\/compile-master-agent\/agent\.json$/m);
    expect(unit).toMatch(/^Wants=network-online\.target$/m);
    expect(unit).toMatch(/^After=network-online\.target/m);
    expect(unit).toMatch(/^ProtectSystem=strict$/m);
  });

  it('runs the CRL refresher for good after the boot step, writing only to the ssldir, restarted whatever ends it', async () => {
    const unit = await readFile(CRL_UNIT, 'utf8');
    expect(unit).toMatch(/^ExecStart=\S+ \S+node-agent\.mjs crl-refresh --config \/etc\/compile-master-agent\/agent\.json$/m);
    expect(unit).toMatch(/^After=.*\bcompile-master-agent\.service\b/m);
    expect(unit).toMatch(/^Restart=always$/m);
    expect(unit).toMatch(/^RestartPreventExitStatus=65 78$/m);
    expect(unit).toMatch(/^ProtectSystem=strict$/m);
    expect(unit.match(/^(ReadWritePaths|StateDirectory|LogsDirectory|CacheDirectory|RuntimeDirectory)=.*$/gm)).toEqual(['ReadWritePaths=-/etc/puppetlabs/puppet/ssl -/var/lib/puppet/ssl']);
    expect(unit).toMatch(/^CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE$/m);
  });

  it('gives the boot step a runtime directory for the marker the readiness daemon reads, removed whenever it stops', async () => {
    const unit = await readFile(UNIT, 'utf8');
    expect(`/run/${/^RuntimeDirectory=(\S+)$/m.exec(unit)?.[1]}`).toBe(dirname(DEFAULT_BOOT_MARKER_PATH));
    expect(unit).toMatch(/^RuntimeDirectoryMode=0755$/m);
    expect(unit).not.toMatch(/^RuntimeDirectoryPreserve=/m);
  });

  it('stops the readiness daemon before Puppet Server, and gives its drain the time it needs', async () => {
    const unit = await readFile(READINESS_UNIT, 'utf8');
    expect(unit).toMatch(/^ExecStart=\S+ \S+node-agent\.mjs health --config \/etc\/compile-master-agent\/agent\.json$/m);
    // Stop order is the reverse of start order: After= these means stopped before them.
    const after = /^After=(.*)$/m.exec(unit)?.[1]?.split(/\s+/) ?? [];
    expect(after).toEqual(expect.arrayContaining(['pe-puppetserver.service', 'puppetserver.service', 'network-online.target']));
    // Not after the boot step: it answers "not ready" while the boot step runs (or fails).
    expect(after).not.toContain('compile-master-agent.service');
    // The drain, the wait for connected agents, the instance-metadata look-up (two tries, token and answer) and slack.
    const stopSeconds = Number(/^TimeoutStopSec=(\d+)s$/m.exec(unit)?.[1]);
    const imdsSeconds = (4 * parseConfig({ primaryServer: 'p.example.com', queueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/q', region: 'eu-west-1' }, 'x').timeouts.imdsMs) / 1000;
    expect(stopSeconds).toBeGreaterThanOrEqual(drainSeconds() + IN_FLIGHT_WAIT_MAX_SECONDS + imdsSeconds + 5);
    // EC2 forces a reboot that has not shut down within four minutes: Puppet Server and PuppetDB
    // stop only after this unit, and need a minute of their own.
    expect(stopSeconds + 60).toBeLessThanOrEqual(240);
    expect(unit).toMatch(/^Restart=always$/m);
    expect(unit).toMatch(/^DynamicUser=yes$/m);
    expect(unit).toMatch(/^CapabilityBoundingSet=$/m);
    expect(unit.match(/^(ReadWritePaths|StateDirectory|LogsDirectory|CacheDirectory|RuntimeDirectory)=.*$/gm)).toBeNull();
  });
});

/** Sources the script (which then runs nothing by itself) and runs `body` with a PATH of stubs first. */
function sourced(body: string, stubs: Record<string, string> = {}, env: Record<string, string> = {}) {
  const bin = mkdtempSync(join(tmpdir(), 'bootstrap-stubs-'));
  for (const [name, script] of Object.entries(stubs)) {
    writeFileSync(join(bin, name), `#!/bin/sh\n${script}\n`);
    chmodSync(join(bin, name), 0o755);
  }
  const result = spawnSync('bash', ['-c', `source ${BOOTSTRAP}\n${body}`], {
    encoding: 'utf8',
    env: { ...process.env, ...env, PATH: `${bin}:/usr/bin:/bin` },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** bootstrap.sh's `readonly NAME=value` constants, each expanded with the ones before it. */
function bootstrapConstants(script: string): Record<string, string> {
  const constants: Record<string, string> = {};
  for (const [, name, value] of script.matchAll(/^readonly (\w+)=(\S+)$/gm)) {
    constants[name!] = value!.replace(/\$(\w+)/g, (_, other: string) => constants[other] ?? `$${other}`);
  }
  return constants;
}

describe('bootstrap.sh', () => {
  beforeAll(() => ensureProgram('shellcheck', 'shellcheck'), 300_000);

  it('parses (bash -n) and is shellcheck-clean', () => {
    expect(run('bash', ['-n', BOOTSTRAP])).toEqual({ status: 0, output: '' });
    expect(run('shellcheck', ['--severity=style', BOOTSTRAP])).toEqual({ status: 0, output: '' });
  });

  it('never skips TLS verification and installs the runtime and the agent where the units run them', async () => {
    const script = await readFile(BOOTSTRAP, 'utf8');
    expect(script).not.toMatch(/curl[^\n]*(\s-k\b|--insecure)/);
    expect(script).toMatch(/--cacert "\$ETC_DIR\/ca\.pem"/);
    const constants = bootstrapConstants(script);
    const runtimeFrom = /^\s*install_node_runtime "\$SHARE\/([^"]+)" "\$RUNTIME_DIR"$/m.exec(script)?.[1];
    expect([`${runtimeFrom}/node`, `${runtimeFrom}/manifest`]).toEqual([NODE_RUNTIME_BINARY_PATH, NODE_RUNTIME_MANIFEST_PATH]);
    expect(script).toMatch(/^\s*install .*"\$SHARE\/node-agent\/node-agent\.mjs" "\$LIB_DIR\/node-agent\.mjs"$/m);
    for (const unit of UNITS) {
      const execs = [...(await readFile(join('node-agent/systemd', unit), 'utf8')).matchAll(/^Exec(?:Start|Stop)=(\S+) (\S+) /gm)];
      expect(execs.length).toBeGreaterThan(0);
      for (const [, node, agent] of execs) expect([node, agent]).toEqual([constants.NODE, `${constants.LIB_DIR}/node-agent.mjs`]);
    }
    expect(constants.NODE).toBe('/usr/local/lib/compile-master-agent/node/bin/node');
    // Nothing from the distribution: no search for a Node.js on the machine, no package of it.
    expect(script).not.toMatch(/command -v node|nodejs|dnf install -y node/);
  });

  it('requires every unit on the share, installs it where systemd reads it, and enables it', async () => {
    const script = await readFile(BOOTSTRAP, 'utf8');
    const constants = bootstrapConstants(script);
    const expand = (text: string) => text.replace(/\$(\w+)/g, (_, name: string) => constants[name] ?? `$${name}`);
    const required = expand(/for file in ([^;]+); do/.exec(script)?.[1] ?? '').split(' ');
    for (const path of [NODE_RUNTIME_BINARY_PATH, NODE_RUNTIME_MANIFEST_PATH]) expect(required).toContain(path);
    const installed = [...script.matchAll(/^\s*install .*"\$SHARE\/node-agent\/\$(\w+)" "\/etc\/systemd\/system\/\$(\w+)"$/gm)].map((match) => expand(`$${match[2]}`));
    const enabled = [...script.matchAll(/^\s*systemctl (?:--no-block )?enable (?:--now )?"\$(\w+)"$/gm)].map((match) => expand(`$${match[1]}`));
    for (const unit of UNITS) {
      expect(required).toContain(`node-agent/${unit}`);
      expect(installed).toContain(unit);
      expect(enabled).toContain(unit);
    }
    // A rerun after a deploy must swap the running refresher onto the new bundle.
    expect(script).toMatch(/^\s*systemctl --no-block restart "\$CRL_UNIT_NAME"$/m);
    // ...but never restart the readiness daemon: that would drain a node in service.
    expect(script).not.toMatch(/systemctl .*restart "\$READINESS_UNIT_NAME"/);
  });

  it('refuses to run without the EFS share, naming the missing file', async () => {
    const share = await mkdtemp(join(tmpdir(), 'agent-share-'));
    const result = spawnSync('bash', [BOOTSTRAP], { encoding: 'utf8', env: { ...process.env, COMPILE_MASTERS_SHARE: share } });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`${share}/config/agent.json is missing or empty: is the EFS share mounted at ${share}?`);
    expect(execFileSync('ls', ['-A', share], { encoding: 'utf8' })).toBe('');
  });
});

describe('bootstrap.sh: where puppet-agent comes from', () => {
  /** agent.json's agentInstall as config_value answers it. */
  const agentInstall = (values: Record<string, string>) =>
    `config_value() { case "$1" in ${Object.entries(values).map(([key, value]) => `agentInstall.${key}) echo '${value}';;`).join(' ')} esac; }`;
  const KEY = '-----BEGIN PGP PUBLIC KEY BLOCK-----\nmQINBGexample\n-----END PGP PUBLIC KEY BLOCK-----\n';
  const BASE_URL = 'https://yum.voxpupuli.org/openvox8/amazon/2023/$basearch';

  it('does nothing when sourced', () => {
    expect(sourced('echo sourced')).toEqual({ status: 0, stdout: 'sourced\n', stderr: '' });
  });

  it('with the key present and dnf on the machine, installs with dnf into /etc/yum.repos.d', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bootstrap-dnf-'));
    writeFileSync(join(dir, 'key.asc'), KEY);
    const result = sourced(
      [
        agentInstall({ packageManager: 'dnf', rpmBaseUrl: BASE_URL }),
        'install_with_dnf() { echo "install_with_dnf $*"; }',
        `install_from_repository openvox-agent ${dir}/key.asc`,
      ].join('\n'),
      { dnf: 'exit 0' },
    );
    expect(result).toEqual({ status: 0, stdout: `install_with_dnf openvox-agent ${BASE_URL} ${dir}/key.asc /etc/yum.repos.d\n`, stderr: '' });
  });

  it('writes a dnf repository with gpgcheck on and the stack\'s key as its only key, then installs the package', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bootstrap-dnf-'));
    const calls = join(dir, 'dnf-calls');
    const result = sourced(`install_with_dnf openvox-agent '${BASE_URL}' /etc/compile-master-agent/package-signing-key.asc ${dir}`, {
      dnf: `echo "$*" >> ${calls}`,
    });
    expect(result.status).toBe(0);
    expect(readFileSync(join(dir, 'compile-masters-openvox-agent.repo'), 'utf8')).toBe(
      [
        '[compile-masters-openvox-agent]',
        'name=openvox-agent for compile masters (signing key pinned by the stack)',
        `baseurl=${BASE_URL}`,
        'enabled=1',
        'gpgcheck=1',
        'gpgkey=file:///etc/compile-master-agent/package-signing-key.asc',
        '',
      ].join('\n'),
    );
    expect(readFileSync(calls, 'utf8')).toBe('install -y openvox-agent\n');
  });

  it('refuses to install from a repository without the pinned key, before touching anything', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bootstrap-nokey-'));
    const calls = join(dir, 'dnf-calls');
    const result = sourced(`install_from_repository openvox-agent ${dir}/missing.asc`, { dnf: `echo "$*" >> ${calls}` });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`no package-signing key at ${dir}/missing.asc: set agentRepositoryKeyFile`);
    expect(existsSync(calls)).toBe(false);
  });

  it.each(['dnf', 'apt'])('refuses when agent.json says %s and the image has none', (manager) => {
    const dir = mkdtempSync(join(tmpdir(), 'bootstrap-nodnf-'));
    writeFileSync(join(dir, 'key.asc'), KEY);
    const result = sourced(`${agentInstall({ packageManager: manager })}\nPATH=/nonexistent; install_from_repository openvox-agent ${dir}/key.asc`);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`no ${manager} here, yet agent.json says the platform uses it: is the stack's platform setting this image's?`);
  });

  it('with apt on the machine, installs with apt into /etc/apt, with the source and suite agent.json names', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bootstrap-apt-'));
    writeFileSync(join(dir, 'key.asc'), KEY);
    const result = sourced(
      [
        agentInstall({ packageManager: 'apt', aptUri: 'https://apt.voxpupuli.org', aptSuite: 'ubuntu24.04', aptComponent: 'openvox8' }),
        'install_with_apt() { echo "install_with_apt $*"; }',
        `install_from_repository openvox-agent ${dir}/key.asc`,
      ].join('\n'),
      { 'apt-get': 'exit 0' },
    );
    expect(result).toEqual({ status: 0, stdout: `install_with_apt openvox-agent https://apt.voxpupuli.org ubuntu24.04 openvox8 ${dir}/key.asc /etc/apt\n`, stderr: '' });
  });

  it('writes an apt source that trusts only the stack\'s key (signed-by), installs with no service started, and removes its policy after', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bootstrap-apt-'));
    writeFileSync(join(dir, 'key.asc'), KEY);
    const calls = join(dir, 'apt-calls');
    const policy = join(dir, 'policy-rc.d');
    const result = sourced(
      `install_with_apt openvox-agent https://apt.voxpupuli.org ubuntu24.04 openvox8 ${dir}/key.asc ${dir}/apt`,
      // The policy must be in force while the package installs: the stub records what it answers.
      { 'apt-get': `echo "$* policy:$(${policy} >/dev/null 2>&1; echo $?) frontend:$DEBIAN_FRONTEND" >> ${calls}` },
      { COMPILE_MASTERS_POLICY_RC_D: policy },
    );
    expect(result.status).toBe(0);
    const keyring = `${dir}/apt/keyrings/compile-masters-openvox-agent.asc`;
    expect(readFileSync(join(dir, 'apt/sources.list.d/compile-masters-openvox-agent.list'), 'utf8')).toBe(
      `deb [signed-by=${keyring}] https://apt.voxpupuli.org ubuntu24.04 openvox8\n`,
    );
    expect(readFileSync(keyring, 'utf8')).toBe(KEY);
    // Both wait for dpkg's lock, which cloud-init and unattended-upgrades hold at first boot.
    expect(readFileSync(calls, 'utf8')).toMatch(/^-o DPkg::Lock::Timeout=600 update policy:\d+ .*\n-o DPkg::Lock::Timeout=600 install -y openvox-agent policy:101 frontend:noninteractive\n$/);
    expect(existsSync(policy)).toBe(false);
  });

  it('keeps a policy-rc.d the image already has, and stops when the install fails', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bootstrap-apt-'));
    writeFileSync(join(dir, 'key.asc'), KEY);
    const policy = join(dir, 'policy-rc.d');
    writeFileSync(policy, '#!/bin/sh\nexit 0\n');
    const result = sourced(
      `install_with_apt openvox-agent https://apt.voxpupuli.org ubuntu24.04 openvox8 ${dir}/key.asc ${dir}/apt`,
      { 'apt-get': '[ "$3" = update ] || exit 100' },
      { COMPILE_MASTERS_POLICY_RC_D: policy },
    );
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('apt-get install openvox-agent failed (100)');
    expect(readFileSync(policy, 'utf8')).toBe('#!/bin/sh\nexit 0\n');
  });

  it.each([
    ['primary', 'install_from_primary'],
    ['repository', 'install_from_repository openvox-agent /etc/compile-master-agent/package-signing-key.asc'],
  ])('takes the %s path from agent.json, with the key the bootstrap copied from the share', (source, expected) => {
    const result = sourced(
      [
        agentInstall({ source, package: 'openvox-agent' }),
        'install_from_primary() { echo install_from_primary; }',
        'install_from_repository() { echo "install_from_repository $*"; }',
        'install_puppet_agent',
      ].join('\n'),
    );
    expect(result).toEqual({ status: 0, stdout: `${expected}\n`, stderr: '' });
  });

  it('with agentSource ami installs nothing and says the image lacks the agent', () => {
    const result = sourced(
      [
        'config_value() { case "$1" in agentInstall.source) echo ami;; puppetBin) echo /opt/puppetlabs/bin/puppet;; esac; }',
        'install_from_primary() { echo should-not-run; }',
        'install_puppet_agent',
      ].join('\n'),
    );
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('/opt/puppetlabs/bin/puppet is missing and agentSource is ami: bake the agent package into the image');
  });

  it('copies the pinned key from the share to the path the repository path reads', async () => {
    const script = await readFile(BOOTSTRAP, 'utf8');
    expect(script).toMatch(/install -m 0644 -o root -g root "\$SHARE\/config\/\$SIGNING_KEY_NAME" "\$ETC_DIR\/\$SIGNING_KEY_NAME"/);
    expect(script).toMatch(/repository\) install_from_repository .* "\$ETC_DIR\/\$SIGNING_KEY_NAME"/);
    expect(`config/${/^readonly SIGNING_KEY_NAME=(\S+)$/m.exec(script)?.[1]}`).toBe(PACKAGE_SIGNING_KEY_PATH);
  });
});

describe('bootstrap.sh: the shipped Node.js runtime', () => {
  const machine = hostNodeArchitecture();
  const other = machine === 'arm64' ? 'x86_64' : 'arm64';
  const locked = lockedRuntime(machine);

  /** A share's node-runtime directory: a stand-in `node` and the manifest the stack writes for it. */
  function runtimeShare(script: string, manifest: Partial<Pick<NodeRuntime, 'version' | 'architecture' | 'sha256'>> = {}): { from: string; to: string } {
    const dir = mkdtempSync(join(tmpdir(), 'bootstrap-runtime-'));
    const from = join(dir, 'share', dirname(NODE_RUNTIME_BINARY_PATH));
    mkdirSync(from, { recursive: true });
    writeFileSync(join(dir, 'share', NODE_RUNTIME_BINARY_PATH), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    const sha256 = createHash('sha256').update(readFileSync(join(dir, 'share', NODE_RUNTIME_BINARY_PATH))).digest('hex');
    writeFileSync(join(dir, 'share', NODE_RUNTIME_MANIFEST_PATH), runtimeManifest({ ...locked, binary: 'unused', sha256, ...manifest }));
    return { from, to: join(dir, 'lib', 'node') };
  }
  const leftovers = (to: string) => (existsSync(join(to, 'bin')) ? readdirSync(join(to, 'bin')).filter((name) => name !== 'node') : []);

  it('installs the runtime the manifest names, executable by every unit\'s user', () => {
    const { from, to } = runtimeShare(`echo v${locked.version}`);
    const result = sourced(`install_node_runtime ${from} ${to}`);
    expect(result).toMatchObject({ status: 0, stdout: '' });
    expect(result.stderr).toContain(`Node.js v${locked.version} (${machine}) installed at ${to}/bin/node`);
    expect(readFileSync(join(to, 'bin/node'))).toEqual(readFileSync(join(from, 'node')));
    expect(statSync(join(to, 'bin/node')).mode & 0o777).toBe(0o755);
    expect(leftovers(to)).toEqual([]);
  });

  it('replaces the link to the distribution\'s node that bootstraps before the shipped runtime left', () => {
    const { from, to } = runtimeShare(`echo v${locked.version}`);
    mkdirSync(dirname(to), { recursive: true });
    symlinkSync('/usr/bin/true', to);
    const result = sourced(`install_node_runtime ${from} ${to}`);
    expect(result.status).toBe(0);
    expect(lstatSync(to).isDirectory()).toBe(true);
    expect(readFileSync(join(to, 'bin/node'))).toEqual(readFileSync(join(from, 'node')));
  });

  it('refuses a runtime whose version is not the manifest\'s, and keeps the one installed', () => {
    const { from, to } = runtimeShare('echo v20.19.0');
    mkdirSync(join(to, 'bin'), { recursive: true });
    writeFileSync(join(to, 'bin/node'), 'the runtime installed before');
    const result = sourced(`install_node_runtime ${from} ${to}`);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`the shipped Node.js reports 'v20.19.0', its manifest says v${locked.version}: refusing it`);
    expect(readFileSync(join(to, 'bin/node'), 'utf8')).toBe('the runtime installed before');
    expect(leftovers(to)).toEqual([]);
  });

  it('refuses bytes other than the manifest\'s (a share half rewritten) before running them', () => {
    const marker = join(mkdtempSync(join(tmpdir(), 'bootstrap-ran-')), 'ran');
    const { from, to } = runtimeShare(`touch ${marker}; echo v${locked.version}`, { sha256: '0'.repeat(64) });
    const result = sourced(`install_node_runtime ${from} ${to}`);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`${from}/node is not the runtime the manifest names`);
    expect(existsSync(marker)).toBe(false);
    expect(existsSync(join(to, 'bin/node'))).toBe(false);
    expect(leftovers(to)).toEqual([]);
  });

  it('refuses a runtime built for another architecture than this machine\'s', () => {
    const { from, to } = runtimeShare(`echo v${locked.version}`, { architecture: other });
    const result = sourced(`install_node_runtime ${from} ${to}`);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`the stack ships Node.js for ${other}, this instance is`);
    expect(existsSync(join(to, 'bin'))).toBe(false);
  });

  it('installs the real runtime the lock file pins for this machine, which runs', () => {
    const runtime = nodeRuntime(machine);
    const dir = mkdtempSync(join(tmpdir(), 'bootstrap-real-runtime-'));
    mkdirSync(join(dir, 'node-runtime'));
    copyFileSync(runtime.binary, join(dir, NODE_RUNTIME_BINARY_PATH));
    writeFileSync(join(dir, NODE_RUNTIME_MANIFEST_PATH), runtimeManifest(runtime));
    try {
      expect(sourced(`install_node_runtime ${dir}/node-runtime ${dir}/lib/node`).status).toBe(0);
      expect(run(join(dir, 'lib/node/bin/node'), ['-p', 'process.versions.node'])).toEqual({ status: 0, output: runtime.version });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
