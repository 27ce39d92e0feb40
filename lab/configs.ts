import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { authRule } from '../cli/primary-setup';
import {
  ENVIRONMENT,
  LIFECYCLE_CERTNAME,
  PORTS,
  PRIMARY_CERTNAME,
  URLS,
  type LabLayout,
} from './layout';
import { writePuppetCode } from './puppet-code';

/**
 * Every configuration file the lab's servers read. All of them live in the lab directory; the
 * distro's files under /etc are only read, as templates for what the lab does not change.
 * Rewritten on every `up`, so a change here reaches a running lab after `down` + `up`.
 */
export function writeConfigs(paths: LabLayout, postgresPort: number, databasePassword: string): void {
  writePuppetServerConfig(paths);
  writePrimaryPuppetConfig(paths);
  writeIssuerConfig(paths);
  writePrimaryAgentConfig(paths);
  writePuppetDbConfig(paths, postgresPort, databasePassword);
}

function write(path: string, content: string, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content, { mode });
}

function copy(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
}

const DISTRO_PUPPETSERVER = '/etc/puppet/puppetserver';
const DISTRO_PUPPETDB = '/etc/puppetdb';

export function consoleLogback(): string {
  // Everything goes to stdout, which the lab sends to logs/<service>.log (the distro's logback
  // files write to /var/log).
  return `<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{yyyy-MM-dd'T'HH:mm:ss.SSSXXX} %-5p [%c{2}] %m%n</pattern></encoder>
  </appender>
  <root level="info"><appender-ref ref="STDOUT"/></root>
</configuration>
`;
}

function writePuppetServerConfig(paths: LabLayout): void {
  const s = paths.server;
  const conf = (name: string, content: string) => write(join(s.tkConfig, name), content);
  copy(join(DISTRO_PUPPETSERVER, 'conf.d', 'web-routes.conf'), join(s.tkConfig, 'web-routes.conf'));
  copy(join(DISTRO_PUPPETSERVER, 'conf.d', 'metrics.conf'), join(s.tkConfig, 'metrics.conf'));
  copy(join(DISTRO_PUPPETSERVER, 'services.d', 'bootstrap.cfg'), join(s.tkBootstrap, 'bootstrap.cfg'));
  copy(join(DISTRO_PUPPETSERVER, 'services.d', 'ca.cfg'), join(s.tkBootstrap, 'ca.cfg'));
  write(s.logback, consoleLogback());
  conf('global.conf', `global: { logging-config: "${s.logback}" }\n`);
  // No ssl-* keys: Puppet Server then takes its certificate, key, CA and CRL from puppet.conf.
  conf('webserver.conf', `webserver: {\n  client-auth: want\n  ssl-host: 127.0.0.1\n  ssl-port: ${PORTS.puppetserver}\n}\n`);
  conf(
    'puppetserver.conf',
    `jruby-puppet: {
  ruby-load-path: [/usr/lib/puppetserver/ruby/vendor_ruby]
  gem-home: "${s.gemHome}"
  gem-path: ["${s.gemHome}", /usr/lib/puppetserver/vendored-jruby-gems]
  server-conf-dir: "${s.confdir}"
  server-code-dir: "${s.codedir}"
  server-var-dir: "${s.vardir}"
  server-run-dir: "${s.rundir}"
  server-log-dir: "${s.logdir}"
  # One JRuby keeps the heap and the start-up short; the CA API does not use JRuby at all.
  max-active-instances: 1
}
http-client: {}
profiler: { enabled: false }
# No phoning home from a lab.
dropsonde: { enabled: false }
product: { check-for-updates: false }
`,
  );
  conf(
    'ca.conf',
    `certificate-authority: {
  # Compile masters ask for the load balancer's name; without this a CSR with alt names gets 409.
  allow-subject-alt-names: true
  # CSRs carry pp_auth_role (authorization arc).
  allow-authorization-extensions: true
}
`,
  );
  conf('auth.conf', authConfWithLifecycleRule(readFileSync(join(DISTRO_PUPPETSERVER, 'conf.d', 'auth.conf'), 'utf8')));
  writePuppetCode(paths);
}

/**
 * The distro's default rules, plus one that lets the lifecycle controller's certificate manage
 * certificates. Its sort-order (< 500) puts it before the defaults, and since the first matching
 * rule decides, it must also keep allowing what the default rule allowed (certificates carrying
 * pp_cli_auth, i.e. the primary's own, which `puppetserver ca` uses).
 */
export function authConfWithLifecycleRule(distroAuthConf: string): string {
  const anchor = /rules:\s*\[/;
  if (!anchor.test(distroAuthConf)) throw new Error('unexpected auth.conf from the puppetserver package: no "rules: [" found');
  // The very rule `compile-masters primary-setup` gives operators, so the lab proves it works.
  const rule = `\n${authRule(LIFECYCLE_CERTNAME)}`;
  return distroAuthConf.replace(anchor, (match) => `${match}${rule}`);
}

/** puppet.conf of the primary (read by Puppet Server's JRuby and by `puppetserver ca`). */
function writePrimaryPuppetConfig(paths: LabLayout): void {
  const s = paths.server;
  write(
    s.puppetConf,
    `[main]
certname = ${PRIMARY_CERTNAME}
server = localhost
serverport = ${PORTS.puppetserver}
ssldir = ${s.ssldir}
vardir = ${s.vardir}
rundir = ${s.rundir}
logdir = ${s.logdir}
codedir = ${s.codedir}
keylength = 2048

[server]
cadir = ${s.cadir}
autosign = false
storeconfigs = true
storeconfigs_backend = puppetdb
reports = puppetdb
`,
  );
  write(join(s.confdir, 'puppetdb.conf'), `[main]\nserver_urls = ${URLS.puppetdb}\n`);
  write(join(s.confdir, 'routes.yaml'), '---\nserver:\n  facts:\n    terminus: puppetdb\n    cache: yaml\n');
}

/**
 * `puppetserver ca generate` signs over the CA API with the primary's certificate (it carries
 * pp_cli_auth) but writes the new key and certificate into the clients' own ssldir.
 */
function writeIssuerConfig(paths: LabLayout): void {
  const s = paths.server;
  write(
    paths.clients.issuerConf,
    `[main]
certname = ${PRIMARY_CERTNAME}
server = localhost
serverport = ${PORTS.puppetserver}
ssldir = ${paths.clients.ssldir}
hostcert = ${s.hostCert}
hostprivkey = ${s.hostKey}
localcacert = ${s.caCert}
hostcrl = ${s.hostCrl}
keylength = 2048

[server]
cadir = ${s.cadir}
`,
  );
}

/**
 * The primary's own agent (the one an orchestrator run drives) shares the server's ssldir, as on a
 * real primary, but has its own state directories.
 */
function writePrimaryAgentConfig(paths: LabLayout): void {
  const a = paths.primaryAgent;
  write(
    a.puppetConf,
    `[main]
certname = ${PRIMARY_CERTNAME}
server = localhost
serverport = ${PORTS.puppetserver}
ssldir = ${paths.server.ssldir}
vardir = ${a.vardir}
rundir = ${join(a.vardir, 'run')}
logdir = ${join(a.vardir, 'log')}
publicdir = ${join(a.vardir, 'public')}
codedir = ${join(a.vardir, 'code')}

[agent]
environment = ${ENVIRONMENT}
usecacheonfailure = false
`,
  );
}

function writePuppetDbConfig(paths: LabLayout, postgresPort: number, databasePassword: string): void {
  const d = paths.puppetdb;
  const s = paths.server;
  mkdirSync(d.vardir, { recursive: true });
  copy(join(DISTRO_PUPPETDB, 'bootstrap.cfg'), d.bootstrap);
  copy(join(DISTRO_PUPPETDB, 'conf.d', 'auth.conf'), join(d.config, 'auth.conf'));
  write(d.logback, consoleLogback());
  write(
    join(d.config, 'config.ini'),
    `[global]
vardir = ${d.vardir}
logging-config = ${d.logback}

[puppetdb]
certificate-allowlist = ${d.allowlist}
disable-update-checking = true

[command-processing]
threads = 1
`,
  );
  write(
    join(d.config, 'database.ini'),
    // Pools of 8 (the read pool inherits it) instead of 25 each: ~50 idle backends cost ~1 GB here.
    `[database]\nsubname = //127.0.0.1:${postgresPort}/puppetdb\nusername = puppetdb\npassword = ${databasePassword}\nmaximum-pool-size = 8\n`,
    0o600,
  );
  // PuppetDB serves the primary's certificate, as it does when it runs on a PE primary.
  write(
    join(d.config, 'jetty.ini'),
    `[jetty]
host = 127.0.0.1
port = ${PORTS.puppetdbPlain}
ssl-host = 127.0.0.1
ssl-port = ${PORTS.puppetdbTls}
ssl-key = ${s.hostKey}
ssl-cert = ${s.hostCert}
ssl-ca-cert = ${s.caCert}
`,
  );
  // The forbidden client is deliberately absent: its certificate is valid but allowed nowhere.
  write(d.allowlist, `${LIFECYCLE_CERTNAME}\n${PRIMARY_CERTNAME}\n`);
}
