import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PRIMARY_CERTNAME, PORTS, PUPPET_BIN } from '../layout';
import { loadLab, type LabDescription } from '../running-lab';
import type { AgentIdentity } from './agent-run';
import type { RequestRecord } from './records';

export interface RealAgentOptions {
  /** The agent's identity, signed by the lab CA (see enrollAgents). */
  identity: Pick<AgentIdentity, 'certname' | 'certPem' | 'keyPem'>;
  /** The name the agent knows its server by (the load balancer's), and where that name points. */
  serverName: string;
  address: string;
  port: number;
  /** The agent's own confdir, ssldir and vardir go here. */
  workDir: string;
  /** ca_server; its name resolves to 127.0.0.1, where the lab primary listens. */
  caServer?: string;
  caPort?: number;
  environment?: string;
  timeoutMs?: number;
  lab?: LabDescription;
}

export interface RealAgentResult {
  /** `puppet agent --test` exit code (detailed exit codes: 0 no change, 2 changes, 4/6 failures, 1 failed run). */
  exitCode: number | null;
  ok: boolean;
  durationMs: number;
  /** The run's transaction_uuid, from the agent's last_run_report.yaml: its report in PuppetDB carries it. */
  transactionUuid?: string;
  /** The agent's output (stdout and stderr), also in <workDir>/agent.log. */
  output: string;
  record: RequestRecord;
}

/** The private hosts file: localhost as usual, plus the names this agent must resolve. */
function hostsFile(entries: [string, string][]): string {
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
  for (const [address, name] of entries) lines.push(`${address}\t${name}`);
  return `${lines.join('\n')}\n`;
}

/**
 * One real `puppet agent --test` (Debian's puppet-agent 7.23) against `serverName`, which
 * resolves to `address` for this process only: it runs in its own mount namespace
 * (`unshare --mount`) with a private hosts file bind-mounted over /etc/hosts, so the host's
 * /etc/hosts is never touched. ca_server is the lab primary. Exit code 0 or 2 is success.
 */
export async function realAgentRun(options: RealAgentOptions): Promise<RealAgentResult> {
  const lab = options.lab ?? loadLab();
  const { certname } = options.identity;
  const environment = options.environment ?? 'production';
  const caServer = options.caServer ?? PRIMARY_CERTNAME;
  const dir = options.workDir;
  const confdir = join(dir, 'conf');
  const ssldir = join(dir, 'ssl');
  const vardir = join(dir, 'var');
  for (const sub of [confdir, join(ssldir, 'certs'), join(ssldir, 'private_keys'), vardir]) mkdirSync(sub, { recursive: true });
  writeFileSync(join(ssldir, 'certs', `${certname}.pem`), options.identity.certPem);
  writeFileSync(join(ssldir, 'private_keys', `${certname}.pem`), options.identity.keyPem, { mode: 0o600 });
  // The CA certificate an agent gets at bootstrap; the CRL it downloads itself from ca_server.
  writeFileSync(join(ssldir, 'certs', 'ca.pem'), readFileSync(lab.caCertPath));
  writeFileSync(
    join(confdir, 'puppet.conf'),
    `[main]
certname = ${certname}
server = ${options.serverName}
serverport = ${options.port}
ca_server = ${caServer}
ca_port = ${options.caPort ?? PORTS.puppetserver}
ssldir = ${ssldir}
vardir = ${vardir}
rundir = ${join(vardir, 'run')}
logdir = ${join(vardir, 'log')}
publicdir = ${join(vardir, 'public')}
codedir = ${join(vardir, 'code')}

[agent]
environment = ${environment}
usecacheonfailure = false
`,
  );
  const hosts = join(dir, 'hosts');
  const entries: [string, string][] = [[options.address, options.serverName]];
  if (caServer !== options.serverName) entries.push(['127.0.0.1', caServer]);
  writeFileSync(hosts, hostsFile(entries));

  const startedAt = Date.now();
  // unshare execs sh, which bind-mounts the hosts file in the new namespace and execs puppet: one
  // process, so a timeout's kill reaches the agent itself.
  const child = spawn(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      'mount --bind "$1" /etc/hosts && shift && exec "$@"',
      'sh',
      hosts,
      PUPPET_BIN,
      'agent',
      '--test',
      '--detailed-exitcodes',
      '--confdir',
      confdir,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: dir } },
  );
  const chunks: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
  const timeout = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 300_000);
  const [exitCode] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timeout);
  const durationMs = Date.now() - startedAt;
  const output = Buffer.concat(chunks).toString('utf8');
  writeFileSync(join(dir, 'agent.log'), output);
  const ok = exitCode === 0 || exitCode === 2;
  let transactionUuid: string | undefined;
  try {
    transactionUuid = transactionUuidOf(readFileSync(join(vardir, 'state', 'last_run_report.yaml'), 'utf8'));
  } catch {
    // No report written: the run failed before it could make one.
  }
  return {
    exitCode,
    ok,
    durationMs,
    ...(transactionUuid ? { transactionUuid } : {}),
    output,
    record: {
      agent: certname,
      runId: transactionUuid ?? `real-${startedAt}`,
      step: 'agent-run',
      request: `puppet agent --test (server ${options.serverName} = ${options.address}:${options.port})`,
      // No exit code: the run was killed at its timeout.
      status: exitCode ?? 'connection-error',
      ...(exitCode === null ? { errorCode: 'TIMEOUT' } : {}),
      ok,
      latencyMs: durationMs,
      startedAt,
    },
  };
}

/**
 * The transaction_uuid of an agent's last_run_report.yaml. Psych quotes a UUID that could read as
 * a number ('0595276a-…'), so the UUID is taken, not the quotes.
 */
export function transactionUuidOf(reportYaml: string): string | undefined {
  return /^\s*transaction_uuid:\s*['"]?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})['"]?\s*$/m.exec(reportYaml)?.[1];
}
