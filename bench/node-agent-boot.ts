/**
 * How much the node agent costs a compile master at every boot when there is nothing to do: the
 * bundled agent (dist/node-agent/node-agent.mjs) in a fresh `node` process, with a certificate the
 * lab's CA still serves. Wall time and peak RSS per run; the last stdout line is the JSON summary.
 *
 *   npm run bench:node-agent [-- --runs 10]
 *
 * Needs the Puppet lab (`npm run lab:puppet -- up`). IMDS is the test double; SQS is a local HTTPS
 * fake (the SDK sends to the queue URL's host, so the queue URL names it), trusted through
 * NODE_EXTRA_CA_CERTS. Nothing leaves this machine.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { labClients } from '../lab/clients';
import { startImdsDouble } from '../lab/imds-double';
import { loadLab, uniqueCertname } from '../lab/running-lab';
import { makeTestCa } from '../test/support/pki';

const BUNDLE = 'dist/node-agent/node-agent.mjs';
// Reports the agent process's own peak RSS (kB) on fd 3 as it exits, whatever makes it exit.
const RSS_PROBE =
  "data:text/javascript,import{writeSync}from'node:fs';process.on('exit',()=>{try{writeSync(3,String(process.resourceUsage().maxRSS))}catch{}});";

const { values } = parseArgs({ options: { runs: { type: 'string', default: '10' } } });
const runs = Number(values.runs);

function exec(command: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  return new Promise<{ code: number | null; stdout: string; stderr: string; fd3: string; ms: number }>((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    const chunks = { stdout: '', stderr: '', fd3: '' };
    child.stdout?.on('data', (data: Buffer) => (chunks.stdout += data));
    child.stderr?.on('data', (data: Buffer) => (chunks.stderr += data));
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (data: Buffer) => (chunks.fd3 += data));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, ...chunks, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
  });
}

async function main() {
  const build = await exec(process.execPath, ['scripts/build-node-agent.mjs']);
  if (build.code !== 0) throw new Error(`build failed: ${build.stderr}`);
  const bundleBytes = (await stat(BUNDLE)).size;

  const lab = loadLab();
  const clients = labClients({ lab });
  const certname = uniqueCertname('ip-10-0-2');
  const instanceId = `i-${randomBytes(8).toString('hex')}`;
  const imds = await startImdsDouble({ instanceId, region: 'eu-west-1', localHostname: certname });
  const root = await mkdtemp(join(tmpdir(), 'node-agent-bench-'));

  // SQS over the AWS JSON protocol, as the SDK speaks it; signing the CSR stands in for the controller.
  const tlsCa = await makeTestCa('bench SQS CA');
  const tls = await tlsCa.issue({ commonName: '127.0.0.1', ips: ['127.0.0.1'] });
  await writeFile(join(root, 'sqs-ca.pem'), tlsCa.cert);
  const events: string[] = [];
  const sqs = createServer({ cert: tls.cert, key: tls.key }, (request, response) => {
    let body = '';
    request.on('data', (data: Buffer) => (body += data));
    request.on('end', () => {
      const messageBody = (JSON.parse(body) as { MessageBody: string }).MessageBody;
      const event = (JSON.parse(messageBody) as { event: string }).event;
      events.push(event);
      if (event === 'csr-submitted') setTimeout(() => void clients.ca.sign(certname), 200);
      response.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
      response.end(JSON.stringify({ MessageId: String(events.length), MD5OfMessageBody: createHash('md5').update(messageBody).digest('hex') }));
    });
  });
  await new Promise<void>((resolve) => sqs.listen(0, '127.0.0.1', resolve));
  const queueUrl = `https://127.0.0.1:${(sqs.address() as AddressInfo).port}/123456789012/compile-masters-lifecycle`;

  const confdir = join(root, 'puppet');
  await mkdir(confdir, { recursive: true });
  await writeFile(join(confdir, 'puppet.conf'), `[main]\nvardir = ${root}/var\nlogdir = ${root}/log\nrundir = ${root}/run\n`);
  const configPath = join(root, 'agent.json');
  await writeFile(
    configPath,
    JSON.stringify({
      primaryServer: 'localhost',
      caCertPath: lab.caCertPath,
      queueUrl,
      region: 'eu-west-1',
      extensions: { pp_role: 'compile_master' },
      dnsAltNames: ['compile-masters-nlb.lab.test'],
      puppetBin: lab.puppetBin,
      confdir,
      ssldir: join(confdir, 'ssl'),
      localServerHost: 'localhost',
      localServerService: null,
      isolatePuppetRun: false,
      backupDir: join(root, 'backups'),
      timeouts: { certificateSeconds: 120 },
    }),
  );
  const env = {
    PATH: process.env.PATH,
    AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url,
    AWS_ENDPOINT_URL_SQS: queueUrl,
    AWS_ACCESS_KEY_ID: 'AKIABENCHMARK0000000',
    AWS_SECRET_ACCESS_KEY: 'bench-only-not-a-secret',
    NODE_EXTRA_CA_CERTS: join(root, 'sqs-ca.pem'),
  };
  const agent = (probe: boolean) => exec(process.execPath, [...(probe ? ['--import', RSS_PROBE] : []), BUNDLE, 'boot', '--config', configPath], env);

  try {
    const enrollment = await agent(false);
    if (enrollment.code !== 0) throw new Error(`enrollment failed (exit ${enrollment.code}):\n${enrollment.stdout}${enrollment.stderr}`);
    process.stderr.write(`enrolled ${certname} in ${(enrollment.ms / 1000).toFixed(1)} s\n`);

    const samples: { ms: number; rssKiB: number }[] = [];
    for (let run = 0; run < runs; run++) {
      events.length = 0;
      const boot = await agent(true);
      if (boot.code !== 0 || !boot.stdout.includes('"plan":"keep"') || events.join() !== 'booted') {
        throw new Error(`run ${run}: expected a quiet "keep" boot, got exit ${boot.code}, events ${events.join()}:\n${boot.stdout}${boot.stderr}`);
      }
      samples.push({ ms: boot.ms, rssKiB: Number(boot.fd3) });
      process.stderr.write(`run ${run + 1}/${runs}: ${boot.ms.toFixed(0)} ms, peak RSS ${(Number(boot.fd3) / 1024).toFixed(1)} MiB\n`);
    }
    const ms = samples.map((sample) => sample.ms).sort((a, b) => a - b);
    const rss = samples.map((sample) => sample.rssKiB / 1024).sort((a, b) => a - b);
    const at = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
    const round = (value: number) => Math.round(value * 10) / 10;
    console.log(
      JSON.stringify({
        bench: 'node-agent-boot',
        scenario: 'boot step, certificate still valid (nothing to do)',
        runs,
        node: process.version,
        bundleBytes,
        wallMs: { min: round(at(ms, 0)), median: round(at(ms, 0.5)), p90: round(at(ms, 0.9)), max: round(at(ms, 1)) },
        peakRssMiB: { median: round(at(rss, 0.5)), max: round(at(rss, 1)) },
      }),
    );
  } finally {
    await clients.ca.clean([certname]).catch(() => undefined);
    await Promise.all([clients.close(), imds.close(), new Promise((resolve) => sqs.close(resolve))]);
    await rm(root, { recursive: true, force: true });
  }
}

await main();
