import * as z from 'zod';
import { certnameProblem } from '../../lib/certname';
import { ConfigError } from '../../lib/errors';
import { ENVIRONMENT_NAME_PATTERN, ENVIRONMENT_NAME_RULE } from '../../lib/puppet/environment';
import { configuredExtensionProblem } from '../../lib/puppet/extensions';

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
  rbacTokenSecretArn: string;
  ca: { hostname: string; port: number };
  puppetdb: { hostname: string; port: number };
  orchestrator: { hostname: string; port: number; environment: string };
  primaryCertname: string;
  /** PROTECTED_CERTNAMES plus the primary; the lifecycle client's own name is added once its certificate is read. */
  protectedCertnames: ReadonlySet<string>;
  nlbDnsName: string;
  extraAltNames: readonly string[];
  /** Puppet extensions every compile master's CSR must carry, short name → value. */
  expectedExtensions: Readonly<Record<string, string>>;
}

/** One valid value for each variable: shown in configuration errors, and a complete environment for benchmarks. */
export const ENVIRONMENT_EXAMPLES: Readonly<Record<string, string>> = {
  AWS_REGION: 'us-west-2',
  GROUP_NAME: 'compile-masters',
  LAUNCH_HOOK_NAME: 'compile-master-launching',
  TERMINATE_HOOK_NAME: 'compile-master-terminating',
  COMPILE_MASTER_ROLE_ID: 'AROA3XFRBF23EXAMPLE7Q',
  REGISTRY_TABLE: 'compile-masters-registry',
  QUEUE_URL: 'https://sqs.us-west-2.amazonaws.com/123456789012/compile-masters-lifecycle',
  CLIENT_CERT_SECRET_ARN: 'arn:aws:secretsmanager:us-west-2:123456789012:secret:compile-masters/client-cert-AbCdEf',
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
  POWERTOOLS_SERVICE_NAME: 'compile-masters-controller',
  POWERTOOLS_METRICS_NAMESPACE: 'CompileMasters',
};

const required = z.string({ error: 'is not set' }).trim().min(1, 'is empty');
const certname = required.refine((value) => certnameProblem(value) === undefined, {
  error: (issue) => `must be a lowercase DNS-style certname (it ${certnameProblem(issue.input)})`,
});
const port = (fallback: number) =>
  z.coerce.number({ error: 'must be a TCP port number' }).int('must be a whole number').min(1).max(65_535).default(fallback);
/** DNS is case-insensitive; names are compared lowercased. */
const dnsName = z.string({ error: 'is not set' }).trim().toLowerCase().pipe(certname);
const secretArn = required.regex(/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/, 'must be a Secrets Manager secret ARN');

/** A JSON document in a variable: parse errors and shape errors read the same way. */
function json<T extends z.ZodType>(schema: T, fallback: string) {
  return z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'is not valid JSON' });
        return z.NEVER;
      }
    })
    .pipe(schema);
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
  RBAC_TOKEN_SECRET_ARN: secretArn,
  PRIMARY_HOSTNAME: certname,
  PRIMARY_CERTNAME: certname,
  CA_PORT: port(8140),
  PUPPETDB_HOSTNAME: certname.optional(),
  PUPPETDB_PORT: port(8081),
  ORCHESTRATOR_HOSTNAME: certname.optional(),
  ORCHESTRATOR_PORT: port(8143),
  ORCHESTRATOR_ENVIRONMENT: required.regex(ENVIRONMENT_NAME_PATTERN, ENVIRONMENT_NAME_RULE).default('production'),
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
  POWERTOOLS_SERVICE_NAME: required,
  POWERTOOLS_METRICS_NAMESPACE: required,
});

export function loadConfig(env: NodeJS.ProcessEnv): ControllerConfig {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? '(environment)');
      const example = ENVIRONMENT_EXAMPLES[name] ? ` (example: ${name}=${ENVIRONMENT_EXAMPLES[name]})` : '';
      const where = issue.path.length > 1 ? ` at ${issue.path.slice(1).join('.')}` : '';
      return `${name}${where} ${issue.message}${example}`;
    });
    throw new ConfigError(`The lifecycle controller's environment is invalid:\n  ${lines.join('\n  ')}`, {
      hint: 'the stack sets these variables on the function; fix the context values that feed them and redeploy',
    });
  }
  const v = parsed.data;
  return {
    region: v.AWS_REGION,
    groupName: v.GROUP_NAME,
    launchHookName: v.LAUNCH_HOOK_NAME,
    terminateHookName: v.TERMINATE_HOOK_NAME,
    compileMasterRoleId: v.COMPILE_MASTER_ROLE_ID,
    registryTable: v.REGISTRY_TABLE,
    queueUrl: v.QUEUE_URL,
    clientCertSecretArn: v.CLIENT_CERT_SECRET_ARN,
    rbacTokenSecretArn: v.RBAC_TOKEN_SECRET_ARN,
    ca: { hostname: v.PRIMARY_HOSTNAME, port: v.CA_PORT },
    puppetdb: { hostname: v.PUPPETDB_HOSTNAME ?? v.PRIMARY_HOSTNAME, port: v.PUPPETDB_PORT },
    orchestrator: {
      hostname: v.ORCHESTRATOR_HOSTNAME ?? v.PRIMARY_HOSTNAME,
      port: v.ORCHESTRATOR_PORT,
      environment: v.ORCHESTRATOR_ENVIRONMENT,
    },
    primaryCertname: v.PRIMARY_CERTNAME,
    protectedCertnames: new Set([v.PRIMARY_CERTNAME, ...v.PROTECTED_CERTNAMES]),
    nlbDnsName: v.NLB_DNS_NAME,
    extraAltNames: v.EXTRA_ALT_NAMES,
    expectedExtensions: v.EXPECTED_EXTENSIONS,
  };
}
