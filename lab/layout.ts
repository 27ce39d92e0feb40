import { join } from 'node:path';

/** Fixed names and ports of the lab; the clients in lib/ and the tests see them through lab.json. */
export const PRIMARY_CERTNAME = 'primary.lab.test';
export const LIFECYCLE_CERTNAME = 'lifecycle-controller.lab.test';
export const FORBIDDEN_CERTNAME = 'not-allowed.lab.test';
export const ENVIRONMENT = 'production';
export const SERVER_ALT_NAMES = ['localhost', 'IP:127.0.0.1'];

export const PORTS = {
  puppetserver: 8140,
  puppetdbTls: 8081,
  puppetdbPlain: 8080,
  orchestrator: 8143,
} as const;

export const URLS = {
  ca: `https://localhost:${PORTS.puppetserver}`,
  puppetdb: `https://localhost:${PORTS.puppetdbTls}`,
  puppetdbPlain: `http://127.0.0.1:${PORTS.puppetdbPlain}`,
  orchestrator: `https://localhost:${PORTS.orchestrator}`,
} as const;

export const PUPPET_BIN = '/usr/bin/puppet';

/** Where every file of the lab lives, below one throwaway directory. */
export function layout(dir: string) {
  const server = join(dir, 'puppetserver');
  const ssldir = join(server, 'ssl');
  const puppetdb = join(dir, 'puppetdb');
  const postgres = join(dir, 'postgres');
  const clients = join(dir, 'clients');
  const orchestrator = join(dir, 'orchestrator');
  const primaryAgent = join(dir, 'agents', PRIMARY_CERTNAME);
  return {
    dir,
    descriptionFile: join(dir, 'lab.json'),
    logs: join(dir, 'logs'),
    run: join(dir, 'run'),
    server: {
      root: server,
      tkConfig: join(server, 'conf.d'),
      tkBootstrap: join(server, 'services.d'),
      logback: join(server, 'logback.xml'),
      // Puppet's own confdir (puppet.conf, puppetdb.conf, routes.yaml), as on a primary.
      confdir: join(server, 'puppet'),
      puppetConf: join(server, 'puppet', 'puppet.conf'),
      codedir: join(server, 'code'),
      vardir: join(server, 'var'),
      rundir: join(server, 'run'),
      logdir: join(server, 'log'),
      gemHome: join(server, 'jruby-gems'),
      cadir: join(server, 'ca'),
      ssldir,
      caCert: join(ssldir, 'certs', 'ca.pem'),
      hostCert: join(ssldir, 'certs', `${PRIMARY_CERTNAME}.pem`),
      hostKey: join(ssldir, 'private_keys', `${PRIMARY_CERTNAME}.pem`),
      hostCrl: join(ssldir, 'crl.pem'),
      caCrl: join(server, 'ca', 'ca_crl.pem'),
    },
    puppetdb: {
      root: puppetdb,
      config: join(puppetdb, 'conf.d'),
      bootstrap: join(puppetdb, 'bootstrap.cfg'),
      logback: join(puppetdb, 'logback.xml'),
      vardir: join(puppetdb, 'var'),
      allowlist: join(puppetdb, 'certificate-allowlist'),
      passwordFile: join(puppetdb, 'db-password'),
    },
    postgres: {
      root: postgres,
      data: join(postgres, 'data'),
      socketDir: join(postgres, 'run'),
      portFile: join(postgres, 'port'),
    },
    clients: {
      root: clients,
      // A puppet.conf that lets `puppetserver ca generate` sign with the primary's credentials
      // while writing the new keys here, away from the primary's ssldir.
      issuerConf: join(clients, 'issuer.conf'),
      ssldir: join(clients, 'ssl'),
      cert: (certname: string) => join(clients, 'ssl', 'certs', `${certname}.pem`),
      key: (certname: string) => join(clients, 'ssl', 'private_keys', `${certname}.pem`),
    },
    orchestrator: {
      root: orchestrator,
      tokenFile: join(orchestrator, 'token'),
    },
    primaryAgent: {
      confdir: primaryAgent,
      puppetConf: join(primaryAgent, 'puppet.conf'),
      vardir: join(primaryAgent, 'var'),
      /** `puppet` as the primary (lab/primary-puppet.ts writes it). */
      puppetBin: join(primaryAgent, 'bin', 'puppet'),
    },
  };
}

export type LabLayout = ReturnType<typeof layout>;
