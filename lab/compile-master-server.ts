/**
 * A compile master's Puppet Server for the lab: Debian's puppetserver 7.9.5 with the CA service
 * disabled (`certificate-authority-disabled-service`, as on a PE compiler), its own certificate
 * signed by the lab CA over the CA API, and TLS configured the way a compile master's is: the
 * server certificate, the CA bundle and the CRL file named explicitly in webserver.conf, the CRL
 * being Puppet's hostcrl (`<ssldir>/crl.pem`), which Puppet Server reloads when it changes.
 *
 * Each server has its own directory (`<lab dir>/compile-masters/<certname>/`), pid file and log,
 * and listens on 127.0.0.1 only; the lab's own servers are neither read from nor touched beyond
 * the CA API. Callers sharing the machine take the lab lock around start and stop (./lock.ts).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { CaClient } from '../lib/puppet';
import { consoleLogback } from './configs';
import { labDir } from './description';
import { ENVIRONMENT, layout, PORTS, PRIMARY_CERTNAME, type LabLayout } from './layout';
import { run, runningPid, startDetached, stopProcess } from './processes';
import { puppetServerProcess } from './puppetserver-process';

const DISTRO_PUPPETSERVER = '/etc/puppet/puppetserver';
const STARTUP_TIMEOUT_MS = 300_000;
const PROCESS_NAME = 'puppetserver';

export interface CompileMasterServerOptions {
  certname: string;
  /** 127.0.0.1:port; not the lab CA's 8140. */
  port: number;
  /** A compile master needs less than the CA: no CA service, one JRuby. */
  heap?: string;
  /** Defaults to the lab's (PUPPET_LAB_DIR or /var/tmp/compile-masters-lab). */
  labDirectory?: string;
}

export interface CompileMasterServer {
  certname: string;
  port: number;
  /** https://localhost:<port>; the certificate carries localhost and 127.0.0.1. */
  url: string;
  pid: number;
  paths: CompileMasterLayout;
  /** The server's pid while it runs (the same as `pid` unless it was restarted), else null. */
  currentPid(): number | null;
  /** Stops the server (its process group) and waits for it to be gone. */
  stop(): Promise<void>;
}

export function compileMasterLayout(labDirectory: string, certname: string) {
  const root = join(labDirectory, 'compile-masters', certname);
  const ssldir = join(root, 'ssl');
  return {
    root,
    run: join(root, 'run'),
    logs: join(root, 'logs'),
    log: join(root, 'logs', `${PROCESS_NAME}.log`),
    tkConfig: join(root, 'conf.d'),
    tkBootstrap: join(root, 'services.d'),
    logback: join(root, 'logback.xml'),
    confdir: join(root, 'puppet'),
    puppetConf: join(root, 'puppet', 'puppet.conf'),
    /** Lets `puppetserver ca generate` sign with the primary's credentials into this ssldir. */
    issuerConf: join(root, 'issuer.conf'),
    codedir: join(root, 'code'),
    vardir: join(root, 'var'),
    rundir: join(root, 'run', 'puppet'),
    logdir: join(root, 'log'),
    gemHome: join(root, 'jruby-gems'),
    ssldir,
    hostCert: join(ssldir, 'certs', `${certname}.pem`),
    hostKey: join(ssldir, 'private_keys', `${certname}.pem`),
    caCert: join(ssldir, 'certs', 'ca.pem'),
    /** Puppet's hostcrl: what the node agent's CRL refresher keeps current. */
    hostCrl: join(ssldir, 'crl.pem'),
  };
}

export type CompileMasterLayout = ReturnType<typeof compileMasterLayout>;

/**
 * Starts the server (or finds it running) and waits until it answers healthy. The first start
 * issues its certificate and installs the CA's current CRL, as enrollment does; a later start
 * keeps both, so a CRL left stale on purpose stays stale.
 */
export async function startCompileMasterServer(options: CompileMasterServerOptions): Promise<CompileMasterServer> {
  if (options.port === PORTS.puppetserver) throw new Error(`port ${options.port} is the lab CA's; pick another`);
  const lab = layout(options.labDirectory ?? labDir());
  const paths = compileMasterLayout(lab.dir, options.certname);
  const caPem = readFileSync(lab.server.caCert, 'utf8');
  let pid = runningPid(paths.run, PROCESS_NAME, paths.root);
  if (pid === null) {
    if (await listening(options.port)) throw new Error(`something already listens on 127.0.0.1:${options.port}: pick another port`);
    writeServerConfig(paths, options.certname, options.port);
    writeIssuerConfig(paths, lab);
    await enroll(paths, options.certname, caPem);
    pid = startDetached(paths.run, paths.logs, puppetServerProcess({ name: PROCESS_NAME, tkConfig: paths.tkConfig, tkBootstrap: paths.tkBootstrap, logsDir: paths.logs, heap: options.heap ?? '-Xmx512m' }));
  }
  const stop = async () => {
    await stopProcess(paths.run, PROCESS_NAME, paths.root);
  };
  try {
    await waitHealthy(paths, options.port, caPem);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    certname: options.certname,
    port: options.port,
    url: `https://localhost:${options.port}`,
    pid,
    paths,
    currentPid: () => runningPid(paths.run, PROCESS_NAME, paths.root),
    stop,
  };
}

function write(path: string, content: string, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content, { mode });
}

function writeServerConfig(paths: CompileMasterLayout, certname: string, port: number): void {
  const conf = (name: string, content: string) => write(join(paths.tkConfig, name), content);
  mkdirSync(paths.tkConfig, { recursive: true });
  for (const name of ['web-routes.conf', 'metrics.conf', 'auth.conf']) copyFileSync(join(DISTRO_PUPPETSERVER, 'conf.d', name), join(paths.tkConfig, name));
  mkdirSync(paths.tkBootstrap, { recursive: true });
  copyFileSync(join(DISTRO_PUPPETSERVER, 'services.d', 'bootstrap.cfg'), join(paths.tkBootstrap, 'bootstrap.cfg'));
  // The distro's ca.cfg with the CA swapped for its disabled stand-in, as on a compile master.
  // The filesystem watch service stays: it is what reloads the CRL file when it changes.
  write(
    join(paths.tkBootstrap, 'ca.cfg'),
    'puppetlabs.services.ca.certificate-authority-disabled-service/certificate-authority-disabled-service\npuppetlabs.trapperkeeper.services.watcher.filesystem-watch-service/filesystem-watch-service\n',
  );
  write(paths.logback, consoleLogback());
  conf('global.conf', `global: { logging-config: "${paths.logback}" }\n`);
  // Named explicitly, as PE does on compilers: the CRL Jetty checks clients against is hostcrl.
  conf(
    'webserver.conf',
    `webserver: {
  client-auth: want
  ssl-host: 127.0.0.1
  ssl-port: ${port}
  ssl-cert: "${paths.hostCert}"
  ssl-key: "${paths.hostKey}"
  ssl-ca-cert: "${paths.caCert}"
  ssl-crl-path: "${paths.hostCrl}"
}
`,
  );
  conf(
    'puppetserver.conf',
    `jruby-puppet: {
  ruby-load-path: [/usr/lib/puppetserver/ruby/vendor_ruby]
  gem-home: "${paths.gemHome}"
  gem-path: ["${paths.gemHome}", /usr/lib/puppetserver/vendored-jruby-gems]
  server-conf-dir: "${paths.confdir}"
  server-code-dir: "${paths.codedir}"
  server-var-dir: "${paths.vardir}"
  server-run-dir: "${paths.rundir}"
  server-log-dir: "${paths.logdir}"
  max-active-instances: 1
}
http-client: {}
profiler: { enabled: false }
dropsonde: { enabled: false }
product: { check-for-updates: false }
`,
  );
  write(
    paths.puppetConf,
    `[main]
certname = ${certname}
server = localhost
serverport = ${PORTS.puppetserver}
ca_server = localhost
ca_port = ${PORTS.puppetserver}
ssldir = ${paths.ssldir}
vardir = ${paths.vardir}
rundir = ${paths.rundir}
logdir = ${paths.logdir}
codedir = ${paths.codedir}
`,
  );
  write(join(paths.codedir, 'environments', ENVIRONMENT, 'manifests', 'site.pp'), 'node default {\n}\n');
}

/**
 * `puppetserver ca generate` signs over the CA API with the primary's certificate (it carries
 * pp_cli_auth) but writes the new key and certificate into this server's ssldir.
 */
function writeIssuerConfig(paths: CompileMasterLayout, lab: LabLayout): void {
  write(
    paths.issuerConf,
    `[main]
certname = ${PRIMARY_CERTNAME}
server = localhost
serverport = ${PORTS.puppetserver}
ssldir = ${paths.ssldir}
hostcert = ${lab.server.hostCert}
hostprivkey = ${lab.server.hostKey}
localcacert = ${lab.server.caCert}
hostcrl = ${lab.server.hostCrl}
keylength = 2048
`,
  );
}

/** What enrollment leaves in a compile master's ssldir: its certificate and key, the CA bundle, the CRL of that moment. */
async function enroll(paths: CompileMasterLayout, certname: string, caPem: string): Promise<void> {
  if (!existsSync(paths.hostCert)) {
    run('/usr/bin/puppetserver', ['ca', 'generate', '--certname', certname, '--subject-alt-names', 'localhost,IP:127.0.0.1', '--config', paths.issuerConf]);
  }
  write(paths.caCert, caPem);
  if (existsSync(paths.hostCrl)) return;
  const ca = new CaClient({ baseUrl: `https://localhost:${PORTS.puppetserver}`, tls: { ca: caPem } });
  try {
    const crl = await ca.getCrl();
    if (crl === 'not-modified') throw new Error('the lab CA answered 304 to a CRL request without If-Modified-Since');
    write(paths.hostCrl, crl.pem);
  } finally {
    await ca.close();
  }
}

/** Whether anything accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.setTimeout(2_000);
    const done = (answer: boolean) => {
      socket.destroy();
      resolve(answer);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

/** The body of /status/v1/simple, or null when nothing answers (yet). */
async function simpleStatus(port: number, caPem: string): Promise<string | null> {
  const dispatcher = new Agent({ connect: { ca: caPem, timeout: 2_000 }, headersTimeout: 5_000, bodyTimeout: 5_000 });
  try {
    const response = await request(`https://localhost:${port}/status/v1/simple`, { dispatcher });
    return (await response.body.text()).trim();
  } catch {
    return null;
  } finally {
    await dispatcher.close();
  }
}

async function waitHealthy(paths: CompileMasterLayout, port: number, caPem: string): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while ((await simpleStatus(port, caPem)) !== 'running') {
    if (runningPid(paths.run, PROCESS_NAME, paths.root) === null) throw new Error(`the compile master's Puppet Server exited during start-up:\n${logTail(paths.log)}`);
    if (Date.now() > deadline) throw new Error(`the compile master's Puppet Server is not healthy after ${STARTUP_TIMEOUT_MS / 1000} s:\n${logTail(paths.log)}`);
    await sleep(1_000);
  }
}

function logTail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Deletes a stopped server's directory (its key included). */
export function removeCompileMasterServer(paths: CompileMasterLayout): void {
  if (runningPid(paths.run, PROCESS_NAME, paths.root) !== null) throw new Error(`the compile master's Puppet Server in ${paths.root} is still running`);
  rmSync(paths.root, { recursive: true, force: true });
}
