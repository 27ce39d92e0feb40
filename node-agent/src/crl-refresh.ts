import { randomUUID } from 'node:crypto';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleepFor } from 'node:timers/promises';
import { CompileMastersError, RefusedInputError } from '../../lib/errors';
import type { CaClient } from '../../lib/puppet';
import { decideCrlInstall, inspectCrlBundle, type CrlBundle } from './crl';
import type { Logger } from './log';

/**
 * The CRL refresher: a purged compile master's certificate must be refused by every other compile
 * master within a minute. Each compile master's Puppet Server checks clients against Puppet's
 * hostcrl, which Puppet 7 fetches once at enrollment and never again, but reloads the file when
 * it changes (Puppet Server 5.1+). So this keeps that file equal to the CA's CRL.
 *
 * It runs as a long-running service (compile-master-crl-refresh.service) rather than a timer:
 * - the budget is 60 s from revocation to refusal, so it polls every 15 s; a timer would start
 *   Node.js and load the bundle four times a minute (~0.5 s of CPU each, plus a new TLS handshake
 *   with the CA), where one process keeps its connection and mostly sleeps (measured against the
 *   lab CA: ~0.02 s of CPU a minute, 75 MB resident);
 * - a poll is cheap because of If-Modified-Since, and the date it sends must come from the CA's
 *   clock (Puppet Server sends no Last-Modified, so the client derives it from the answer's Date):
 *   kept in memory it needs no state file, and the node's own clock (a file's mtime) would let a
 *   clock skew hide a revocation behind a 304;
 * - a CA that does not answer only costs a logged failure and the next poll; systemd restarts
 *   the process if it dies.
 */

/** Puppet's hostcrl default, which a compile master's webserver.conf names as ssl-crl-path. */
export function hostCrlPath(ssldir: string): string {
  return join(ssldir, 'crl.pem');
}

export interface CrlRefreshDeps {
  /** Only the CA's unauthenticated CRL endpoint. */
  ca: Pick<CaClient, 'getCrl'>;
  /** The pinned CA bundle: every CRL installed must be signed by one of its certificates. */
  pinnedCaPem: string;
  crlPath: string;
}

export type RefreshResult =
  | { outcome: 'not-modified' }
  | { outcome: 'no-ssldir' }
  | { outcome: 'unchanged' | 'installed'; reason?: string; validator: string | undefined };

/**
 * One poll: ask the CA whether its CRL changed since `validator`, check what it sends against the
 * pinned CA and the installed CRL, and replace the installed file only when the check allows it.
 * A refused CRL throws, leaving the installed one in force.
 */
export async function refreshCrlOnce(deps: CrlRefreshDeps, validator?: string): Promise<RefreshResult> {
  // Before enrollment there is no ssldir, and Puppet creates it with its own modes: wait for it.
  if (!(await isDirectory(dirname(deps.crlPath)))) return { outcome: 'no-ssldir' };
  const answer = await deps.ca.getCrl(validator);
  if (answer === 'not-modified') return { outcome: 'not-modified' };
  const [fetched, installed] = await Promise.all([inspectCrlBundle(answer.pem, deps.pinnedCaPem), readInstalled(deps.crlPath, deps.pinnedCaPem)]);
  const decision = decideCrlInstall(fetched, installed);
  if (decision.kind === 'refuse') {
    throw new RefusedInputError(`Refused the CA's CRL: ${decision.reason}`, { hint: `the installed ${deps.crlPath} stays in force; check the CA's CRL and the pinned CA certificate` });
  }
  if (decision.kind === 'unchanged') return { outcome: 'unchanged', validator: answer.lastModified };
  await replaceFile(deps.crlPath, answer.pem);
  return { outcome: 'installed', reason: decision.reason, validator: answer.lastModified };
}

/**
 * What to send as If-Modified-Since next: the CA's validator once the installed file equals its
 * CRL; none while there is no ssldir, so the next one's CRL is checked in full.
 */
export function nextValidator(result: RefreshResult, previous: string | undefined): string | undefined {
  if (result.outcome === 'not-modified') return previous;
  if (result.outcome === 'no-ssldir') return undefined;
  return result.validator;
}

/** Every poll within the interval, jittered down by up to a fifth so a tier does not poll in step. */
export function pollDelayMs(intervalMs: number, random: number): number {
  return Math.round(intervalMs * (0.8 + 0.2 * random));
}

/** First failure of a streak, then every 20th (~5 min at 15 s): an outage is seen, not spammed. */
export function shouldReportFailure(failures: number): boolean {
  return failures === 1 || failures % 20 === 0;
}

export interface CrlRefresherOptions extends CrlRefreshDeps {
  intervalMs: number;
  /** Ends the loop after the poll in progress (SIGTERM on an instance). */
  signal: AbortSignal;
  log: Logger;
  /** Resolves after `ms` or as soon as `signal` aborts. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  random?: () => number;
}

export async function runCrlRefresher(options: CrlRefresherOptions): Promise<void> {
  const { log, signal } = options;
  const sleep = options.sleep ?? abortableSleep;
  const random = options.random ?? Math.random;
  let validator: string | undefined;
  let previous: RefreshResult['outcome'] | undefined;
  let failures = 0;
  log.info('refreshing the CRL from the CA', { crlPath: options.crlPath, intervalSeconds: options.intervalMs / 1000 });
  while (!signal.aborted) {
    try {
      const result = await refreshCrlOnce(options, validator);
      if (failures > 0) log.info('the CRL is refreshed again', { failedPolls: failures });
      failures = 0;
      validator = nextValidator(result, validator);
      if (result.outcome === 'installed') log.info('installed the CA\'s newer CRL', { crlPath: options.crlPath, reason: result.reason });
      else if (result.outcome !== previous && result.outcome !== 'not-modified') log.info(OUTCOME_MESSAGES[result.outcome], { crlPath: options.crlPath });
      previous = result.outcome;
    } catch (error) {
      if (isStaleSandbox(error)) {
        throw new CompileMastersError(`Cannot write ${options.crlPath}: this service's view of the ssldir is read-only`, {
          cause: error,
          hint: 'the ssldir was replaced (a re-enrollment) after the service started, so its sandbox still binds the old one writable; systemd restarts the service with the new one',
        });
      }
      failures += 1;
      previous = undefined;
      if (shouldReportFailure(failures)) log.warn('could not refresh the CRL; the installed one stays in force, retrying', { error, failedPolls: failures });
    }
    await sleep(pollDelayMs(options.intervalMs, random()), signal);
  }
}

/**
 * EROFS: systemd bound the ssldir writable when the service started; once the boot step replaces
 * the ssldir (re-enrollment), the path in this sandbox is the read-only file system underneath.
 * Only a restart binds the new one, so this ends the process instead of retrying.
 */
export function isStaleSandbox(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'EROFS';
}

const OUTCOME_MESSAGES = {
  'no-ssldir': 'no ssldir yet (not enrolled): waiting for it',
  unchanged: 'the installed CRL is the CA\'s current one',
} as const;

async function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleepFor(ms, undefined, { signal });
  } catch (error) {
    if (!signal.aborted) throw error;
  }
}

/** The installed CRL as the decision sees it; undefined when there is no file. */
async function readInstalled(path: string, pinnedCaPem: string): Promise<CrlBundle | undefined> {
  try {
    return await inspectCrlBundle(await readFile(path, 'utf8'), pinnedCaPem);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Writes beside the target and renames over it, so Puppet Server's file watch only ever sees a
 * whole CRL, with Puppet's owner and mode (the server runs as the puppet user and must read it).
 */
export async function replaceFile(path: string, content: string): Promise<void> {
  const { uid, gid, mode } = await ownership(path);
  const staging = join(dirname(path), `.${basename(path)}.${randomUUID()}.tmp`);
  try {
    const handle = await open(staging, 'wx', 0o600);
    try {
      await handle.writeFile(content);
      // chmod before chown: once the file is the puppet user's, changing its mode would need CAP_FOWNER.
      await handle.chmod(mode);
      await handle.chown(uid, gid);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(staging, path);
  } catch (error) {
    await rm(staging, { force: true });
    throw error;
  }
}

/** The installed file's owner and mode; for a first CRL, the ssldir's owner and Puppet's 0644. */
async function ownership(path: string): Promise<{ uid: number; gid: number; mode: number }> {
  try {
    const current = await stat(path);
    return { uid: current.uid, gid: current.gid, mode: current.mode & 0o7777 };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    const directory = await stat(dirname(path));
    return { uid: directory.uid, gid: directory.gid, mode: 0o644 };
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
