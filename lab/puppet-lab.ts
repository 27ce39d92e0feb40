/**
 * The Puppet lab: a throwaway CA + Puppet Server, PuppetDB (on its own PostgreSQL cluster) and a
 * PE orchestrator contract double, all on this machine, all state in one directory
 * (PUPPET_LAB_DIR, default /var/tmp/compile-masters-lab).
 *
 *   npm run lab:puppet -- up | down | status
 *   npm run lab:puppet -- stop-ca | start-ca | stop-puppetdb | start-puppetdb | stop-orchestrator | start-orchestrator
 *
 * `up`, `status` and the start/stop commands print the lab description (see description.ts) as
 * JSON on stdout's last line; progress goes to stderr.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { writeConfigs } from './configs';
import { writePuppetCode } from './puppet-code';
import { labDir, type LabDescription } from './description';
import { orchestratorHealthy, puppetDbHealthy, puppetServerHealthy } from './health';
import {
  ENVIRONMENT,
  FORBIDDEN_CERTNAME,
  layout,
  LIFECYCLE_CERTNAME,
  PRIMARY_CERTNAME,
  PUPPET_BIN,
  SERVER_ALT_NAMES,
  URLS,
  type LabLayout,
} from './layout';
import { ensurePackages } from './packages';
import { isPostgresRunning, postgresPid, postgresPort, provisionPuppetDb, startPostgres, stopPostgres } from './postgres';
import { run, runningPid, startDetached, stopProcess, type ManagedProcess } from './processes';
import { FAST_START, puppetServerProcess } from './puppetserver-process';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const STARTUP_TIMEOUT_MS = 300_000;
// Modest heaps: both JVMs and the lab's PostgreSQL fit in ~2 GB.
const HEAP = '-Xmx768m';

type Service = 'puppetserver' | 'puppetdb' | 'orchestrator';
const SERVICES: Service[] = ['puppetserver', 'puppetdb', 'orchestrator'];

function log(line: string): void {
  process.stderr.write(`[lab] ${line}\n`);
}

function processSpec(paths: LabLayout, service: Service): ManagedProcess {
  switch (service) {
    case 'puppetserver':
      return puppetServerProcess({ name: service, tkConfig: paths.server.tkConfig, tkBootstrap: paths.server.tkBootstrap, logsDir: paths.logs, heap: HEAP });
    case 'puppetdb':
      // What the puppetdb systemd unit runs, with the lab's config.
      return {
        name: service,
        command: '/usr/bin/java',
        args: [
          HEAP,
          FAST_START,
          '-Djava.security.egd=/dev/urandom',
          '-XX:OnOutOfMemoryError=kill -9 %p',
          '-cp',
          '/usr/share/puppetdb/puppetdb.jar',
          'clojure.main',
          '-m',
          'puppetlabs.puppetdb.core',
          'services',
          '--config',
          paths.puppetdb.config,
          '--bootstrap-config',
          paths.puppetdb.bootstrap,
        ],
        cwd: paths.puppetdb.root,
      };
    case 'orchestrator':
      return {
        name: service,
        command: process.execPath,
        args: ['--import', 'tsx', join(REPO_ROOT, 'lab', 'orchestrator-double.ts'), '--lab-dir', paths.dir],
        cwd: REPO_ROOT,
      };
  }
}

function healthy(paths: LabLayout, service: Service): Promise<boolean> {
  switch (service) {
    case 'puppetserver':
      return puppetServerHealthy(paths);
    case 'puppetdb':
      return puppetDbHealthy();
    case 'orchestrator':
      return orchestratorHealthy(paths);
  }
}

function pidOf(paths: LabLayout, service: Service): number | null {
  return runningPid(paths.run, service, paths.dir);
}

function startService(paths: LabLayout, service: Service): void {
  if (pidOf(paths, service) !== null) return;
  log(`starting ${service} (log: ${join(paths.logs, `${service}.log`)})`);
  startDetached(paths.run, paths.logs, processSpec(paths, service));
}

async function waitHealthy(paths: LabLayout, service: Service): Promise<void> {
  const started = Date.now();
  while (!(await healthy(paths, service))) {
    if (pidOf(paths, service) === null) throw new Error(`${service} exited during start-up:\n${logTail(paths, service)}`);
    if (Date.now() - started > STARTUP_TIMEOUT_MS) {
      throw new Error(`${service} not healthy after ${STARTUP_TIMEOUT_MS / 1000}s:\n${logTail(paths, service)}`);
    }
    await sleep(1_000);
  }
  log(`${service} healthy after ${((Date.now() - started) / 1000).toFixed(1)}s`);
}

function logTail(paths: LabLayout, service: string, lines = 30): string {
  try {
    return readFileSync(join(paths.logs, `${service}.log`), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** A random secret created once and kept in a 0600 file. */
function secret(file: string): string {
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
  }
  return readFileSync(file, 'utf8').trim();
}

/** A self-contained CA and the primary's certificate, made offline before the server first starts. */
function ensureCa(paths: LabLayout): void {
  if (existsSync(join(paths.server.cadir, 'ca_crt.pem'))) return;
  log('creating the lab CA and the primary certificate');
  run('/usr/bin/puppetserver', ['ca', 'setup', '--config', paths.server.puppetConf, '--subject-alt-names', SERVER_ALT_NAMES.join(',')]);
}

/**
 * Client certificates go through the running CA like any agent's (CSR over the API, signed with
 * the primary's pp_cli_auth certificate), so they are in the CA's inventory and can be listed,
 * revoked and cleaned like any other.
 */
function ensureClientCertificates(paths: LabLayout): void {
  for (const certname of [LIFECYCLE_CERTNAME, FORBIDDEN_CERTNAME]) {
    if (existsSync(paths.clients.cert(certname))) continue;
    log(`issuing the client certificate ${certname}`);
    run('/usr/bin/puppetserver', ['ca', 'generate', '--certname', certname, '--config', paths.clients.issuerConf]);
  }
}

function describe(paths: LabLayout, postgresPortNumber: number): LabDescription {
  const client = (certname: string) => ({ certname, certPath: paths.clients.cert(certname), keyPath: paths.clients.key(certname) });
  return {
    dir: paths.dir,
    caCertPath: paths.server.caCert,
    crlPath: paths.server.caCrl,
    ca: { url: URLS.ca },
    puppetdb: { url: URLS.puppetdb, plainUrl: URLS.puppetdbPlain },
    orchestrator: { url: URLS.orchestrator, tokenPath: paths.orchestrator.tokenFile },
    primary: { certname: PRIMARY_CERTNAME, ssldir: paths.server.ssldir, confdir: paths.primaryAgent.confdir, environment: ENVIRONMENT },
    lifecycleClient: client(LIFECYCLE_CERTNAME),
    forbiddenClient: client(FORBIDDEN_CERTNAME),
    puppetBin: PUPPET_BIN,
    postgres: { port: postgresPortNumber },
    logsDir: paths.logs,
    pids: {
      postgres: postgresPid(paths),
      puppetserver: pidOf(paths, 'puppetserver'),
      puppetdb: pidOf(paths, 'puppetdb'),
      orchestrator: pidOf(paths, 'orchestrator'),
    },
  };
}

async function publish(paths: LabLayout): Promise<LabDescription> {
  const description = describe(paths, await postgresPort(paths));
  writeFileSync(paths.descriptionFile, `${JSON.stringify(description, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(description)}\n`);
  return description;
}

async function health(paths: LabLayout): Promise<Record<Service | 'postgres', boolean>> {
  const [puppetserver, puppetdb, orchestrator] = await Promise.all(SERVICES.map((service) => healthy(paths, service)));
  return { postgres: isPostgresRunning(paths), puppetserver: puppetserver!, puppetdb: puppetdb!, orchestrator: orchestrator! };
}

async function up(paths: LabLayout): Promise<void> {
  const started = Date.now();
  if (existsSync(paths.descriptionFile) && Object.values(await health(paths)).every(Boolean)) {
    // The code is the one configuration a running lab takes without a restart: converge it.
    writePuppetCode(paths);
    await publish(paths);
    return;
  }
  ensurePackages(log);
  mkdirSync(paths.dir, { recursive: true, mode: 0o755 });
  const port = await postgresPort(paths);
  const databasePassword = secret(paths.puppetdb.passwordFile);
  secret(paths.orchestrator.tokenFile);
  writeConfigs(paths, port, databasePassword);
  ensureCa(paths);
  startPostgres(paths, port);
  provisionPuppetDb(paths, port, databasePassword);
  // The two JVMs boot in parallel; only the client certificates need the CA to be up first.
  for (const service of SERVICES) startService(paths, service);
  await waitHealthy(paths, 'puppetserver');
  ensureClientCertificates(paths);
  await Promise.all([waitHealthy(paths, 'puppetdb'), waitHealthy(paths, 'orchestrator')]);
  log(`lab up in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  await publish(paths);
}

async function down(paths: LabLayout): Promise<void> {
  // Reverse order of dependence: the double drives agents, PuppetDB needs PostgreSQL.
  for (const service of [...SERVICES].reverse()) {
    if (await stopProcess(paths.run, service, paths.dir)) log(`stopped ${service}`);
  }
  if (stopPostgres(paths)) log('stopped postgres');
  rmSync(paths.descriptionFile, { force: true });
}

async function status(paths: LabLayout): Promise<boolean> {
  const state = await health(paths);
  const description = existsSync(paths.descriptionFile) ? describe(paths, await postgresPort(paths)) : null;
  process.stdout.write(`${JSON.stringify({ ...description, health: state })}\n`);
  return Object.values(state).every(Boolean);
}

/** Serialises lab commands across processes (two test runs may start the lab at once). */
async function withLock<T>(paths: LabLayout, action: () => Promise<T>): Promise<T> {
  mkdirSync(paths.dir, { recursive: true, mode: 0o755 });
  const lock = join(paths.dir, 'lab.lock');
  for (;;) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch {
      const holder = Number.parseInt(readFileSync(lock, 'utf8'), 10);
      if (!Number.isInteger(holder) || !existsSync(`/proc/${holder}`)) rmSync(lock, { force: true });
      else await sleep(1_000);
    }
  }
  try {
    return await action();
  } finally {
    rmSync(lock, { force: true });
  }
}

const FAULT_COMMANDS: Record<string, { service: Service; start: boolean }> = {
  'stop-ca': { service: 'puppetserver', start: false },
  'start-ca': { service: 'puppetserver', start: true },
  'stop-puppetdb': { service: 'puppetdb', start: false },
  'start-puppetdb': { service: 'puppetdb', start: true },
  'stop-orchestrator': { service: 'orchestrator', start: false },
  'start-orchestrator': { service: 'orchestrator', start: true },
};

async function main(command: string | undefined): Promise<number> {
  const paths = layout(labDir());
  if (command === 'status') return (await status(paths)) ? 0 : 1;
  if (process.getuid?.() !== 0) throw new Error('the Puppet lab installs packages and runs PostgreSQL as its own user: run it as root');
  if (command === 'up') return withLock(paths, async () => (await up(paths), 0));
  if (command === 'down') return withLock(paths, async () => (await down(paths), 0));
  const fault = command === undefined ? undefined : FAULT_COMMANDS[command];
  if (!fault) {
    process.stderr.write(`usage: puppet-lab up|down|status|${Object.keys(FAULT_COMMANDS).join('|')}\n`);
    return 2;
  }
  return withLock(paths, async () => {
    if (fault.start) {
      startService(paths, fault.service);
      await waitHealthy(paths, fault.service);
    } else if (await stopProcess(paths.run, fault.service, paths.dir)) {
      log(`stopped ${fault.service}`);
    }
    await publish(paths);
    return 0;
  });
}

main(process.argv[2]).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`[lab] ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
