import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CompileMastersError, PuppetUnavailableError } from '../../../lib/errors';
import type { NodeAgentNotice } from '../../../lib/node-agent-notice';
import { certificateFacts, publicKeySha256, readCsr } from '../../../lib/puppet';
import { boot, type BootDeps } from '../../../node-agent/src/boot';
import { parseConfig } from '../../../node-agent/src/config';
import { sslPaths } from '../../../node-agent/src/ssl-dir';
import { keyPairFromPem, makeCsr } from '../../../lab/csr';
import { makeTestCa, type TestCa } from '../../support/pki';
import { fakeClock, makeCrl, memoryLog } from './fakes';

const CERTNAME = 'ip-10-0-1-23.eu-west-1.compute.internal';
const identity = { certname: CERTNAME, instanceId: 'i-0123456789abcdef0', region: 'eu-west-1' };

let testCa: TestCa;
let emptyCrl: string;
beforeAll(async () => {
  testCa = await makeTestCa('Puppet CA: primary.example.com');
  emptyCrl = await makeCrl(testCa, []);
});

/** RSA 2048 PKCS#1: what the agent writes, at a quarter of the cost of its 4096 bits. */
function rsaKeyPem(): string {
  return generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs1', format: 'pem' } }).privateKey;
}

/**
 * A node (temp ssldir), a CA that only knows what the agent's unauthenticated calls can see, and a
 * controller that signs only a CSR for a key the node reported and removes a pending CSR for any
 * other key once it has a report. The fake `puppet` does what Puppet 7's `ssl submit_request`
 * does: it loads the key in the privatekeydir, or generates and saves one if there is none, saves
 * the CSR, and fails on a conflict when the CA already holds a CSR for the certname.
 */
async function world(
  options: {
    signAfterPolls?: number;
    caDown?: boolean;
    /** Whether SQS refuses the n-th (1-based) send of this event. */
    refuse?: (notice: NodeAgentNotice, attempt: number) => boolean;
    /** The controller removes a pending CSR for an unreported key this many CSR polls after a report. */
    removesImpostorAfterPolls?: number;
  } = {},
) {
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
  const ca = {
    cert: undefined as string | undefined,
    csr: undefined as string | undefined,
    crl: emptyCrl,
    polls: 0,
    next: undefined as string | undefined,
    /** Every CSR the CA accepted, in order. */
    submitted: [] as string[],
    /** Key hashes the controller heard from the instance. */
    reported: [] as string[],
    removalCountdown: undefined as number | undefined,
  };
  const calls: string[] = [];
  const events: NodeAgentNotice[] = [];
  const attempts = new Map<string, number>();
  const unavailable = () => new PuppetUnavailableError({ server: 'ca', url: 'https://puppet.example.com:8140', operation: 'certificate' });
  const reportedCsr = () => ca.csr !== undefined && ca.reported.includes(readCsr(ca.csr).publicKeySha256);
  const log = memoryLog();
  const deps: BootDeps = {
    config,
    caPem: testCa.cert,
    identity,
    ca: {
      getCertificate: async () => {
        if (options.caDown) throw unavailable();
        if (reportedCsr() && ca.next && ++ca.polls > (options.signAfterPolls ?? Number.POSITIVE_INFINITY)) {
          ca.cert = ca.next;
          ca.csr = undefined;
        }
        return ca.cert;
      },
      getCsr: async () => {
        if (ca.removalCountdown !== undefined && --ca.removalCountdown <= 0 && !reportedCsr()) ca.csr = undefined;
        return ca.csr;
      },
      getCrl: async () => {
        if (options.caDown) throw unavailable();
        return { pem: ca.crl, lastModified: undefined };
      },
    },
    puppet: {
      configure: async () => void calls.push('configure'),
      submitCsr: async () => {
        calls.push('submit');
        const keyPem = await readFile(paths.key, 'utf8').catch(async () => {
          const generated = rsaKeyPem();
          await mkdir(dirname(paths.key), { recursive: true });
          await writeFile(paths.key, generated);
          return generated;
        });
        if (ca.csr !== undefined) throw new CompileMastersError(`puppet ssl submit_request (submit the CSR) exited 1; output:\nCould not submit certificate request for '${CERTNAME}' due to a conflict on the server`);
        const keys = await keyPairFromPem(keyPem);
        const { csrPem } = await makeCsr({ certname: CERTNAME, keyPair: keys });
        ca.csr = csrPem;
        ca.submitted.push(csrPem);
        ca.next = (await testCa.issue({ commonName: CERTNAME, keys })).cert;
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
    notifier: {
      send: async (notice) => {
        calls.push(`tell ${notice.event}`);
        const attempt = (attempts.get(notice.event) ?? 0) + 1;
        attempts.set(notice.event, attempt);
        if (options.refuse?.(notice, attempt)) throw new Error('AccessDenied: not authorized to perform sqs:SendMessage');
        events.push(notice);
        if (notice.publicKeySha256 === undefined) return;
        ca.reported.push(notice.publicKeySha256);
        if (options.removesImpostorAfterPolls !== undefined) ca.removalCountdown = options.removesImpostorAfterPolls;
      },
    },
    newPrivateKey: async () => {
      calls.push('new key');
      return rsaKeyPem();
    },
    clock: fakeClock(),
    log,
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
  /** A CSR for our certname from someone else's key, pending at the CA. */
  const impostor = async () => {
    const { csrPem } = await makeCsr({ certname: CERTNAME, extensions: { pp_instance_id: identity.instanceId } });
    ca.csr = csrPem;
    return csrPem;
  };
  const names = () => events.map((notice) => notice.event);
  return { root, config, paths, ca, calls, events, names, deps, log, enrolled, impostor };
}

const ENROLLMENT = ['configure', 'new key', 'tell enrolling', 'submit', 'tell csr-submitted', 'download', 'restart', 'run', 'health', 'tell enrolled'];

describe('boot step', () => {
  it('with a good certificate: says "booted" and changes nothing', async () => {
    const w = await world();
    const pem = await w.enrolled();
    await expect(boot(w.deps)).resolves.toMatchObject({ kind: 'keep' });
    expect(w.events).toEqual([{ source: 'compile-masters.node-agent', version: 2, instanceId: identity.instanceId, event: 'booted' }]);
    expect(w.calls).toEqual(['tell booted']);
    expect(await readFile(w.paths.cert, 'utf8')).toBe(pem.cert);
    await expect(stat(w.config.backupDir)).rejects.toThrow(/ENOENT/);
  });

  it('on first boot: pinned CA in place, own key made and reported before its CSR is submitted, signed, installed, Puppet run, health, in that order', async () => {
    const w = await world({ signAfterPolls: 3 });
    await expect(boot(w.deps)).resolves.toMatchObject({ kind: 'enroll' });
    expect(w.calls).toEqual(ENROLLMENT);
    expect(await readFile(join(w.config.ssldir, 'certs', 'ca.pem'), 'utf8')).toBe(testCa.cert);
    expect((await stat(w.config.ssldir)).mode & 0o777).toBe(0o771);
    await expect(stat(w.config.backupDir)).rejects.toThrow(/ENOENT/);
  });

  it("reports the hash of the key the CSR is made from, the one the installed certificate is for, and never logs the key", async () => {
    const w = await world({ signAfterPolls: 1 });
    await boot(w.deps);
    const key = await readFile(w.paths.key, 'utf8');
    const hash = publicKeySha256(key);
    expect(w.events).toEqual([
      { source: 'compile-masters.node-agent', version: 2, instanceId: identity.instanceId, event: 'enrolling', publicKeySha256: hash },
      { source: 'compile-masters.node-agent', version: 2, instanceId: identity.instanceId, event: 'csr-submitted', publicKeySha256: hash },
      { source: 'compile-masters.node-agent', version: 2, instanceId: identity.instanceId, event: 'enrolled' },
    ]);
    expect(w.ca.submitted.map((csr) => readCsr(csr).publicKeySha256)).toEqual([hash]);
    expect((await certificateFacts(await readFile(w.paths.cert, 'utf8'))).publicKeySha256).toBe(hash);
    // Puppet's own modes for its privatekeydir and hostprivkey.
    expect((await stat(w.paths.key)).mode & 0o777).toBe(0o640);
    expect((await stat(dirname(w.paths.key))).mode & 0o777).toBe(0o750);
    const body = key.split('\n')[1] ?? '';
    expect(body.length).toBeGreaterThan(40);
    expect(JSON.stringify(w.log.lines)).not.toContain(body);
    expect(JSON.stringify(w.log.lines)).not.toContain('PRIVATE KEY');
  });

  it('after a purge while down: backs the old ssldir up (0700), wipes it and enrolls again with a new key', async () => {
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
    expect(w.events[0]?.publicKeySha256).not.toBe(publicKeySha256(old.key));
    expect(w.calls).toEqual(ENROLLMENT);
  });

  it('resumes waiting, without a new key or CSR, when its own CSR is still pending, after reporting its key again', async () => {
    const w = await world({ signAfterPolls: 1 });
    await w.deps.puppet.submitCsr();
    w.calls.length = 0;
    const hash = publicKeySha256(await readFile(w.paths.key, 'utf8'));
    await expect(boot(w.deps)).resolves.toMatchObject({ kind: 'await' });
    expect(w.calls).toEqual(['tell csr-submitted', 'download', 'restart', 'run', 'health', 'tell enrolled']);
    expect(w.events[0]).toMatchObject({ event: 'csr-submitted', publicKeySha256: hash });
    expect(w.ca.submitted).toHaveLength(1);
  });

  it("with someone else's CSR pending for its certname: reports its own key, waits for the controller to remove that CSR, then enrolls", async () => {
    const w = await world({ signAfterPolls: 1, removesImpostorAfterPolls: 3 });
    const forged = await w.impostor();
    await expect(boot(w.deps)).resolves.toMatchObject({ kind: 'enroll', reason: expect.stringContaining('not for this node') });
    expect(w.calls).toEqual(ENROLLMENT);
    expect(w.ca.submitted).toHaveLength(1);
    expect(w.ca.submitted[0]).not.toBe(forged);
    expect(readCsr(w.ca.submitted[0] ?? '').publicKeySha256).toBe(w.events[0]?.publicKeySha256);
    expect((w.deps.clock as ReturnType<typeof fakeClock>).slept.length).toBeGreaterThanOrEqual(2);
    expect(w.log.lines).toContainEqual(expect.objectContaining({ level: 'warn', message: expect.stringContaining('waiting for the controller to remove it') }));
  });

  it('gives up, having submitted nothing, when the CSR it did not submit is never removed', async () => {
    const w = await world({ signAfterPolls: 1 });
    const forged = await w.impostor();
    const attempt = boot(w.deps);
    await expect(attempt).rejects.toBeInstanceOf(CompileMastersError);
    await expect(attempt).rejects.toThrow(new RegExp(`Gave up waiting for the controller to remove the pending CSR for ${CERTNAME} that this node did not submit after 1800 s — .*Nothing was submitted`));
    expect(w.calls).toEqual(['configure', 'new key', 'tell enrolling']);
    expect(w.ca.csr).toBe(forged);
  });

  it('retries a key report SQS does not take, and submits the CSR only once it went through', async () => {
    const w = await world({ signAfterPolls: 1, refuse: (notice, attempt) => notice.event === 'enrolling' && attempt <= 2 });
    await expect(boot(w.deps)).resolves.toMatchObject({ kind: 'enroll' });
    expect(w.calls.slice(0, 6)).toEqual(['configure', 'new key', 'tell enrolling', 'tell enrolling', 'tell enrolling', 'submit']);
    expect(w.log.lines.filter((line) => line.level === 'warn' && line.event === 'enrolling')).toHaveLength(2);
    // Backoff between attempts (full jitter at random() = 0.5); the sleeps after are the signing wait's.
    expect((w.deps.clock as ReturnType<typeof fakeClock>).slept.slice(0, 2)).toEqual([500, 1000]);
  });

  it('fails boot with a clear message, having submitted nothing, when the key report never goes through', async () => {
    const w = await world({ signAfterPolls: 1, refuse: (notice) => notice.event === 'enrolling' });
    const attempt = boot(w.deps);
    await expect(attempt).rejects.toBeInstanceOf(CompileMastersError);
    await expect(attempt).rejects.toThrow(/Gave up waiting for the controller's queue to take this node's key report \(enrolling\) after 1800 s — the controller signs only a CSR whose key the instance itself reported, so no CSR was submitted; check that the instance profile may sqs:SendMessage to https:\/\/sqs/);
    await expect(attempt).rejects.toHaveProperty('cause', expect.objectContaining({ message: expect.stringContaining('AccessDenied') }));
    expect(w.calls).not.toContain('submit');
    expect(w.calls.filter((call) => call === 'tell enrolling').length).toBeGreaterThan(5);
    expect(w.ca.submitted).toEqual([]);
  });

  it('fails, still waiting, when the report of a pending CSR never goes through after a restart', async () => {
    const w = await world({ signAfterPolls: 1, refuse: (notice) => notice.event === 'csr-submitted' });
    await w.deps.puppet.submitCsr();
    await expect(boot(w.deps)).rejects.toThrow(/key report \(csr-submitted\) after 1800 s — the controller signs only a CSR whose key the instance itself reported;/);
    expect(w.ca.cert).toBeUndefined();
  });

  it('carries on when a prompt (csr-submitted, enrolled) does not go through: the key report did', async () => {
    const w = await world({ signAfterPolls: 1, refuse: (notice) => notice.event !== 'enrolling' });
    await expect(boot(w.deps)).resolves.toMatchObject({ kind: 'enroll' });
    expect(w.calls).toEqual(ENROLLMENT);
    expect(w.names()).toEqual(['enrolling']);
    expect(w.log.lines.filter((line) => line.level === 'warn').map((line) => line.event)).toEqual(['csr-submitted', 'enrolled']);
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
    expect(w.names()).toEqual(['enrolling', 'csr-submitted']);
  });

  it('fails, having prompted nobody after its report, when the CA refuses the CSR', async () => {
    const w = await world();
    w.deps.puppet.submitCsr = async () => Promise.reject(new CompileMastersError('puppet ssl submit_request (submit the CSR) exited 1'));
    await expect(boot(w.deps)).rejects.toThrow(/submit_request .* exited 1/);
    expect(w.names()).toEqual(['enrolling']);
  });
});
