import { existsSync, mkdirSync, readFileSync, writeFileSync, chownSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { run } from './processes';
import type { LabLayout } from './layout';

/**
 * The lab's own PostgreSQL 15 cluster (initdb in the lab directory, socket in the lab directory,
 * TCP on 127.0.0.1 only, on a port picked once and remembered), so the machine's own cluster is
 * never touched and a machine that already runs one on 5432 is no problem.
 */
const BIN = '/usr/lib/postgresql/15/bin';
const OWNER = 'postgres';

function asPostgres(command: string, args: string[], input?: string): string {
  return run('runuser', ['-u', OWNER, '--', join(BIN, command), ...args], {
    input,
    cwd: '/',
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
}

export async function postgresPort(paths: LabLayout): Promise<number> {
  if (existsSync(paths.postgres.portFile)) return Number.parseInt(readFileSync(paths.postgres.portFile, 'utf8'), 10);
  const port = await firstFreePort(55432);
  mkdirSync(paths.postgres.root, { recursive: true });
  writeFileSync(paths.postgres.portFile, `${port}\n`);
  return port;
}

async function firstFreePort(from: number): Promise<number> {
  for (let port = from; port < from + 100; port++) if (await isFree(port)) return port;
  throw new Error(`no free TCP port on 127.0.0.1 in ${from}-${from + 99} for the lab's PostgreSQL`);
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function postgresIds(): [number, number] {
  return [Number(run('id', ['-u', OWNER]).trim()), Number(run('id', ['-g', OWNER]).trim())];
}

function ensureCluster(paths: LabLayout): void {
  const pg = paths.postgres;
  for (const dir of [pg.data, pg.socketDir]) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chownSync(dir, ...postgresIds());
  }
  if (existsSync(join(pg.data, 'PG_VERSION'))) return;
  // UTF8 is what PuppetDB requires; peer auth on the socket for the lab's own psql calls,
  // passwords over TCP for PuppetDB.
  asPostgres('initdb', ['-D', pg.data, '-U', OWNER, '--encoding=UTF8', '--locale=C', '--auth-local=peer', '--auth-host=scram-sha-256']);
}

export function isPostgresRunning(paths: LabLayout): boolean {
  try {
    asPostgres('pg_ctl', ['status', '-D', paths.postgres.data]);
    return true;
  } catch {
    return false;
  }
}

/** The postmaster's pid, from its own pid file. */
export function postgresPid(paths: LabLayout): number | null {
  if (!isPostgresRunning(paths)) return null;
  const pidLine = readFileSync(join(paths.postgres.data, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '';
  return Number.parseInt(pidLine, 10) || null;
}

export function startPostgres(paths: LabLayout, port: number): void {
  ensureCluster(paths);
  if (isPostgresRunning(paths)) return;
  // The postmaster writes its log itself, as postgres.
  const log = join(paths.logs, 'postgres.log');
  mkdirSync(paths.logs, { recursive: true });
  if (!existsSync(log)) writeFileSync(log, '');
  chownSync(log, ...postgresIds());
  const options = `-c listen_addresses=127.0.0.1 -p ${port} -k ${paths.postgres.socketDir}`;
  // pg_ctl daemonizes the postmaster (its own session) and waits until it accepts connections.
  asPostgres('pg_ctl', ['start', '-w', '-D', paths.postgres.data, '-l', log, '-o', options]);
}

export function stopPostgres(paths: LabLayout): boolean {
  if (!existsSync(join(paths.postgres.data, 'PG_VERSION')) || !isPostgresRunning(paths)) return false;
  asPostgres('pg_ctl', ['stop', '-w', '-m', 'fast', '-D', paths.postgres.data]);
  return true;
}

/** Role, database and extension for PuppetDB; safe to repeat. */
export function provisionPuppetDb(paths: LabLayout, port: number, password: string): void {
  const psql = (database: string, sql: string) =>
    asPostgres('psql', ['-h', paths.postgres.socketDir, '-p', String(port), '-d', database, '-v', 'ON_ERROR_STOP=1', '-q'], sql);
  const quoted = password.replaceAll("'", "''");
  psql(
    'postgres',
    `SELECT 'CREATE ROLE puppetdb LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'puppetdb')\\gexec
ALTER ROLE puppetdb WITH LOGIN PASSWORD '${quoted}';
SELECT 'CREATE DATABASE puppetdb OWNER puppetdb ENCODING ''UTF8'' TEMPLATE template0' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'puppetdb')\\gexec
`,
  );
  psql('puppetdb', 'CREATE EXTENSION IF NOT EXISTS pg_trgm;\n');
}
