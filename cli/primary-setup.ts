import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { namedPrimaryInstances, type CompileMasterConfig } from '../cdk/config';
import { peRepoClassNeeded } from '../cdk/platform';
import { ConfigError } from '../lib/errors';
import { defaultPrimaryRun, FLAVOR, primaryRunProblem, type Flavor } from '../lib/flavor';

/** What the primary needs, from the stack's own context (so it matches what the stack deploys). */
export type PrimarySettings = Pick<
  CompileMasterConfig,
  | 'primaryCertname'
  | 'lifecycleClientCertname'
  | 'roleExtension'
  | 'orchestratorHostname'
  | 'orchestratorPort'
  | 'flavor'
  | 'primaryRun'
  | 'primaryInstances'
  | 'exampleKeysInUse'
  | 'platform'
  | 'architecture'
  | 'primaryPlatform'
  | 'primaryArchitecture'
>;

/**
 * The context's settings, for another flavor when asked (`--oss` on a cdk.json without one): that
 * flavor keeps the context's primary run if it can use it, else takes its own default.
 */
export function primarySettings(config: PrimarySettings, flavor: Flavor = config.flavor): PrimarySettings {
  if (flavor === config.flavor) return config;
  const primaryRun = primaryRunProblem(flavor, config.primaryRun) ? defaultPrimaryRun(flavor) : config.primaryRun;
  return { ...config, flavor, primaryRun };
}

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
export function renderPrimarySetup(settings: PrimarySettings): PrimarySetup {
  const { flavor, primaryRun } = settings;
  const problem = primaryRunProblem(flavor, primaryRun);
  if (problem) throw new ConfigError(`primaryRun ${primaryRun} with flavor ${flavor}: ${problem}`);
  const name = settings.lifecycleClientCertname;
  const role = settings.roleExtension;
  const pe = flavor === 'pe';
  const server = FLAVOR[flavor].serverService;
  const classifierRule = ['and', ['=', ['trusted', 'extensions', role.name], role.value]];
  const files: Record<string, string> = {
    'auth.conf-rule.hocon': authRule(name),
    'ca.conf-setting.hocon': 'certificate-authority: {\n    allow-subject-alt-names: true\n    allow-duplicate-certs: false\n}\n',
    'puppetdb-allowlist-entry.txt': `${name}\n`,
  };
  if (pe) files['classifier-rule.json'] = `${JSON.stringify(classifierRule)}\n`;
  if (primaryRun === 'orchestrator') {
    files['rbac-role.json'] = `${JSON.stringify({ display_name: 'Compile-master lifecycle', description: 'Runs Puppet on the primary when compile masters come and go', permissions: RBAC_PERMISSIONS, user_ids: [], group_ids: [] }, null, 2)}\n`;
  }
  if (!pe) {
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
  if (!pe) {
    step(
      `Apply it with Puppet instead (${FLAVOR[flavor].title}): the class in puppet/compile_masters_primary`,
      `Needs puppetlabs-puppet_authorization, puppetlabs-hocon and puppetlabs-stdlib. Copy the module to the
primary's modulepath and classify the primary with primary.pp:
${files['primary.pp']!.trimEnd()}`,
    );
  }
  const mismatch = pe ? peRepoClassNeeded(settings) : undefined;
  if (mismatch) {
    step(
      `Serve ${mismatch.compilers} agents from the primary (the compile masters' platform; the primary is ${mismatch.primary})`,
      `In the console: PE Infrastructure > PE Master node group, Classes: add ${mismatch.peRepoClass}, commit, then run
Puppet on the primary (puppet agent -t) so it downloads that platform's agent packages. Without it the
compile masters' install.bash fails. PE supports compilers only on the primary's OS and architecture:
prefer platform/instanceType settings that match it.`,
    );
  }
  step(...primaryRunStep(settings));
  const withToken = primaryRun === 'orchestrator';
  step(
    'Load the secrets and check the primary from here',
    `Copy the certificate, its key and ca.pem from the primary (the key is secret: scp, then shred it when done), then:
npx compile-masters secrets put --stack CompileMasters --cert lifecycle.pem --key lifecycle-key.pem --ca ca.pem${withToken ? ' --token-file token.txt' : ''}
npx compile-masters doctor --stack CompileMasters
Autosign stays off: the controller signs.`,
  );
  const title = `What ${settings.primaryCertname} needs for elastic compile masters (${FLAVOR[flavor].title}, primary run: ${primaryRun}), lifecycle certname ${name}`;
  const text = `${title}\n\n${steps.join('\n')}`;
  return { text, files: { 'steps.txt': text, ...files } };
}

/** How the controller makes the primary see a change in the tier, and what that needs on the primary. */
function primaryRunStep(settings: PrimarySettings): [title: string, body: string] {
  switch (settings.primaryRun) {
    case 'orchestrator':
      return [
        'RBAC role and a long-lived token for the orchestrator runs',
      `Create a role with "Puppet agent: Run Puppet on agent nodes" and "Job orchestrator: Start, stop
and view jobs" (POST /rbac-api/v1/roles with rbac-role.json), a user in it, then as that user:
    puppet access login --lifetime 1y --print > token.txt
The lifetime is capped by rbac_token_maximum_lifetime; raise it there if 1y is refused.
The controller runs Puppet on ${settings.primaryCertname} through https://${settings.orchestratorHostname}:${settings.orchestratorPort}.`,
      ];
    case 'ssm': {
      const named = namedPrimaryInstances(settings);
      const targets = named && 'instanceIds' in named
        ? `the instance(s) ${named.instanceIds.join(', ')} (context primaryInstanceIds)`
        : named
          ? `every instance tagged ${named.tag.key}=${named.tag.value} (context primaryInstanceTag): tag the primary with
    aws ec2 create-tags --resources <the primary's instance id> --tags Key=${named.tag.key},Value=${named.tag.value}`
          : `the primary's instance(s): set primaryInstanceIds (e.g. ["i-0123456789abcdef0"]) or
primaryInstanceTag (e.g. {"key": "Role", "value": "puppet-primary"}) in cdk.json, then deploy`;
      return [
        'Make the primary an SSM managed instance (the controller runs Puppet on it with SSM Run Command)',
        `The controller sends AWS-RunShellScript to ${targets}
It runs \`puppet agent\` once there, as root (/opt/puppetlabs/bin/puppet).
On the primary's EC2 instance:
- the SSM agent running (amazon-ssm-agent; preinstalled on Amazon Linux 2023 and Ubuntu AMIs):
    systemctl enable --now amazon-ssm-agent
- an instance profile whose role has the AWS managed policy AmazonSSMManagedInstanceCore;
- a way to reach the ssm, ssmmessages and ec2messages endpoints: VPC interface endpoints, or HTTPS egress.
It is ready when it shows as Online: aws ssm describe-instance-information (doctor checks this too).
No orchestrator, no RBAC token.`,
      ];
    }
    case 'none':
      return [
        'Nothing runs the primary: the site admits the tier by role',
        `With primaryRun none the controller never runs Puppet on the primary when compile masters come and go,
so nothing on the primary may list them by certname:
- PuppetDB's allow-list: either none (every certificate the CA signed is let in), or one your own
  process keeps current before the launch completes; allow_compile_masters only helps with a primary run;
- any auth.conf rule of yours that names compile masters: allow them by their trusted extension instead,
    allow: [{ extensions: { ${settings.roleExtension.name}: "${settings.roleExtension.value}" } }]
- purged compile masters' exported resources go away at the primary's next scheduled run.
No orchestrator, no RBAC token.`,
      ];
  }
}

/** Writes the files (and, for open-source Puppet and OpenVox, a copy of the Puppet module) into `dir`. */
export function writePrimarySetup(setup: PrimarySetup, dir: string, flavor: Flavor): string[] {
  mkdirSync(dir, { recursive: true });
  const written = Object.entries(setup.files).map(([file, content]) => {
    writeFileSync(join(dir, file), content);
    return join(dir, file);
  });
  if (flavor !== 'pe') {
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
