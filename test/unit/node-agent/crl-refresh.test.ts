import { chmod, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PuppetUnavailableError, RefusedInputError } from '../../../lib/errors';
import type { CrlResult } from '../../../lib/puppet';
import { hostCrlPath, isStaleSandbox, nextValidator, pollDelayMs, refreshCrlOnce, runCrlRefresher, shouldReportFailure } from '../../../node-agent/src/crl-refresh';
import { makeTestCa, type TestCa } from '../../support/pki';

type Answer = CrlResult | 'not-modified' | Error;

/** The CA's CRL endpoint: answers in order, and remembers each If-Modified-Since it was sent. */
function fakeCa(...answers: Answer[]) {
  const asked: (string | undefined)[] = [];
  return {
    asked,
    async getCrl(ifModifiedSince?: string) {
      asked.push(ifModifiedSince);
      const answer = answers.shift();
      if (answer === undefined) throw new Error('no more answers');
      if (answer instanceof Error) throw answer;
      return answer;
    },
  };
}

const unavailable = () => new PuppetUnavailableError({ server: 'ca', url: 'https://puppet:8140/puppet-ca/v1/certificate_revocation_list/ca', operation: 'certificate_revocation_list' });

describe('refreshCrlOnce', () => {
  let ca: TestCa;
  let ssldir: string;
  let crlPath: string;
  const crlNumber = (n: number) => ca.crl([], { number: n });
  const answer = async (n: number, lastModified = `validator-${n}`): Promise<CrlResult> => ({ pem: await crlNumber(n), lastModified });

  beforeAll(async () => {
    ca = await makeTestCa('Puppet CA: primary.example.com');
  });
  beforeEach(async () => {
    ssldir = await mkdtemp(join(tmpdir(), 'crl-ssldir-'));
    crlPath = hostCrlPath(ssldir);
  });

  it("replaces a CRL with the CA's newer one, keeping Puppet's mode, leaving no staging file", async () => {
    await writeFile(crlPath, await crlNumber(4));
    await chmod(crlPath, 0o640);
    const next = await answer(5);

    const result = await refreshCrlOnce({ ca: fakeCa(next), pinnedCaPem: ca.cert, crlPath });

    expect(result).toEqual({ outcome: 'installed', reason: 'newer: "CN=Puppet CA: primary.example.com" number 4 → number 5', validator: 'validator-5' });
    expect(await readFile(crlPath, 'utf8')).toBe(next.pem);
    expect((await stat(crlPath)).mode & 0o777).toBe(0o640);
    expect(await readdir(ssldir)).toEqual(['crl.pem']);
  });

  it("never installs an older CRL over a newer one: the CA's answer is refused and the file stays", async () => {
    const current = await crlNumber(9);
    await writeFile(crlPath, current);

    await expect(refreshCrlOnce({ ca: fakeCa(await answer(8)), pinnedCaPem: ca.cert, crlPath })).rejects.toThrow(RefusedInputError);
    expect(await readFile(crlPath, 'utf8')).toBe(current);
  });

  it('refuses a CRL another CA signed', async () => {
    const other = await makeTestCa('Puppet CA: primary.example.com');
    await expect(refreshCrlOnce({ ca: fakeCa({ pem: await other.crl([], { number: 100 }), lastModified: 'x' }), pinnedCaPem: ca.cert, crlPath })).rejects.toThrow(/not signed by the pinned CA/);
    await expect(readFile(crlPath)).rejects.toThrow(/ENOENT/);
  });

  it('installs a first CRL 0644, sends the validator it was given, and leaves the file alone on 304', async () => {
    const first = await answer(1);
    expect(await refreshCrlOnce({ ca: fakeCa(first), pinnedCaPem: ca.cert, crlPath })).toMatchObject({ outcome: 'installed', reason: 'no CRL is installed' });
    expect((await stat(crlPath)).mode & 0o777).toBe(0o644);

    const notModified = fakeCa('not-modified');
    expect(await refreshCrlOnce({ ca: notModified, pinnedCaPem: ca.cert, crlPath }, 'validator-1')).toEqual({ outcome: 'not-modified' });
    expect(notModified.asked).toEqual(['validator-1']);

    expect(await refreshCrlOnce({ ca: fakeCa(first), pinnedCaPem: ca.cert, crlPath })).toEqual({ outcome: 'unchanged', validator: 'validator-1' });
  });

  it('does not ask the CA before enrollment has made the ssldir', async () => {
    const idle = fakeCa();
    expect(await refreshCrlOnce({ ca: idle, pinnedCaPem: ca.cert, crlPath: hostCrlPath(join(ssldir, 'not-yet')) })).toEqual({ outcome: 'no-ssldir' });
    expect(idle.asked).toEqual([]);
  });
});

describe('runCrlRefresher', () => {
  it('survives a CA that does not answer (one warning per outage), then installs, keeps polling and stops when told', async () => {
    const ca = await makeTestCa();
    const ssldir = await mkdtemp(join(tmpdir(), 'crl-loop-'));
    const crlPath = hostCrlPath(ssldir);
    await writeFile(crlPath, await ca.crl([], { number: 1 }));
    const newer = { pem: await ca.crl(['0a'], { number: 2 }), lastModified: 'Fri, 27 Nov 2026 12:00:00 GMT' };
    const api = fakeCa(unavailable(), unavailable(), unavailable(), newer, 'not-modified');
    const lines: Record<string, unknown>[] = [];
    const sink = (level: string) => (message: string, fields: Record<string, unknown> = {}) => lines.push({ level, message, ...fields });
    const stop = new AbortController();
    const delays: number[] = [];

    await runCrlRefresher({
      ca: api,
      pinnedCaPem: ca.cert,
      crlPath,
      intervalMs: 15_000,
      signal: stop.signal,
      log: { info: sink('info'), warn: sink('warn'), error: sink('error') },
      random: () => 0.5,
      sleep: async (ms) => {
        delays.push(ms);
        if (delays.length === 5) stop.abort();
      },
    });

    expect(await readFile(crlPath, 'utf8')).toBe(newer.pem);
    expect(api.asked).toEqual([undefined, undefined, undefined, undefined, newer.lastModified]);
    expect(delays).toEqual([13_500, 13_500, 13_500, 13_500, 13_500]);
    expect(lines.map((line) => `${String(line.level)}: ${String(line.message)}`)).toEqual([
      'info: refreshing the CRL from the CA',
      'warn: could not refresh the CRL; the installed one stays in force, retrying',
      'info: the CRL is refreshed again',
      "info: installed the CA's newer CRL",
    ]);
  });
});

describe('refresher arithmetic', () => {
  it('polls within the interval, jittered down by at most a fifth', () => {
    expect(pollDelayMs(15_000, 0)).toBe(12_000);
    expect(pollDelayMs(15_000, 0.999_999)).toBe(15_000);
  });

  it('reports the first failure of an outage and then every 20th', () => {
    expect([1, 2, 19, 20, 21, 40].map(shouldReportFailure)).toEqual([true, false, false, true, false, true]);
  });

  it("keeps the CA's validator only while the installed file equals its CRL", () => {
    expect(nextValidator({ outcome: 'not-modified' }, 'v1')).toBe('v1');
    expect(nextValidator({ outcome: 'installed', validator: 'v2' }, 'v1')).toBe('v2');
    expect(nextValidator({ outcome: 'unchanged', validator: undefined }, 'v1')).toBeUndefined();
    expect(nextValidator({ outcome: 'no-ssldir' }, 'v1')).toBeUndefined();
  });

  it('ends the process only for a read-only ssldir, which a restart fixes', () => {
    expect(isStaleSandbox(Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' }))).toBe(true);
    expect(isStaleSandbox(Object.assign(new Error('EACCES'), { code: 'EACCES' }))).toBe(false);
    expect(isStaleSandbox(unavailable())).toBe(false);
  });
});
