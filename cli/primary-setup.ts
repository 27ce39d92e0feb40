import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CompileMasterConfig } from '../cdk/config';

export type Flavor = 'pe' | 'oss';

/** What the primary needs, from the stack's own context (so it matches what the stack deploys). */
export type PrimarySettings = Pick<CompileMasterConfig, 'primaryCertname' | 'lifecycleClientCertname' | 'roleExtension' | 'orchestratorHostname' | 'orchestratorPort'>;

export interface PrimarySetup {
  /** The steps, in order, as printed. */
  text: string;
  /** File name → content, for --out. */
  files: Record<string, string>;
}

export const MODULE_DIR = fileURLToPath(new URL('../puppet/compile_masters_primary', import.meta.url));

const RBAC_PERMISSIONS = [
  { object_type: 'puppet_agent', action: 'run', instance: '*' },
  { object_type: 'orchestrator', action: 'view', instance: '*' },
];

export function authRule(certname: string): string {
  return `{
    # Before Puppet's default CA rules (sort-order 500). Keep the pp_cli_auth entry: the first
    # matching rule decides, and without it \`puppetserver ca\` on the primary would lose access.
    match-request: {
        path: "^/puppet-ca/v1/(certificate_status/|certificate_statuses/|clean$)"
        type: regex
        method: [get, put, delete]
    }
    allow: ["${certname}", { extensions: { pp_cli_auth: "true" } }]
    sort-order: 400
    name: "compile-master lifecycle controller"
},
`;
}

/** Pure: the same settings always give the same instructions. */
export function renderPrimarySetup(settings: PrimarySettings, flavor: Flavor): PrimarySetup {
  const name = settings.lifecycleClientCertname;
  const role = settings.roleExtension;
  const pe = flavor === 'pe';
  const server = pe ? 'pe-puppetserver' : 'puppetserver';
  const classifierRule = ['and', ['=', ['trusted', 'extensions', role.name], role.value]];
  const files: Record<string, string> = {
    'auth.conf-rule.hocon': authRule(name),
    'ca.conf-setting.hocon': 'certificate-authority: {\n    allow-subject-alt-names: true\n    allow-duplicate-certs: false\n}\n',
    'puppetdb-allowlist-entry.txt': `${name}\n`,
  };
  if (pe) {
    files['classifier-rule.json'] = `${JSON.stringify(classifierRule)}\n`;
    files['rbac-role.json'] = `${JSON.stringify({ display_name: 'Compile-master lifecycle', description: 'Runs Puppet on the primary when compile masters come and go', permissions: RBAC_PERMISSIONS, user_ids: [], group_ids: [] }, null, 2)}\n`;
  } else {
    files['primary.pp'] = `class { 'compile_masters_primary':\n  lifecycle_certname => '${name}',\n  puppetdb_allowlist => '/etc/puppetlabs/puppetdb/certificate-allowlist', # the file [puppetdb] certificate-allowlist names\n}\n`;
    files['site.pp-classification.pp'] = `# Compile masters ask for ${role.name}=${role.value}; the CA only signs what the controller checked.\nif $trusted['extensions']['${role.name}'] == '${role.value}' {\n  include role::compile_master\n}\n`;
  }

  const steps: string[] = [];
  const step = (title: string, body: string) => steps.push(`${steps.length + 1}. ${title}\n\n${indent(body.trimEnd())}\n`);
  step(
    'Lifecycle client certificate (on the primary, with the CA stopped: the CA refuses to sign pp_cli_auth requests)',
    `systemctl stop ${server}
puppetserver ca generate --ca-client --certname ${name}
systemctl start ${server}
# cert: $(puppet config print certdir)/${name}.pem   key: $(puppet config print privatekeydir)/${name}.pem
# CA:   $(puppet config print localcacert)
It carries pp_cli_auth, which Puppet's default auth.conf already allows on the CA endpoints.${pe ? '' : `
Or an ordinary certificate (puppet ssl bootstrap --certname ${name}) plus this rule in
/etc/puppetlabs/puppetserver/conf.d/auth.conf, before the default rules (auth.conf-rule.hocon):

${authRule(name).trimEnd()}`}`,
  );
  step(
    'PuppetDB allow-list',
    pe
      ? `In the console: PE Infrastructure > PE PuppetDB node group, class puppet_enterprise::profile::puppetdb,
parameter allowlist: add "${name}" (PE rewrites the allow-list file from it), then run Puppet on the primary.`
      : `Add "${name}" to the file [puppetdb] certificate-allowlist names, then restart puppetdb.
Only if an allow-list is already on: switching one on would lock out the primary and everyone else.`,
  );
  step(
    'Allow subject alternative names (every compile master asks for the load balancer DNS name), refuse duplicate CSRs',
    `In /etc/puppetlabs/puppetserver/conf.d/ca.conf (ca.conf-setting.hocon):
    certificate-authority: { allow-subject-alt-names: true, allow-duplicate-certs: false }
then systemctl restart ${server}. The controller still refuses any CSR whose alt names are not
the certname, the NLB DNS name or the configured dnsAltNames. With duplicate CSRs allowed (this
setting, or allow_duplicate_certs in puppet.conf, which ca.conf overrides) anyone who reaches
port 8140 can queue a CSR for a compile master's certname, and the controller signs nothing.`,
  );
  step(
    `Classify compile masters by ${role.name}=${role.value}`,
    pe
      ? `In the console: PE Infrastructure > PE Compiler (PE Master on older PE) node group, add a rule
trusted.extensions.${role.name} = ${role.value} (classifier API form in classifier-rule.json):
    ${JSON.stringify(classifierRule)}`
      : `In site.pp or your ENC (site.pp-classification.pp):
    if $trusted['extensions']['${role.name}'] == '${role.value}' { include role::compile_master }`,
  );
  if (pe) {
    step(
      'RBAC role and a long-lived token for the orchestrator runs',
      `Create a role with "Puppet agent: Run Puppet on agent nodes" and "Job orchestrator: Start, stop
and view jobs" (POST /rbac-api/v1/roles with rbac-role.json), a user in it, then as that user:
    puppet access login --lifetime 1y --print > token.txt
The lifetime is capped by rbac_token_maximum_lifetime; raise it there if 1y is refused.
The controller runs Puppet on ${settings.primaryCertname} through https://${settings.orchestratorHostname}:${settings.orchestratorPort}.`,
    );
  } else {
    step(
      'Apply it with Puppet instead (open source): the class in puppet/compile_masters_primary',
      `Needs puppetlabs-puppet_authorization, puppetlabs-hocon and puppetlabs-stdlib. Copy the module to the
primary's modulepath and classify the primary with primary.pp:
${files['primary.pp']!.trimEnd()}`,
    );
    step(
      'Orchestrator and RBAC token',
      `Open-source Puppet has no orchestrator. The controller runs the primary through PE's
orchestrator API (https://${settings.orchestratorHostname}:${settings.orchestratorPort}/orchestrator/v1/command/deploy
with an X-Authentication token); point orchestratorHostname at a service that offers it and put its token in token.txt.`,
    );
  }
  step(
    'Load the secrets and check the primary from here',
    `Copy the certificate, its key and ca.pem from the primary (the key is secret: scp, then shred it when done), then:
npx compile-masters secrets put --stack CompileMasters --cert lifecycle.pem --key lifecycle-key.pem --ca ca.pem --token-file token.txt
npx compile-masters doctor --stack CompileMasters
Autosign stays off: the controller signs.`,
  );
  const title = `What ${settings.primaryCertname} needs for elastic compile masters (${pe ? 'Puppet Enterprise' : 'open-source Puppet'}), lifecycle certname ${name}`;
  const text = `${title}\n\n${steps.join('\n')}`;
  return { text, files: { 'steps.txt': text, ...files } };
}

/** Writes the files (and, for open-source Puppet, a copy of the Puppet module) into `dir`. */
export function writePrimarySetup(setup: PrimarySetup, dir: string, flavor: Flavor): string[] {
  mkdirSync(dir, { recursive: true });
  const written = Object.entries(setup.files).map(([file, content]) => {
    writeFileSync(join(dir, file), content);
    return join(dir, file);
  });
  if (flavor === 'oss') {
    cpSync(MODULE_DIR, join(dir, 'compile_masters_primary'), { recursive: true });
    written.push(join(dir, 'compile_masters_primary/'));
  }
  return written;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => (line ? `   ${line}` : line))
    .join('\n');
}
