import * as z from 'zod';
import { certnameProblem } from '../../lib/certname';
import { ConfigError } from '../../lib/errors';
import { REPLACE_UNHEALTHY_AFTER_MINUTES } from '../../lib/health-window';
import { LAUNCH_CEILING_MINUTES } from '../../lib/launch-budget';
import { FLAVORS, PRIMARY_RUN_MODES, defaultPrimaryRun, primaryRunProblem, type Flavor, type PrimaryRunMode } from '../../lib/flavor';
import { primaryInstanceIdsSchema, primaryInstanceTagSchema } from '../../lib/primary-instances';
import { ENVIRONMENT_NAME_PATTERN, ENVIRONMENT_NAME_RULE } from '../../lib/puppet/environment';
import { configuredExtensionProblem } from '../../lib/puppet/extensions';
import type { OrchestratorSettings } from './primary-run/orchestrator';
import type { SsmTarget } from './primary-run/ssm';

/**
 * The controller's environment, parsed once at cold start. A wrong value fails the whole
 * container with a message that names the variable and shows an example, instead of surfacing
 * later as a half-done lifecycle action.
 */
export interface ControllerConfig {
  region: string;
  groupName: string;
  launchHookName: string;
  terminateHookName: string;
  /** The compile masters' instance role's unique id: only its sessions named after an instance speak for that instance. */
  compileMasterRoleId: string;
  registryTable: string;
  queueUrl: string;
  clientCertSecretArn: string;
  flavor: Flavor;
  /** How the primary is converged; each runner's settings exist only with it. */
  primaryRun: PrimaryRunConfig;
  ca: { hostname: string; port: number };
  puppetdb: { hostname: string; port: number };
  primaryCertname: string;
  /** PROTECTED_CERTNAMES plus the primary; the lifecycle client's own name is added once its certificate is read. */
  protectedCertnames: ReadonlySet<string>;
  nlbDnsName: string;
  extraAltNames: readonly string[];
  /** Puppet extensions every compile master's CSR must carry, short name → value. */
  expectedExtensions: Readonly<Record<string, string>>;
  /** How long a serving node's Puppet Server may stay unhealthy since its last boot before it is replaced. */
  replaceUnhealthyAfterSeconds: number;
  /** A launch older than this (from EC2's launch time) gets no more heartbeats: its hook times out. */
  launchCeilingSeconds: number;
}

export type PrimaryRunConfig =
  | { mode: 'orchestrator'; rbacTokenSecretArn: string; orchestrator: OrchestratorSettings }
  | { mode: 'ssm'; target: SsmTarget; puppetBin: string }
  | { mode: 'none' };

/** Where puppet is on an AIO-packaged primary (puppet-agent, openvox-agent). */
export const DEFAULT_PRIMARY_PUPPET_BIN = '/opt/puppetlabs/bin/puppet';

/**
 * One valid value for each variable: shown in configuration errors, and a complete environment
 * (PE, orchestrator) for benchmarks.
 */
export const ENVIRONMENT_EXAMPLES: Readonly<Record<string, string>> = {
  AWS_REGION: 'us-west-2',
  GROUP_NAME: 'compile-masters',
  LAUNCH_HOOK_NAME: 'compile-master-launching',
  TERMINATE_HOOK_NAME: 'compile-master-terminating',
  COMPILE_MASTER_ROLE_ID: 'AROA3XFRBF23EXAMPLE7Q',
  REGISTRY_TABLE: 'compile-masters-registry',
  QUEUE_URL: 'https://sqs.us-west-2.amazonaws.com/123456789012/compile-masters-lifecycle',
  CLIENT_CERT_SECRET_ARN: 'arn:aws:secretsmanager:us-west-2:123456789012:secret:compile-masters/client-cert-AbCdEf',
  FLAVOR: 'pe',
  PRIMARY_RUN: 'orchestrator',
  RBAC_TOKEN_SECRET_ARN: 'arn:aws:secretsmanager:us-west-2:123456789012:secret:compile-masters/rbac-token-AbCdEf',
  PRIMARY_HOSTNAME: 'puppet.corp.example.com',
  PRIMARY_CERTNAME: 'puppet.corp.example.com',
  CA_PORT: '8140',
  PUPPETDB_HOSTNAME: 'puppet.corp.example.com',
  PUPPETDB_PORT: '8081',
  ORCHESTRATOR_HOSTNAME: 'puppet.corp.example.com',
  ORCHESTRATOR_PORT: '8143',
  ORCHESTRATOR_ENVIRONMENT: 'production',
  PROTECTED_CERTNAMES: '["puppet-replica.corp.example.com"]',
  NLB_DNS_NAME: 'compile-masters-0123456789abcdef.elb.us-west-2.amazonaws.com',
  EXTRA_ALT_NAMES: '["puppet.corp.example.com"]',
  EXPECTED_EXTENSIONS: '{"pp_role":"compile_master"}',
  REPLACE_UNHEALTHY_AFTER_SECONDS: String(REPLACE_UNHEALTHY_AFTER_MINUTES.default * 60),
  POWERTOOLS_SERVICE_NAME: 'compile-masters-controller',
  POWERTOOLS_METRICS_NAMESPACE: 'CompileMasters',
  LAUNCH_CEILING_SECONDS: String(LAUNCH_CEILING_MINUTES.default * 60),
};

/** Examples of the variables only PRIMARY_RUN=ssm takes (not part of the complete environment above). */
export const SSM_ENVIRONMENT_EXAMPLES: Readonly<Record<string, string>> = {
  PRIMARY_INSTANCE_IDS: '["i-0123456789abcdef0"]',
  PRIMARY_INSTANCE_TAG: '{"key":"Role","value":"puppet-primary"}',
  PRIMARY_PUPPET_BIN: DEFAULT_PRIMARY_PUPPET_BIN,
};

/** The variables each runner takes. */
const RUNNER_VARIABLES: Readonly<Record<PrimaryRunMode, readonly string[]>> = {
  orchestrator: ['RBAC_TOKEN_SECRET_ARN', 'ORCHESTRATOR_HOSTNAME', 'ORCHESTRATOR_PORT', 'ORCHESTRATOR_ENVIRONMENT'],
  ssm: ['PRIMARY_INSTANCE_IDS', 'PRIMARY_INSTANCE_TAG', 'PRIMARY_PUPPET_BIN'],
  none: [],
};

const required = z.string({ error: 'is not set' }).trim().min(1, 'is empty');
const certname = required.refine((value) => certnameProblem(value) === undefined, {
  error: (issue) => `must be a lowercase DNS-style certname (it ${certnameProblem(issue.input)})`,
});
const port = z.coerce.number({ error: 'must be a TCP port number' }).int('must be a whole number').min(1).max(65_535);
/** DNS is case-insensitive; names are compared lowercased. */
const dnsName = z.string({ error: 'is not set' }).trim().toLowerCase().pipe(certname);
const secretArn = required.regex(/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/, 'must be a Secrets Manager secret ARN');

const jsonText = z.string().transform((text, ctx) => {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    ctx.addIssue({ code: 'custom', message: 'is not valid JSON' });
    return z.NEVER;
  }
});

/** A JSON document in a variable: parse errors and shape errors read the same way. */
function json<T extends z.ZodType>(schema: T, fallback: string) {
  return z.string().default(fallback).pipe(jsonText).pipe(schema);
}

const EnvSchema = z.object({
  AWS_REGION: required,
  GROUP_NAME: required,
  LAUNCH_HOOK_NAME: required,
  TERMINATE_HOOK_NAME: required,
  // IAM unique ids: a four-letter prefix (AROA for roles) and upper-case letters and digits.
  COMPILE_MASTER_ROLE_ID: required.regex(/^AROA[A-Z0-9]{12,124}$/, "must be an IAM role's unique id (AROA…), not its name or ARN"),
  REGISTRY_TABLE: required,
  QUEUE_URL: required.pipe(z.url({ protocol: /^https$/, error: 'must be an https:// SQS queue URL' })),
  CLIENT_CERT_SECRET_ARN: secretArn,
  FLAVOR: z.enum(FLAVORS, `must be one of ${FLAVORS.join(', ')}`).default('pe'),
  PRIMARY_RUN: z.enum(PRIMARY_RUN_MODES, `must be one of ${PRIMARY_RUN_MODES.join(', ')}`).optional(),
  RBAC_TOKEN_SECRET_ARN: secretArn.optional(),
  PRIMARY_HOSTNAME: certname,
  PRIMARY_CERTNAME: certname,
  CA_PORT: port.default(8140),
  PUPPETDB_HOSTNAME: certname.optional(),
  PUPPETDB_PORT: port.default(8081),
  ORCHESTRATOR_HOSTNAME: certname.optional(),
  ORCHESTRATOR_PORT: port.optional(),
  ORCHESTRATOR_ENVIRONMENT: required.regex(ENVIRONMENT_NAME_PATTERN, ENVIRONMENT_NAME_RULE).optional(),
  PRIMARY_INSTANCE_IDS: jsonText.pipe(primaryInstanceIdsSchema).optional(),
  PRIMARY_INSTANCE_TAG: jsonText.pipe(primaryInstanceTagSchema).optional(),
  // Quoted into the script SSM runs: a plain absolute path, nothing a shell could read otherwise.
  PRIMARY_PUPPET_BIN: required.regex(/^\/[A-Za-z0-9._+/-]+$/, 'must be an absolute path (letters, digits and . _ + - /)').optional(),
  PROTECTED_CERTNAMES: json(z.array(certname, 'must be a JSON array of certnames'), '[]'),
  NLB_DNS_NAME: dnsName,
  EXTRA_ALT_NAMES: json(z.array(dnsName, 'must be a JSON array of DNS names'), '[]'),
  EXPECTED_EXTENSIONS: json(
    z
      .record(z.string(), z.string('values must be strings'), 'must be a JSON object of Puppet extension short names to values')
      .superRefine((extensions, ctx) => {
        for (const [name, value] of Object.entries(extensions)) {
          const problem = configuredExtensionProblem(name, value);
          if (problem) ctx.addIssue({ code: 'custom', path: [name], message: `key ${JSON.stringify(name)} is not an allowed Puppet extension short name or value: it ${problem}` });
        }
      }),
    '{}',
  ),
  // At least five minutes: a reboot or a Puppet Server restart must fit in it with room.
  REPLACE_UNHEALTHY_AFTER_SECONDS: z.coerce
    .number({ error: 'must be a number of seconds' })
    .int('must be a whole number of seconds')
    .min(REPLACE_UNHEALTHY_AFTER_MINUTES.min * 60, `must be at least ${REPLACE_UNHEALTHY_AFTER_MINUTES.min * 60} (replaceUnhealthyAfterMinutes ${REPLACE_UNHEALTHY_AFTER_MINUTES.min}): a reboot must fit in it`)
    .max(REPLACE_UNHEALTHY_AFTER_MINUTES.max * 60, `must be at most ${REPLACE_UNHEALTHY_AFTER_MINUTES.max * 60} (replaceUnhealthyAfterMinutes ${REPLACE_UNHEALTHY_AFTER_MINUTES.max})`)
    .default(REPLACE_UNHEALTHY_AFTER_MINUTES.default * 60),
  POWERTOOLS_SERVICE_NAME: required,
  POWERTOOLS_METRICS_NAMESPACE: required,
  LAUNCH_CEILING_SECONDS: z.coerce
    .number({ error: 'must be a number of seconds' })
    .int('must be a whole number')
    .min(LAUNCH_CEILING_MINUTES.min * 60, `must be at least ${LAUNCH_CEILING_MINUTES.min * 60} (launchCeilingMinutes ${LAUNCH_CEILING_MINUTES.min})`)
    .max(LAUNCH_CEILING_MINUTES.max * 60, `must be at most ${LAUNCH_CEILING_MINUTES.max * 60} (launchCeilingMinutes ${LAUNCH_CEILING_MINUTES.max})`)
    .default(LAUNCH_CEILING_MINUTES.default * 60),
});

/** A problem with one variable: its name, where inside its JSON value, and what is wrong. */
interface Problem {
  name: string;
  where?: string;
  message: string;
}

/**
 * The runner's own variables, checked against FLAVOR and PRIMARY_RUN once each is valid on its
 * own. A variable of another runner is a leftover: refused, so nobody believes it in effect.
 */
function primaryRunConfig(env: NodeJS.ProcessEnv, v: z.infer<typeof EnvSchema>, problems: Problem[]): PrimaryRunConfig {
  const mode = v.PRIMARY_RUN ?? defaultPrimaryRun(v.FLAVOR);
  const problem = primaryRunProblem(v.FLAVOR, mode);
  if (problem) problems.push({ name: 'PRIMARY_RUN', message: `is "${mode}", which FLAVOR=${v.FLAVOR} cannot use: ${problem}` });
  for (const runner of PRIMARY_RUN_MODES.filter((m) => m !== mode)) {
    for (const name of RUNNER_VARIABLES[runner].filter((n) => env[n] !== undefined)) {
      problems.push({ name, message: `is set, but only PRIMARY_RUN=${runner} uses it (PRIMARY_RUN is ${mode}): a leftover, remove it` });
    }
  }
  switch (mode) {
    case 'orchestrator':
      if (v.RBAC_TOKEN_SECRET_ARN === undefined) problems.push({ name: 'RBAC_TOKEN_SECRET_ARN', message: 'is not set (PRIMARY_RUN=orchestrator needs the RBAC token)' });
      return {
        mode,
        rbacTokenSecretArn: v.RBAC_TOKEN_SECRET_ARN ?? '',
        orchestrator: {
          hostname: v.ORCHESTRATOR_HOSTNAME ?? v.PRIMARY_HOSTNAME,
          port: v.ORCHESTRATOR_PORT ?? 8143,
          environment: v.ORCHESTRATOR_ENVIRONMENT ?? 'production',
        },
      };
    case 'ssm': {
      const { PRIMARY_INSTANCE_IDS: instanceIds, PRIMARY_INSTANCE_TAG: tag } = v;
      if (instanceIds && tag) problems.push({ name: 'PRIMARY_INSTANCE_TAG', message: 'is set as well as PRIMARY_INSTANCE_IDS: set exactly one of them' });
      const puppetBin = v.PRIMARY_PUPPET_BIN ?? DEFAULT_PRIMARY_PUPPET_BIN;
      if (instanceIds) return { mode, target: { instanceIds }, puppetBin };
      if (tag) return { mode, target: { tag }, puppetBin };
      problems.push({ name: 'PRIMARY_INSTANCE_IDS', message: "is not set, nor PRIMARY_INSTANCE_TAG: PRIMARY_RUN=ssm needs exactly one of them to find the primary's instance(s)" });
      return { mode, target: { instanceIds: [] }, puppetBin };
    }
    case 'none':
      return { mode };
  }
}

function invalid(problems: readonly Problem[]): ConfigError {
  const lines = problems.map(({ name, where, message }) => {
    const known = ENVIRONMENT_EXAMPLES[name] ?? SSM_ENVIRONMENT_EXAMPLES[name];
    return `${name}${where ? ` at ${where}` : ''} ${message}${known ? ` (example: ${name}=${known})` : ''}`;
  });
  return new ConfigError(`The lifecycle controller's environment is invalid:\n  ${lines.join('\n  ')}`, {
    hint: 'the stack sets these variables on the function; fix the context values that feed them and redeploy',
  });
}

export function loadConfig(env: NodeJS.ProcessEnv): ControllerConfig {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    throw invalid(
      parsed.error.issues.map((issue) => ({
        name: String(issue.path[0] ?? '(environment)'),
        where: issue.path.length > 1 ? issue.path.slice(1).join('.') : undefined,
        message: issue.message,
      })),
    );
  }
  const v = parsed.data;
  const problems: Problem[] = [];
  const primaryRun = primaryRunConfig(env, v, problems);
  if (problems.length > 0) throw invalid(problems);
  return {
    region: v.AWS_REGION,
    groupName: v.GROUP_NAME,
    launchHookName: v.LAUNCH_HOOK_NAME,
    terminateHookName: v.TERMINATE_HOOK_NAME,
    compileMasterRoleId: v.COMPILE_MASTER_ROLE_ID,
    registryTable: v.REGISTRY_TABLE,
    queueUrl: v.QUEUE_URL,
    clientCertSecretArn: v.CLIENT_CERT_SECRET_ARN,
    flavor: v.FLAVOR,
    primaryRun,
    ca: { hostname: v.PRIMARY_HOSTNAME, port: v.CA_PORT },
    puppetdb: { hostname: v.PUPPETDB_HOSTNAME ?? v.PRIMARY_HOSTNAME, port: v.PUPPETDB_PORT },
    primaryCertname: v.PRIMARY_CERTNAME,
    protectedCertnames: new Set([v.PRIMARY_CERTNAME, ...v.PROTECTED_CERTNAMES]),
    nlbDnsName: v.NLB_DNS_NAME,
    extraAltNames: v.EXTRA_ALT_NAMES,
    expectedExtensions: v.EXPECTED_EXTENSIONS,
    replaceUnhealthyAfterSeconds: v.REPLACE_UNHEALTHY_AFTER_SECONDS,
    launchCeilingSeconds: v.LAUNCH_CEILING_SECONDS,
  };
}
