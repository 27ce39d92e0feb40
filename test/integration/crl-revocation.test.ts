import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { connect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeCompileMasterServer, startCompileMasterServer, type CompileMasterServer } from '../../lab/compile-master-server';
import { holdLabLock, type HeldLock } from '../../lab/lock';
import { labClients, type LabClients } from '../../lab/clients';
import { requestCertificate } from '../../lab/csr';
import { loadLab, readPems, uniqueCertname } from '../../lab/running-lab';

/**
 * Issue 13 item 7, "revocation reaches the whole tier", measured on real servers: a compile
 * master's Puppet Server (Debian puppetserver 7.9.5, CA service disabled, ssl-crl-path = its
 * hostcrl) next to the lab CA; client certificates from the lab CA; the node agent's crl-refresh
 * step running as on an instance (its own process, the default 15 s poll); revocation at the real
 * CA; and the time until the compile master refuses the revoked certificate in the TLS handshake,
 * while the same server, never restarted, still accepts a certificate that was not revoked.
 */
const PORT = 8150;
const BUDGET_SECONDS = 60;
const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Client {
  certname: string;
  cert: string;
  key: string;
}

type Probe = { accepted: true; status: string } | { accepted: false; code: string };

/**
 * One fresh TLS connection presenting `client`, and an authenticated request: Puppet's default
 * auth.conf answers /puppet/v3/environments only to clients with a certificate it accepted.
 */
function probe(ca: string, client: Client): Promise<Probe> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: PORT, servername: 'localhost', ca, cert: client.cert, key: client.key, timeout: 5_000 });
    let answer = '';
    socket.on('secureConnect', () => socket.write('GET /puppet/v3/environments HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'));
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('utf8')));
    socket.on('timeout', () => socket.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    // With TLS 1.3 the server checks the client certificate after the client's Finished, so its
    // refusal (an alert) arrives on the first read rather than at secureConnect.
    socket.on('error', (error: NodeJS.ErrnoException) => resolve({ accepted: false, code: error.code ?? error.message }));
    socket.on('close', () => resolve(answer.startsWith('HTTP/1.1 200') ? { accepted: true, status: answer.split('\r\n')[0] ?? '' } : { accepted: false, code: `closed: ${answer.split('\r\n')[0] ?? ''}` }));
  });
}

/** The agent logs JSON lines; anything else (a runtime warning) is kept as its text. */
function parseLogLine(text: string): Record<string, unknown> {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return { message: text };
  }
}

describe('a revoked certificate is refused by a compile master within 60 s, without a restart', () => {
  let lock: HeldLock;
  let clients: LabClients;
  let server: CompileMasterServer | undefined;
  let refresher: ChildProcess | undefined;
  let workDir: string;
  let caPem: string;
  const refresherLog: { at: number; line: Record<string, unknown> }[] = [];
  const victims: Client[] = [];
  let control: Client;
  /** Everything this test had the lab CA sign, cleaned at the end. */
  const issued: string[] = [];

  async function issueClient(prefix: string): Promise<Client> {
    const certname = uniqueCertname(prefix);
    const csr = await requestCertificate({ certname });
    issued.push(certname);
    await clients.ca.sign(certname);
    const cert = await clients.ca.getCertificate(certname);
    if (cert === undefined) throw new Error(`the lab CA signed ${certname} but serves no certificate for it`);
    return { certname, cert, key: csr.privateKeyPem };
  }

  async function untilLogged(message: string, after: number, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const entry = refresherLog.find(({ at, line }) => at >= after && line.message === message);
      if (entry) return entry.at;
      if (Date.now() > deadline) throw new Error(`the refresher did not log "${message}" within ${timeoutMs} ms:\n${JSON.stringify(refresherLog, null, 1)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  beforeAll(async () => {
    // The lab is shared: under its lock no one stops the CA (npm run lab -- --faults) mid-measurement.
    lock = await holdLabLock();
    const lab = loadLab();
    caPem = readPems(lab).ca;
    clients = labClients({ lab });
    const certname = uniqueCertname('compile-master');
    issued.push(certname);
    server = await startCompileMasterServer({ certname, port: PORT });
    victims.push(await issueClient('crl-victim'), await issueClient('crl-victim'));
    control = await issueClient('crl-control');

    workDir = await mkdtemp(join(tmpdir(), 'crl-refresher-'));
    const configPath = join(workDir, 'agent.json');
    // What the stack writes, pointed at the lab; crlRefreshSeconds keeps its default.
    await writeFile(
      configPath,
      JSON.stringify({
        primaryServer: 'localhost',
        caPort: 8140,
        caCertPath: lab.caCertPath,
        queueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/compile-masters-lifecycle',
        region: 'eu-west-1',
        ssldir: server.paths.ssldir,
      }),
    );
    refresher = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'node-agent', 'src', 'main.ts'), 'crl-refresh', '--config', configPath], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [refresher.stdout, refresher.stderr]) {
      let pending = '';
      stream?.on('data', (chunk: Buffer) => {
        const lines = (pending + chunk.toString('utf8')).split('\n');
        pending = lines.pop() ?? '';
        for (const text of lines.filter(Boolean)) refresherLog.push({ at: Date.now(), line: parseLogLine(text) });
      });
    }
    // The CRL installed at enrollment is current: the first poll finds nothing to do.
    await untilLogged("the installed CRL is the CA's current one", 0, 60_000);
  });

  afterAll(async () => {
    if (refresher && refresher.exitCode === null) {
      const exited = once(refresher, 'exit');
      refresher.kill('SIGTERM');
      // SIGTERM ends the loop after the poll in progress, with exit 0 as systemd expects of a stop.
      expect((await exited)[0]).toBe(0);
    }
    if (server) {
      await server.stop();
      removeCompileMasterServer(server.paths);
    }
    if (clients) {
      await clients.ca.clean(issued);
      await clients.close();
    }
    if (workDir) await rm(workDir, { recursive: true, force: true });
    await lock?.release();
  });

  it('accepts every client certificate of the lab CA before any revocation', async () => {
    for (const client of [...victims, control]) expect(await probe(caPem, client)).toEqual({ accepted: true, status: 'HTTP/1.1 200 OK' });
  });

  it('refuses each revoked certificate in the TLS handshake within 60 s of its revocation', async () => {
    const pid = server!.pid;
    const measured: number[] = [];
    for (const victim of victims) {
      const revokedAt = Date.now();
      await clients.ca.revoke(victim.certname);
      let outcome: Probe;
      do {
        await new Promise((resolve) => setTimeout(resolve, 250));
        outcome = await probe(caPem, victim);
      } while (outcome.accepted && Date.now() - revokedAt < (BUDGET_SECONDS + 30) * 1000);
      const refusedAt = Date.now();
      const installedAt = await untilLogged("installed the CA's newer CRL", revokedAt, 1_000);
      const seconds = (refusedAt - revokedAt) / 1000;
      measured.push(seconds);
      console.log(
        `revocation of ${victim.certname} → refused by the compile master on :${PORT} after ${seconds.toFixed(1)} s ` +
          `(refresher installed the CA's CRL at +${((installedAt - revokedAt) / 1000).toFixed(1)} s, Puppet Server reloaded it ${((refusedAt - installedAt) / 1000).toFixed(1)} s later; 15 s poll)`,
      );
      expect(outcome).toMatchObject({ accepted: false, code: expect.stringMatching(/^ERR_SSL_.*ALERT/) });
      expect(seconds).toBeLessThan(BUDGET_SECONDS);
    }
    console.log(`revocation → refusal, measured: ${measured.map((s) => `${s.toFixed(1)} s`).join(', ')} (budget ${BUDGET_SECONDS} s)`);

    // The same server, never restarted, still serves a certificate that was not revoked.
    expect(await probe(caPem, control)).toEqual({ accepted: true, status: 'HTTP/1.1 200 OK' });
    expect(server!.currentPid()).toBe(pid);
  });
});
