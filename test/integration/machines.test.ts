import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockedRuntime } from '../../cdk/node-runtime';
import { labDir } from '../../lab/description';
import { MachineImds } from '../../lab/machines/imds';
import { Machine } from '../../lab/machines/machine';
import { mountsBelow } from '../../lab/machines/mounts';
import { LabNetwork } from '../../lab/machines/network';
import { ensureRootfs, rootfsBuildInfo } from '../../lab/machines/rootfs';
import { DEBIAN_PUPPET, hostNodeArchitecture, SHARE_MOUNT, USER_DATA, writeShare } from '../../lab/machines/share';
import { fakePuppet, type FakePuppet } from '../support/fake-puppet';
import { makeTestCa } from '../support/pki';

// One real machine: Debian 12 under systemd-nspawn with systemd as PID 1, on its own network
// namespace, bootstrapped from a share filled by the EFS content writer's own code. Its Puppet CA
// is a fake on the lab bridge (the machine keeps a certificate it already holds, so the node
// agent's boot step finishes and its unit becomes active): no lab server is touched.

const REGION = 'us-west-2';
const INSTANCE_ID = 'i-0a1b2c3d4e5f60718';
const ROLE = 'compile-master-lab';
const QUEUE_URL = `https://sqs.${REGION}.amazonaws.com/123456789012/compile-masters-lifecycle`;
const NLB = 'compile-masters-nlb-0123456789.elb.us-west-2.amazonaws.com';

const timings: Record<string, number> = {};
let runDir: string;
let network: LabNetwork;
let imds: MachineImds;
let ca: FakePuppet;
let machine: Machine;
let certname: string;
let ip: string;
let crl: string;

async function seconds<T>(name: string, work: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await work();
  } finally {
    timings[name] = (Date.now() - started) / 1000;
  }
}

async function inside(argv: string[]): Promise<string> {
  const result = await machine.exec(argv);
  if (result.code !== 0) throw new Error(`${argv.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout.trim();
}

/** Polls `read` until it matches, for processes inside the machine that take their time. */
async function eventually(read: () => Promise<string>, pattern: RegExp, timeoutMs = 90_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    last = await read();
    if (pattern.test(last)) return last;
    await sleep(1_000);
  }
  throw new Error(`no ${pattern} within ${timeoutMs} ms in:\n${last}`);
}

/** A TCP connection to `host:port`, retried while nothing listens there yet (up to 30 s). */
async function connectWhenListening(host: string, port: number): Promise<Socket> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const socket = connect({ host, port });
    try {
      await once(socket, 'connect');
      return socket;
    } catch (error) {
      socket.destroy();
      if (Date.now() > deadline) throw error;
      await sleep(500);
    }
  }
}

beforeAll(async () => {
  const cacheDir = join(labDir(), 'machines');
  const rootfs = await seconds('rootfs (build or reuse)', () => ensureRootfs({ cacheDir, progress: (line) => console.log(line) }));
  const built = rootfsBuildInfo(rootfs);
  if (built) console.log(`root file system built in ${built.seconds.toFixed(0)} s, ${(built.bytes / 2 ** 20).toFixed(0)} MiB`);
  runDir = mkdtempSync(join(cacheDir, 'test-'));

  const net = `10.${randomInt(100, 250)}.${randomInt(0, 255)}`;
  network = LabNetwork.create(`${net}.0/24`);
  ip = `${net}.11`;
  certname = `ip-${ip.replaceAll('.', '-')}.${REGION}.compute.internal`;
  const host = network.addHost('cm1', ip);

  imds = await MachineImds.start({
    roleName: ROLE,
    credentials: (instanceId) => ({
      accessKeyId: 'ASIALABMACHINE000001',
      secretAccessKey: `lab-secret-for-${instanceId}`,
      sessionToken: `lab-token-for-${instanceId}`,
      expiration: new Date(Date.now() + 3_600_000),
    }),
  });
  imds.register({ instanceId: INSTANCE_ID, region: REGION, localHostname: certname, localIpv4: ip });

  // The primary's CA, faked on the bridge: it serves the machine's certificate and an empty CRL.
  const testCa = await makeTestCa('Lab machines test CA');
  const server = await testCa.issue({ commonName: 'primary.lab.test', dnsNames: ['primary.lab.test'] });
  const own = await testCa.issue({ commonName: certname, dnsNames: [certname, NLB] });
  crl = await testCa.crl([], { number: 1 });
  ca = await fakePuppet(server, ({ method, path }) => {
    if (method !== 'GET') return undefined;
    if (path === `/puppet-ca/v1/certificate/${certname}`) return { status: 200, body: own.cert };
    if (path === '/puppet-ca/v1/certificate_revocation_list/ca') return { status: 200, body: crl };
    return undefined;
  });
  const caPort = Number(new URL(ca.url).port);

  const share = join(runDir, 'share');
  mkdirSync(share);
  await writeShare(share, {
    caCertificate: testCa.cert,
    agentConfig: {
      ...DEBIAN_PUPPET,
      primaryServer: 'primary.lab.test',
      caPort,
      queueUrl: QUEUE_URL,
      region: REGION,
      extensions: { pp_role: 'compile_master' },
      dnsAltNames: [NLB],
    },
  });

  machine = Machine.create({
    hostname: certname,
    rootfs,
    stateDir: join(runDir, 'cm1'),
    network: host,
    hosts: { 'primary.lab.test': network.gateway, [`sqs.${REGION}.amazonaws.com`]: network.gateway },
    binds: [{ source: share, target: SHARE_MOUNT }],
    userData: USER_DATA,
    // Enrolled before: the boot step finds its certificate at the CA and keeps it.
    files: [
      { path: `${DEBIAN_PUPPET.ssldir}/certs/${certname}.pem`, content: own.cert },
      { path: `${DEBIAN_PUPPET.ssldir}/certs/ca.pem`, content: testCa.cert },
      { path: `${DEBIAN_PUPPET.ssldir}/private_keys/${certname}.pem`, content: own.key, mode: 0o600 },
    ],
  });
  machine.boot();
  const state = await seconds('boot to running', () => machine.waitUntilRunning());
  console.log(`${certname}: ${state.state}${state.failedUnits.length > 0 ? `, failed units: ${state.failedUnits.join(' ')}` : ''}`);
  // Where the boot went: systemd's own account (the bootstrap and the agent's boot step are jobs of it).
  console.log((await machine.exec(['systemd-analyze', 'time'])).stdout.trim());
  console.log((await machine.exec(['systemd-analyze', 'blame', '--no-pager'])).stdout.split('\n').slice(0, 6).join('\n'));
}, 900_000);

afterAll(async () => {
  await machine?.destroy();
  network?.destroy();
  await imds?.close();
  await ca?.close();
  if (runDir) rmSync(runDir, { recursive: true, force: true });
  console.log('timings (s):', JSON.stringify(timings));
});

describe('a lab machine', () => {
  it('runs systemd as PID 1 and reaches running (or degraded, failed units reported)', async () => {
    expect(await inside(['cat', '/proc/1/comm'])).toBe('systemd');
    const state = await machine.waitUntilRunning();
    expect(['running', 'degraded']).toContain(state.state);
    expect(state.failedUnits).toEqual([]);
    expect(await inside(['hostname'])).toBe(certname);
    expect(await inside(['cat', '/etc/machine-id'])).toBe(machine.machineId);
    // No Node.js but the one the share ships (no host binary bound in, none from Debian).
    expect((await machine.exec(['sh', '-c', 'command -v node; command -v nodejs; true'])).stdout).toBe('');
    // Nothing the machine must not start by itself is running.
    expect((await machine.exec(['systemctl', 'is-active', 'puppetserver.service', 'puppet.service'])).stdout.trim().split('\n')).toEqual(['inactive', 'inactive']);
  });

  it('reads IMDSv2 at 169.254.169.254 with curl: a token, its own identity, role credentials; 401 without the token', async () => {
    const token = await inside(['curl', '-sf', '-X', 'PUT', '-H', 'X-aws-ec2-metadata-token-ttl-seconds: 60', 'http://169.254.169.254/latest/api/token']);
    expect(token).not.toBe('');
    const get = (path: string, withToken = true) =>
      inside(['curl', '-s', '-w', '\\n%{http_code}', ...(withToken ? ['-H', `X-aws-ec2-metadata-token: ${token}`] : []), `http://169.254.169.254/latest/meta-data/${path}`]);
    // No body, only the status.
    expect(await get('instance-id', false)).toBe('401');
    expect(await get('instance-id')).toBe(`${INSTANCE_ID}\n200`);
    expect(await get('local-ipv4')).toBe(`${ip}\n200`);
    expect(await get('placement/region')).toBe(`${REGION}\n200`);
    expect(await get('iam/security-credentials/')).toBe(`${ROLE}\n200`);
    const document = JSON.parse((await get(`iam/security-credentials/${ROLE}`)).replace(/\n200$/, '')) as Record<string, string>;
    expect(document).toMatchObject({ Code: 'Success', Type: 'AWS-HMAC', AccessKeyId: 'ASIALABMACHINE000001', Token: `lab-token-for-${INSTANCE_ID}` });
    expect(Date.parse(document.Expiration ?? '')).toBeGreaterThan(Date.now());
  });

  it('ran the bootstrap once, and the node agent ran under the shipped hardening', async () => {
    const userData = await inside(['systemctl', 'show', '-p', 'ActiveState,Result', 'lab-user-data.service']);
    expect(userData.split('\n').sort()).toEqual(['ActiveState=active', 'Result=success']);
    // The runtime the lock file pins, copied off the share; its libraries resolve on Debian 12.
    const node = '/usr/local/lib/compile-master-agent/node/bin/node';
    expect(await inside(['ldd', node])).not.toMatch(/not found/);
    expect(await inside([node, '--version'])).toBe(`v${lockedRuntime(hostNodeArchitecture()).version}`);
    expect(await inside(['systemctl', 'show', '-p', 'ExecStart', '--value', 'compile-master-agent.service'])).toContain(`path=${node} `);
    const agent = await eventually(() => inside(['systemctl', 'show', '-p', 'ActiveState,Result,ProtectSystem,NoNewPrivileges', 'compile-master-agent.service']), /ActiveState=active/);
    expect(agent).toContain('ProtectSystem=strict');
    expect(agent).toContain('NoNewPrivileges=yes');
    expect(agent).toContain('Result=success');
    const journal = await machine.journal('compile-master-agent.service', { output: 'cat' });
    // It read its identity from IMDS, asked the CA, kept its certificate and tried to tell the
    // controller over SQS (nothing answers for SQS on the lab bridge in this test).
    expect(journal).toContain('boot decision');
    expect(journal).toContain(INSTANCE_ID);
    expect(journal).toContain('"plan":"keep"');
    expect(journal).toMatch(/could not tell the controller/);
    expect(ca.requests).toContain(`GET /puppet-ca/v1/certificate/${certname}`);
    expect(imds.requests).toContain(`${ip} GET /latest/meta-data/instance-id`);
    // The SDK asked IMDS for the role's credentials to sign the SQS call.
    expect(imds.requests).toContain(`${ip} GET /latest/meta-data/iam/security-credentials/${ROLE}`);
    // The CRL refresher (ordered after the boot step) wrote Debian's ssldir through its sandbox.
    await eventually(() => inside(['journalctl', '--no-pager', '-o', 'cat', '-u', 'compile-master-crl-refresh.service']), /installed the CA's newer CRL/);
    expect(await inside(['cat', `${DEBIAN_PUPPET.ssldir}/crl.pem`])).toBe(crl.trim());
  });

  it('reboots: systemd-nspawn exits 133 and the machine comes back with the same root', async () => {
    await inside(['sh', '-c', 'echo before-reboot > /root/marker']);
    const state = await seconds('reboot', () => machine.reboot());
    expect(['running', 'degraded']).toContain(state.state);
    expect(machine.boots).toBe(2);
    expect(machine.exits).toEqual([133]);
    expect(await inside(['cat', '/root/marker'])).toBe('before-reboot');
    expect(await inside(['cat', '/etc/machine-id'])).toBe(machine.machineId);
    // User data is for the first boot only; the agent unit starts again by itself.
    expect(await inside(['systemctl', 'show', '-p', 'ConditionResult', 'lab-user-data.service'])).toBe('ConditionResult=no');
    await eventually(() => inside(['systemctl', 'show', '-p', 'ActiveState', 'compile-master-agent.service']), /ActiveState=active/);
  });

  it('powers off gracefully: the agent unit stop step runs (a termination), and the machine exits', async () => {
    imds.setTargetLifecycleState(INSTANCE_ID, 'Terminated');
    // A stand-in Puppet Server on 8140 with an agent still connected from outside the machine: the
    // readiness daemon, in its sandbox, must see the connection and hold the shutdown for it.
    const node = '/usr/local/lib/compile-master-agent/node/bin/node';
    // Ordered as Puppet Server is (the readiness unit is After= it): at shutdown it stops only after the daemon.
    await inside(['systemd-run', '--unit=stand-in-puppetserver', '-p', 'Before=compile-master-readiness.service', node, '-e', "require('node:net').createServer(() => {}).listen(8140)"]);
    const agent = await connectWhenListening(ip, 8140);
    const poweredOff = seconds('poweroff', () => machine.poweroff());
    await sleep(8_000);
    agent.destroy();
    const code = await poweredOff;
    expect(code).toBe(0);
    expect(await machine.journal('compile-master-readiness.service', { output: 'cat' })).toMatch(/waiting for 1 agent connection\(s\) to finish their runs[\s\S]*every agent connection closed after \d+ s/);
    expect(machine.running).toBe(false);
    const journal = await machine.journal('compile-master-agent.service', { output: 'cat' });
    expect(journal).toMatch(/instance is terminating; leaving the purge to the controller/);
    expect(imds.requests).toContain(`${ip} GET /latest/meta-data/autoscaling/target-lifecycle-state`);
    // The readiness daemon, a DynamicUser, asked instance metadata too: Terminated, so no drain.
    expect(await machine.journal('compile-master-readiness.service', { output: 'cat' })).toMatch(/no drain: target lifecycle state is Terminated/);
  });

  it('destroy leaves no mount, namespace or bridge behind', async () => {
    const stateDir = machine.options.stateDir;
    const { netns } = network.host('cm1');
    const bridge = network.bridge;
    await machine.destroy();
    network.destroy();
    expect(mountsBelow(runDir)).toEqual([]);
    expect(existsSync(stateDir)).toBe(false);
    expect(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout).not.toContain(netns);
    expect(existsSync(`/sys/class/net/${bridge}`)).toBe(false);
    expect(readFileSync('/proc/net/dev', 'utf8')).not.toContain(bridge);
  });
});
