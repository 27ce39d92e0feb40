import { mkdir, mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CompileMastersError, PuppetUnavailableError } from '../../../lib/errors';
import { certificateFacts } from '../../../lib/puppet';
import { boot, type BootDeps } from '../../../node-agent/src/boot';
import { parseConfig } from '../../../node-agent/src/config';
import type { AgentEvent } from '../../../node-agent/src/notify';
import { sslPaths } from '../../../node-agent/src/ssl-dir';
import { makeTestCa, type Pem, type TestCa } from '../../support/pki';
import { fakeClock, makeCrl, memoryLog } from './fakes';

const CERTNAME = 'ip-10-0-1-23.eu-west-1.compute.internal';
const identity = { certname: CERTNAME, instanceId: 'i-0123456789abcdef0', region: 'eu-west-1' };

let testCa: TestCa;
let emptyCrl: string;
beforeAll(async () => {
  testCa = await makeTestCa('Puppet CA: primary.example.com');
  emptyCrl = await makeCrl(testCa, []);
});

/**
 * A node (temp ssldir) and a CA that only knows what the agent's unauthenticated calls can see.
 * The fake `puppet` writes what the real one writes: key and CSR on submit, certificate on download.
 */
async function world(options: { signAfterPolls?: number; caDown?: boolean } = {}) {
  const root = await mkdtemp(join(tmpdir(), 'agent-boot-'));
  const config = parseConfig(
    {
      primaryServer: 'puppet.example.com',
      queueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/q',
      region: 'eu-west-1',
      confdir: join(root, 'puppet'),
      ssldir: join(root, 'puppet', 'ssl'),
      backupDir: join(root, 'backups'),
      localServerService: null,
      isolatePuppetRun: false,
    },
    'test',
  );
  await mkdir(config.confdir, { recursive: true });
  const paths = sslPaths(config.ssldir, CERTNAME);
  const ca = { cert: undefined as string | undefined, csr: undefined as string | undefined, crl: emptyCrl, polls: 0, next: undefined as Pem | undefined };
  const calls: string[] = [];
  const events: AgentEvent[] = [];
  const unavailable = () => new PuppetUnavailableError({ server: 'ca', url: 'https://puppet.example.com:8140', operation: 'certificate' });
  const deps: BootDeps = {
    config,
    caPem: testCa.cert,
    identity,
    ca: {
      getCertificate: async () => {
        if (options.caDown) throw unavailable();
        if (ca.csr && ca.next && ++ca.polls > (options.signAfterPolls ?? Number.POSITIVE_INFINITY)) {
          ca.cert = ca.next.cert;
          ca.csr = undefined;
        }
        return ca.cert;
      },
      getCsr: async () => ca.csr,
      getCrl: async () => {
        if (options.caDown) throw unavailable();
        return { pem: ca.crl, lastModified: undefined };
      },
    },
    puppet: {
      configure: async () => void calls.push('configure'),
      submitCsr: async () => {
        calls.push('submit');
        ca.next = await testCa.issue({ commonName: CERTNAME });
        const csr = `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(ca.next.key).toString('base64').slice(0, 64)}\n-----END CERTIFICATE REQUEST-----\n`;
        await mkdir(join(config.ssldir, 'private_keys'), { recursive: true });
        await mkdir(join(config.ssldir, 'certificate_requests'), { recursive: true });
        await writeFile(paths.key, ca.next.key);
        await writeFile(paths.csr, csr);
        ca.csr = csr;
      },
      downloadCert: async () => {
        calls.push('download');
        await mkdir(join(config.ssldir, 'certs'), { recursive: true });
        await writeFile(paths.cert, ca.cert ?? '');
      },
      agentRun: async () => {
        calls.push('run');
        return 'changes applied';
      },
    },
    localServer: { isHealthy: async () => calls.push('health') >= 0 },
    restartLocalServer: async () => void calls.push('restart'),
    notifier: { notify: async (event) => void events.push(event) },
    clock: fakeClock(),
    log: memoryLog(),
  };
  /** Puts a signed identity on the node, as a finished enrollment leaves it. */
  const enrolled = async () => {
    const pem = await testCa.issue({ commonName: CERTNAME });
    await mkdir(join(config.ssldir, 'certs'), { recursive: true });
    await mkdir(join(config.ssldir, 'private_keys'), { recursive: true });
    await writeFile(paths.cert, pem.cert);
    await writeFile(paths.key, pem.key);
    ca.cert = pem.cert;
    return pem;
  };
  return { root, config, paths, ca, calls, events, deps, enrolled };
}

describe('boot step', () => {
  it('with a good certificate: says "booted" and changes nothing', async () => {
    const w = await world();
    const pem = await w.enrolled();
    await expect(boot(w.deps)).resolves.toMatchObject({ kind: 'keep' });
    expect(w.events).toEqual(['booted']);
    expect(w.calls).toEqual([]);
    expect(await readFile(w.paths.cert, 'utf8')).toBe(pem.cert);
    await expect(stat(w.config.backupDir)).rejects.toThrow(/ENOENT/);
  });

  it('on first boot: pinned CA in place, CSR submitted, waits for signing, installs, runs Puppet, checks health, in that order', async () => {
    const w = await world({ signAfterPolls: 3 });
    await expect(boot(w.deps)).resolves.toMatchObject({ kind: 'enroll' });
    expect(w.calls).toEqual(['configure', 'submit', 'download', 'restart', 'run', 'health']);
    expect(w.events).toEqual(['csr-submitted', 'enrolled']);
    expect(await readFile(join(w.config.ssldir, 'certs', 'ca.pem'), 'utf8')).toBe(testCa.cert);
    expect((await stat(w.config.ssldir)).mode & 0o777).toBe(0o771);
    await expect(stat(w.config.backupDir)).rejects.toThrow(/ENOENT/);
  });

  it('after a purge while down: backs the old ssldir up (0700), wipes it and enrolls again', async () => {
    const w = await world({ signAfterPolls: 1 });
    const old = await w.enrolled();
    w.ca.cert = undefined; // cleaned at the CA
    w.ca.crl = await makeCrl(testCa, [(await certificateFacts(old.cert)).serial.toString(16)]);
    await expect(boot(w.deps)).resolves.toMatchObject({ kind: 'enroll', reason: expect.stringContaining('(purged)') });
    const [backup, ...more] = await readdir(w.config.backupDir);
    expect(more).toEqual([]);
    expect(backup).toMatch(/^ssl-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$/);
    const backupDir = join(w.config.backupDir, backup ?? '');
    expect((await stat(backupDir)).mode & 0o777).toBe(0o700);
    expect((await stat(w.config.backupDir)).mode & 0o777).toBe(0o700);
    expect(await readFile(join(backupDir, 'certs', `${CERTNAME}.pem`), 'utf8')).toBe(old.cert);
    expect(await readFile(w.paths.cert, 'utf8')).not.toBe(old.cert);
    expect(w.events).toEqual(['csr-submitted', 'enrolled']);
  });

  it('resumes waiting, without a new key or CSR, when its own CSR is still pending', async () => {
    const w = await world({ signAfterPolls: 1 });
    await w.deps.puppet.submitCsr();
    w.calls.length = 0;
    await expect(boot(w.deps)).resolves.toMatchObject({ kind: 'await' });
    expect(w.calls).toEqual(['download', 'restart', 'run', 'health']);
    expect(w.events).toEqual(['csr-submitted', 'enrolled']);
  });

  it('with the CA down: retries with backoff until its deadline, then fails having changed nothing', async () => {
    const w = await world({ caDown: true });
    const pem = await w.enrolled();
    const attempt = boot(w.deps);
    await expect(attempt).rejects.toThrow(/Gave up waiting for the CA at puppet.example.com:8140 to answer after 300 s — nothing was changed/);
    await expect(attempt).rejects.toHaveProperty('cause', expect.any(PuppetUnavailableError));
    expect(w.calls).toEqual([]);
    expect(w.events).toEqual([]);
    expect(await readFile(w.paths.cert, 'utf8')).toBe(pem.cert);
    expect((w.deps.clock as ReturnType<typeof fakeClock>).slept.length).toBeGreaterThan(3);
  });

  it('when the CA still holds a revoked certificate: fails, changing nothing, naming the clean command', async () => {
    const w = await world();
    const pem = await w.enrolled();
    w.ca.crl = await makeCrl(testCa, [(await certificateFacts(pem.cert)).serial.toString(16)]);
    const attempt = boot(w.deps);
    await expect(attempt).rejects.toBeInstanceOf(CompileMastersError);
    await expect(attempt).rejects.toThrow(new RegExp(`has revoked it.*puppetserver ca clean --certname ${CERTNAME}`));
    expect(w.calls).toEqual([]);
    expect(w.events).toEqual([]);
    expect(await readFile(w.paths.cert, 'utf8')).toBe(pem.cert);
  });

  it('gives up on signing at its deadline, pointing at the controller', async () => {
    const w = await world();
    await expect(boot(w.deps)).rejects.toThrow(/Gave up waiting for the controller to sign the CSR of .* after 1800 s — the controller signs only CSRs that pass its checks/);
    expect(w.events).toEqual(['csr-submitted']);
  });

  it('fails, having told nobody, when the CA refuses the CSR', async () => {
    const w = await world();
    w.deps.puppet.submitCsr = async () => Promise.reject(new CompileMastersError('puppet ssl submit_request (submit the CSR) exited 1'));
    await expect(boot(w.deps)).rejects.toThrow(/submit_request .* exited 1/);
    expect(w.events).toEqual([]);
  });
});
