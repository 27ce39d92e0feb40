import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import * as z from 'zod';
import { certnameProblem } from '../lib/certname';
import { REPLACE_UNHEALTHY_AFTER_MINUTES } from '../lib/health-window';
import { LAUNCH_CEILING_MINUTES, launchBudgetProblems } from '../lib/launch-budget';
import { ConfigError } from '../lib/errors';
import { FLAVOR, FLAVORS, type Flavor, PRIMARY_RUN_MODES, type PrimaryRunMode, defaultPrimaryRun, primaryRunProblem } from '../lib/flavor';
import { primaryInstanceIdsSchema, primaryInstanceTagSchema, type PrimaryInstances } from '../lib/primary-instances';
import { ENVIRONMENT_NAME_PATTERN, ENVIRONMENT_NAME_RULE } from '../lib/puppet/environment';
import { configuredExtensionProblem } from '../lib/puppet/extensions';
import { AGENT_SOURCES, type AgentSource, agentSourceProblem, defaultAgentSource } from './agent-install';
import { primaryReachabilityProblem, primaryRouteSchema } from './reachability';
import { ARCHITECTURES, type Architecture, PLATFORM, PLATFORMS, type Platform, instanceArchitecture } from './platform';
import { DEFAULT_INSTANCE_TYPES, resolveCapacity } from './capacity';

/**
 * Every CDK context key the stack reads, parsed once at synth. The embedded defaults describe an
 * example site (`puppet.example.internal`), so `cdk synth` works offline from a fresh clone; a
 * real deploy overrides at least the keys in EXAMPLE_ONLY_KEYS.
 */
export const CONTEXT_DEFAULTS = {
  flavor: 'pe' as Flavor,
  platform: 'al2023' as Platform,
  primaryHostname: 'puppet.example.internal',
  primaryCidr: '192.0.2.10/32',
  caPort: 8140,
  puppetdbPort: 8081,
  orchestratorPort: 8143,
  orchestratorEnvironment: 'production',
  lifecycleClientCertname: 'compile-master-lifecycle.example.internal',
  protectedCertnames: [] as string[],
  dnsAltNames: [] as string[],
  roleExtension: { name: 'pp_role', value: 'compile_master' },
  instanceType: 'm6i.xlarge',
  // Spot capacity (cdk/capacity.ts): an on-demand base, spot above it.
  spot: true,
  instanceTypes: [...DEFAULT_INSTANCE_TYPES],
  onDemandBaseCapacity: 1,
  onDemandPercentageAboveBaseCapacity: 0,
  rootVolumeGiB: 50,
  // A first deploy launches nothing: instances would wait for a client certificate not put yet.
  minSize: 0,
  maxSize: 4,
  cpuTargetPercent: 70,
  vpcCidr: '10.0.0.0/16',
  nlbScheme: 'internal' as 'internal' | 'internet-facing',
  agentCidrs: ['10.0.0.0/8'],
  deregistrationDelaySeconds: 60,
  heartbeatTimeoutSeconds: 1800,
  launchCeilingMinutes: LAUNCH_CEILING_MINUTES.default,
  healthCheckGracePeriodSeconds: 120,
  reconcileIntervalMinutes: 5,
  replaceUnhealthyAfterMinutes: REPLACE_UNHEALTHY_AFTER_MINUTES.default,
  metricsNamespace: 'CompileMasters',
  logLevel: 'INFO' as 'DEBUG' | 'INFO' | 'WARN' | 'ERROR',
  dnsResolverCidrs: [] as string[],
} as const;

/**
 * Keys whose embedded value only makes sense for the example site. The last two only count where
 * they are used: the primary's instance with SSM runs (an example id stands in, so the policy
 * names an instance nobody has), the signing key with a vendor repository (without it the
 * bootstrap refuses to install anything).
 */
export const EXAMPLE_ONLY_KEYS = ['primaryHostname', 'primaryCidr', 'primaryCaCertificateFile', 'primaryInstanceIds', 'agentRepositoryKeyFile'] as const;

/** Stands in for the primary's instance when SSM runs it and none is configured: synth works, and warns. */
export const EXAMPLE_PRIMARY_INSTANCE_ID = 'i-0123456789abcdef0';

/** Keys that configure the orchestrator: refused when the primary is run another way. */
const ORCHESTRATOR_KEYS = ['rbacTokenSecretArn', 'orchestratorHostname', 'orchestratorPort', 'orchestratorEnvironment'] as const;

/** Shown in error messages: one valid value per key, in `-c key=value` form. */
export const CONTEXT_EXAMPLES: Record<string, string> = {
  flavor: 'openvox',
  platform: 'ubuntu2404',
  primaryPlatform: 'rhel9',
  primaryArchitecture: 'x86_64',
  primaryRun: 'ssm',
  primaryInstanceIds: '["i-0123456789abcdef0"]',
  primaryInstanceTag: '{"key":"puppet-role","value":"primary"}',
  agentSource: 'repository',
  agentRepositoryKeyFile: './GPG-KEY-openvox.pub',
  primaryHostname: 'puppet.corp.example.com',
  primaryCertname: 'puppet.corp.example.com',
  primaryCidr: '10.20.0.15/32',
  primaryCaCertificateFile: './puppet-ca.pem',
  caPort: '8140',
  puppetdbHostname: 'puppetdb.corp.example.com',
  puppetdbPort: '8081',
  orchestratorHostname: 'puppet.corp.example.com',
  orchestratorPort: '8143',
  orchestratorEnvironment: 'production',
  lifecycleClientCertname: 'compile-master-lifecycle.corp.example.com',
  protectedCertnames: '["puppet-replica.corp.example.com"]',
  dnsAltNames: '["puppet.corp.example.com","puppet"]',
  roleExtension: '{"name":"pp_role","value":"compile_master"}',
  instanceType: 'm6i.xlarge',
  spot: 'false',
  instanceTypes: '["m6i.xlarge","m6a.xlarge","m5.xlarge"]',
  onDemandBaseCapacity: '2',
  onDemandPercentageAboveBaseCapacity: '25',
  amiId: 'ami-0123456789abcdef0',
  amiSsmParameter: '/my-org/golden-ami/compile-master',
  rootVolumeGiB: '50',
  rootDeviceName: '/dev/xvda',
  minSize: '1',
  maxSize: '4',
  desiredCapacity: '2',
  cpuTargetPercent: '70',
  vpcId: 'vpc-0123456789abcdef0',
  // Not the default: shown when the default overlaps the primary's network.
  vpcCidr: '10.100.0.0/16',
  privateSubnetIds: '["subnet-0123456789abcdef0","subnet-0fedcba9876543210"]',
  nlbSubnetIds: '["subnet-0aaaabbbbccccdddd","subnet-0eeeeffff00001111"]',
  nlbScheme: 'internal',
  agentCidrs: '["10.0.0.0/8"]',
  deregistrationDelaySeconds: '60',
  heartbeatTimeoutSeconds: '1800',
  launchCeilingMinutes: '120',
  healthCheckGracePeriodSeconds: '120',
  clientCertSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:compile-masters/client-cert-AbCdEf',
  rbacTokenSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:compile-masters/rbac-token-AbCdEf',
  reconcileIntervalMinutes: '5',
  replaceUnhealthyAfterMinutes: '15',
  metricsNamespace: 'CompileMasters',
  logLevel: 'INFO',
  alarmTopicArn: 'arn:aws:sns:eu-west-1:123456789012:ops-alarms',
  primaryRoute: '{"transitGatewayId":"tgw-0123456789abcdef0"}',
  dnsResolverCidrs: '["10.20.0.2/32","10.21.0.2/32"]',
};

// `-c key=value` on the command line always yields a string, cdk.json yields JSON types:
// accept both so the same key works in either place.
const fromString = (parse: (text: string) => unknown) => (value: unknown, ctx: z.RefinementCtx) => {
  if (typeof value !== 'string') return value;
  try {
    return parse(value.trim());
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: `is not valid JSON (${(error as Error).message})` });
    return z.NEVER;
  }
};

const integer = (min: number, max: number) =>
  z.preprocess(
    fromString((text) => (text === '' ? text : Number(text))),
    z.number().int().min(min).max(max),
  );

const list = <T extends z.ZodType>(item: T, minLength = 0) =>
  z.preprocess(
    fromString((text) => (text.startsWith('[') ? JSON.parse(text) : text.split(',').map((s) => s.trim()).filter(Boolean))),
    z.array(item).min(minLength),
  );

const record = <T extends z.ZodType>(shape: T) =>
  z.preprocess(fromString((text) => JSON.parse(text)), shape);

const certname = z.string().superRefine((value, ctx) => {
  const problem = certnameProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: `"${value}" ${problem}` });
});

const IPV4_CIDR = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\/([0-9]|[12]\d|3[0-2])$/;
const cidr = z.string().regex(IPV4_CIDR, 'must be an IPv4 CIDR such as 10.20.0.15/32');
const agentCidr = cidr.refine((value) => !value.endsWith('/0'), {
  message: 'would admit every address to Puppet Server; list the networks your agents live in',
});
// DNS to anywhere would be an open channel out of the VPC: name the resolvers.
const resolverCidr = cidr.refine((value) => !value.endsWith('/0'), { message: 'would allow DNS to every address; list your resolvers' });
const port = integer(1, 65535);
const secretArn = z
  .string()
  .regex(
    /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$/,
    'must be the complete secret ARN, including the 6-character suffix Secrets Manager appends',
  );
const instanceTypeName = z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, 'must be an EC2 instance type such as m6i.xlarge');
const subnetId = z.string().regex(/^subnet-[0-9a-f]{8,17}$/, 'must be a subnet id such as subnet-0123456789abcdef0');

const ContextSchema = z
  .object({
    flavor: z.enum(FLAVORS).default(CONTEXT_DEFAULTS.flavor),
    platform: z.enum(PLATFORMS).default(CONTEXT_DEFAULTS.platform),
    // Default to the compile masters' own: resolved in loadConfig.
    primaryPlatform: z.enum(PLATFORMS).optional(),
    primaryArchitecture: z.enum(ARCHITECTURES).optional(),
    // Defaults depend on the flavor: resolved in loadConfig.
    primaryRun: z.enum(PRIMARY_RUN_MODES).optional(),
    primaryInstanceIds: list(z.string()).pipe(primaryInstanceIdsSchema).optional(),
    primaryInstanceTag: record(primaryInstanceTagSchema).optional(),
    agentSource: z.enum(AGENT_SOURCES).optional(),
    agentRepositoryKeyFile: z.string().min(1).optional(),
    primaryHostname: certname.default(CONTEXT_DEFAULTS.primaryHostname),
    primaryCertname: certname.optional(),
    primaryCidr: cidr.default(CONTEXT_DEFAULTS.primaryCidr),
    primaryCaCertificateFile: z.string().min(1).optional(),
    caPort: port.default(CONTEXT_DEFAULTS.caPort),
    puppetdbHostname: certname.optional(),
    puppetdbPort: port.default(CONTEXT_DEFAULTS.puppetdbPort),
    orchestratorHostname: certname.optional(),
    orchestratorPort: port.default(CONTEXT_DEFAULTS.orchestratorPort),
    orchestratorEnvironment: z
      .string()
      .regex(ENVIRONMENT_NAME_PATTERN, ENVIRONMENT_NAME_RULE)
      .default(CONTEXT_DEFAULTS.orchestratorEnvironment),
    lifecycleClientCertname: certname.default(CONTEXT_DEFAULTS.lifecycleClientCertname),
    protectedCertnames: list(certname).default([...CONTEXT_DEFAULTS.protectedCertnames]),
    dnsAltNames: list(certname).default([...CONTEXT_DEFAULTS.dnsAltNames]),
    roleExtension: record(
      z.object({ name: z.string(), value: z.string() }).superRefine(({ name, value }, ctx) => {
        const problem = configuredExtensionProblem(name, value);
        if (problem) ctx.addIssue({ code: 'custom', message: `must be an allowed Puppet extension short name such as pp_role with its value: ${JSON.stringify(name)} ${problem}` });
      }),
    ).default({ ...CONTEXT_DEFAULTS.roleExtension }),
    instanceType: instanceTypeName.default(CONTEXT_DEFAULTS.instanceType),
    spot: z.preprocess(fromString((text) => ({ true: true, false: false })[text] ?? text), z.boolean()).default(CONTEXT_DEFAULTS.spot),
    // No default here: it depends on whether instanceType is set (resolveCapacity).
    instanceTypes: list(instanceTypeName, 1).optional(),
    onDemandBaseCapacity: integer(0, 100).default(CONTEXT_DEFAULTS.onDemandBaseCapacity),
    onDemandPercentageAboveBaseCapacity: integer(0, 100).default(CONTEXT_DEFAULTS.onDemandPercentageAboveBaseCapacity),
    amiId: z.string().regex(/^ami-[0-9a-f]{8,17}$/, 'must be an AMI id such as ami-0123456789abcdef0').optional(),
    amiSsmParameter: z.string().regex(/^\/[A-Za-z0-9_./-]+$/, 'must be an SSM parameter name starting with /').optional(),
    rootVolumeGiB: integer(8, 16384).default(CONTEXT_DEFAULTS.rootVolumeGiB),
    // The platform's own by default: resolved in loadConfig.
    rootDeviceName: z
      .string()
      .regex(/^\/dev\/[a-z0-9]+$/, 'must be a device name such as /dev/xvda')
      .optional(),
    minSize: integer(0, 100).default(CONTEXT_DEFAULTS.minSize),
    maxSize: integer(1, 100).default(CONTEXT_DEFAULTS.maxSize),
    desiredCapacity: integer(0, 100).optional(),
    cpuTargetPercent: integer(10, 95).default(CONTEXT_DEFAULTS.cpuTargetPercent),
    vpcId: z.string().regex(/^vpc-[0-9a-f]{8,17}$/, 'must be a VPC id such as vpc-0123456789abcdef0').optional(),
    vpcCidr: cidr.default(CONTEXT_DEFAULTS.vpcCidr),
    privateSubnetIds: list(subnetId).optional(),
    nlbSubnetIds: list(subnetId).optional(),
    nlbScheme: z.enum(['internal', 'internet-facing']).default(CONTEXT_DEFAULTS.nlbScheme),
    // No default here: an internet-facing load balancer must name its agents (see superRefine).
    agentCidrs: list(agentCidr, 1).optional(),
    deregistrationDelaySeconds: integer(0, 3600).default(CONTEXT_DEFAULTS.deregistrationDelaySeconds),
    heartbeatTimeoutSeconds: integer(30, 7200).default(CONTEXT_DEFAULTS.heartbeatTimeoutSeconds),
    launchCeilingMinutes: integer(LAUNCH_CEILING_MINUTES.min, LAUNCH_CEILING_MINUTES.max).default(CONTEXT_DEFAULTS.launchCeilingMinutes),
    healthCheckGracePeriodSeconds: integer(0, 7200).default(CONTEXT_DEFAULTS.healthCheckGracePeriodSeconds),
    clientCertSecretArn: secretArn.optional(),
    rbacTokenSecretArn: secretArn.optional(),
    reconcileIntervalMinutes: integer(1, 60).default(CONTEXT_DEFAULTS.reconcileIntervalMinutes),
    // The controller's REPLACE_UNHEALTHY_AFTER_SECONDS: the longest reboot or restart that never costs a node.
    replaceUnhealthyAfterMinutes: integer(REPLACE_UNHEALTHY_AFTER_MINUTES.min, REPLACE_UNHEALTHY_AFTER_MINUTES.max).default(CONTEXT_DEFAULTS.replaceUnhealthyAfterMinutes),
    metricsNamespace: z
      .string()
      .regex(/^[A-Za-z0-9._/#:-]{1,255}$/, 'must be a CloudWatch namespace such as CompileMasters')
      .default(CONTEXT_DEFAULTS.metricsNamespace),
    logLevel: z.enum(['DEBUG', 'INFO', 'WARN', 'ERROR']).default(CONTEXT_DEFAULTS.logLevel),
    alarmTopicArn: z.string().regex(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$/, 'must be an SNS topic ARN').optional(),
    // How the primary is reached (cdk/reachability.ts): judged in loadConfig, after these parse.
    primaryRoute: record(primaryRouteSchema).optional(),
    dnsResolverCidrs: list(resolverCidr).default([...CONTEXT_DEFAULTS.dnsResolverCidrs]),
  })
  .superRefine((c, ctx) => {
    const issue = (key: string, message: string) => ctx.addIssue({ code: 'custom', path: [key], message });
    if (c.minSize > c.maxSize) issue('maxSize', `must be at least minSize (${c.minSize})`);
    if (c.desiredCapacity !== undefined && (c.desiredCapacity < c.minSize || c.desiredCapacity > c.maxSize)) {
      issue('desiredCapacity', `must lie between minSize (${c.minSize}) and maxSize (${c.maxSize})`);
    }
    if (c.amiId && c.amiSsmParameter) issue('amiSsmParameter', 'set either amiId or amiSsmParameter, not both');
    const image = PLATFORM[c.platform].defaultImage;
    if (!c.amiId && !c.amiSsmParameter && image.source === 'none') issue('amiId', `is required with platform ${c.platform}: ${image.howToFind}`);
    if (c.vpcId && !c.privateSubnetIds?.length) issue('privateSubnetIds', 'is required when vpcId is set');
    if (!c.vpcId && c.privateSubnetIds) issue('vpcId', 'is required when privateSubnetIds is set');
    if (!c.vpcId && c.nlbSubnetIds) issue('vpcId', 'is required when nlbSubnetIds is set');
    if (c.vpcId && c.nlbScheme === 'internet-facing' && !c.nlbSubnetIds?.length) {
      issue('nlbSubnetIds', 'is required (public subnets) when nlbScheme is internet-facing in an existing VPC');
    }
    if (c.nlbScheme === 'internet-facing' && c.agentCidrs === undefined) {
      issue('agentCidrs', `is required when nlbScheme is internet-facing: name the agents' public CIDRs (the default ${CONTEXT_DEFAULTS.agentCidrs.join(', ')} is for an internal load balancer)`);
    }
    for (const { key, message } of launchBudgetProblems(c)) issue(key, message);
  });

type ParsedContext = z.output<typeof ContextSchema>;


export interface CompileMasterConfig
  extends Omit<
    ParsedContext,
    | 'primaryCertname'
    | 'puppetdbHostname'
    | 'orchestratorHostname'
    | 'primaryCaCertificateFile'
    | 'agentCidrs'
    | 'primaryRun'
    | 'primaryInstanceIds'
    | 'primaryInstanceTag'
    | 'agentSource'
    | 'agentRepositoryKeyFile'
    | 'rootDeviceName'
    | 'primaryPlatform'
    | 'primaryArchitecture'
    | 'instanceTypes'
  > {
  /** What the group may launch, the launch template's type (instanceType) first; just that one with spot off. */
  readonly instanceTypes: string[];
  /** The compile masters' architecture, from instanceType (cdk/platform.ts). */
  readonly architecture: Architecture;
  readonly rootDeviceName: string;
  /** The primary's platform and architecture: PE serves compilers of its own kind only. */
  readonly primaryPlatform: Platform;
  readonly primaryArchitecture: Architecture;
  readonly primaryRun: PrimaryRunMode;
  /** Set exactly when primaryRun is ssm. */
  readonly primaryInstances: PrimaryInstances | undefined;
  readonly agentSource: AgentSource;
  /** The vendor's public signing key (ASCII-armored), read from agentRepositoryKeyFile. */
  readonly agentRepositoryKey: string | undefined;
  readonly agentCidrs: string[];
  readonly primaryCertname: string;
  readonly puppetdbHostname: string;
  readonly orchestratorHostname: string;
  /** PEM text of the primary's CA certificate(s); public, read from primaryCaCertificateFile. */
  readonly primaryCaCertificate: string | undefined;
  /** The certnames the controller must never sign or purge, whatever the registry says. */
  readonly allProtectedCertnames: string[];
  /** Keys still at their example-site value: synth warns, the node agent will not enroll. */
  readonly exampleKeysInUse: string[];
}

export const CONTEXT_KEYS = Object.keys(ContextSchema.shape) as (keyof ParsedContext)[];

/**
 * Reads and validates every context key. `baseDir` resolves a relative primaryCaCertificateFile
 * (the directory `cdk` runs in).
 */
export function loadConfig(getContext: (key: string) => unknown, baseDir = process.cwd()): CompileMasterConfig {
  const raw = Object.fromEntries(CONTEXT_KEYS.map((key) => [key, getContext(key)]));
  const result = ContextSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(describeIssues(result.error.issues, raw), { hint: HINT });
  const parsed = result.data;
  const flavor = parsed.flavor;
  const primaryRun = parsed.primaryRun ?? defaultPrimaryRun(flavor);
  const agentSource = parsed.agentSource ?? defaultAgentSource(flavor);
  const flavorIssues = flavorProblems({ flavor, primaryRun, agentSource }, raw);
  const { capacity, issues: capacityIssues } = resolveCapacity(parsed, (key) => raw[key] !== undefined);
  const keyIssues = [...flavorIssues, ...capacityIssues.map(({ key, message }) => ({ path: [key], message }))];
  if (keyIssues.length > 0) throw new ConfigError(describeIssues(keyIssues, raw), { hint: HINT });
  const unreachable = primaryReachabilityProblem(parsed);
  if (unreachable) {
    throw new ConfigError(describeIssues([{ path: [unreachable.key], message: unreachable.message }], raw), {
      hint: 'the README\'s "Connectivity" section lists the ways a compile tier reaches its primary, and what to set up on your side',
    });
  }

  const primaryCertname = parsed.primaryCertname ?? parsed.primaryHostname;
  const puppetdbHostname = parsed.puppetdbHostname ?? parsed.primaryHostname;
  const orchestratorHostname = parsed.orchestratorHostname ?? parsed.primaryHostname;
  const primaryCaCertificate = parsed.primaryCaCertificateFile
    ? readCaCertificate(parsed.primaryCaCertificateFile, baseDir)
    : undefined;
  const agentRepositoryKey = parsed.agentRepositoryKeyFile ? readSigningKey(parsed.agentRepositoryKeyFile, baseDir) : undefined;
  const primaryInstances: PrimaryInstances | undefined =
    primaryRun !== 'ssm'
      ? undefined
      : parsed.primaryInstanceTag
        ? { tag: parsed.primaryInstanceTag }
        : { instanceIds: parsed.primaryInstanceIds ?? [EXAMPLE_PRIMARY_INSTANCE_ID] };
  const { primaryInstanceIds: _ids, primaryInstanceTag: _tag, agentRepositoryKeyFile: _key, ...rest } = parsed;

  // Every type of the group has this one architecture (resolveCapacity refuses a mix).
  const architecture = instanceArchitecture(capacity.instanceType);
  return {
    ...rest,
    ...capacity,
    architecture,
    rootDeviceName: parsed.rootDeviceName ?? PLATFORM[parsed.platform].rootDeviceName,
    primaryPlatform: parsed.primaryPlatform ?? parsed.platform,
    primaryArchitecture: parsed.primaryArchitecture ?? architecture,
    primaryRun,
    primaryInstances,
    agentSource,
    agentRepositoryKey,
    agentCidrs: parsed.agentCidrs ?? [...CONTEXT_DEFAULTS.agentCidrs],
    primaryCertname,
    puppetdbHostname,
    orchestratorHostname,
    primaryCaCertificate,
    allProtectedCertnames: [
      ...new Set([
        primaryCertname,
        parsed.primaryHostname,
        puppetdbHostname,
        orchestratorHostname,
        parsed.lifecycleClientCertname,
        ...parsed.protectedCertnames,
      ]),
    ],
    exampleKeysInUse: EXAMPLE_ONLY_KEYS.filter((key) => {
      switch (key) {
        case 'primaryCaCertificateFile':
          return primaryCaCertificate === undefined;
        case 'primaryInstanceIds':
          return primaryRun === 'ssm' && raw.primaryInstanceIds === undefined && raw.primaryInstanceTag === undefined;
        case 'agentRepositoryKeyFile':
          return agentSource === 'repository' && agentRepositoryKey === undefined;
        default:
          return raw[key] === undefined;
      }
    }),
  };
}

interface Issue {
  readonly path: readonly PropertyKey[];
  readonly message: string;
}

/** The rules between keys that follow from the flavor and from how the primary is run. */
function flavorProblems(
  c: { flavor: Flavor; primaryRun: PrimaryRunMode; agentSource: AgentSource },
  raw: Record<string, unknown>,
): Issue[] {
  const issues: Issue[] = [];
  const issue = (key: string, message: string) => issues.push({ path: [key], message });
  const isSet = (key: string) => raw[key] !== undefined;
  const flavorSays = `with flavor ${c.flavor} (${FLAVOR[c.flavor].title})`;

  const runProblem = primaryRunProblem(c.flavor, c.primaryRun);
  if (runProblem) issue('primaryRun', `${runProblem}`);
  if (c.primaryRun !== 'orchestrator') {
    for (const key of ORCHESTRATOR_KEYS.filter(isSet)) issue(key, `is only used with primaryRun orchestrator (primaryRun is ${c.primaryRun})`);
  }
  if (c.primaryRun === 'ssm') {
    if (isSet('primaryInstanceIds') && isSet('primaryInstanceTag')) issue('primaryInstanceTag', 'set either primaryInstanceIds or primaryInstanceTag, not both');
  } else {
    for (const key of ['primaryInstanceIds', 'primaryInstanceTag'].filter(isSet)) issue(key, `is only used with primaryRun ssm (primaryRun is ${c.primaryRun})`);
  }

  const sourceProblem = agentSourceProblem(c.flavor, c.agentSource);
  if (sourceProblem) issue('agentSource', `${sourceProblem} ${flavorSays}`);
  if (c.agentSource !== 'repository' && isSet('agentRepositoryKeyFile')) {
    issue('agentRepositoryKeyFile', `is only used with agentSource repository (agentSource is ${c.agentSource})`);
  }
  return issues;
}

const HINT = 'set the key in cdk.json "context" or pass -c key=value; the README lists every key and its default';

function describeIssues(issues: readonly Issue[], raw: Record<string, unknown>): string {
  const lines = issues.map((issue) => {
    const key = String(issue.path[0] ?? '(context)');
    const given = raw[key] === undefined ? 'not set' : `got ${JSON.stringify(raw[key])}`;
    const example = CONTEXT_EXAMPLES[key];
    return `  - ${issue.path.map(String).join('.')}: ${issue.message} (${given})${example ? `. Example: -c ${key}=${example}` : ''}`;
  });
  return `Invalid CDK context:\n${lines.join('\n')}`;
}

function readCaCertificate(file: string, baseDir: string): string {
  const path = isAbsolute(file) ? file : resolve(baseDir, file);
  const example = `Example: -c primaryCaCertificateFile=${CONTEXT_EXAMPLES.primaryCaCertificateFile}`;
  if (!existsSync(path)) {
    throw new ConfigError(`Invalid CDK context:\n  - primaryCaCertificateFile: ${path} does not exist. ${example}`, {
      hint: 'copy the CA certificate from the primary (puppet config print localcacert --section server)',
    });
  }
  const pem = readFileSync(path, 'utf8');
  if (!/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.test(pem) || /PRIVATE KEY-----/.test(pem)) {
    throw new ConfigError(
      `Invalid CDK context:\n  - primaryCaCertificateFile: ${path} must hold PEM certificate(s) and no private key. ${example}`,
      { hint: 'use the public CA certificate (ca.pem), never ca_key.pem' },
    );
  }
  return pem;
}

/** The vendor's public signing key: an ASCII-armored public key block, never a private one. */
function readSigningKey(file: string, baseDir: string): string {
  const path = isAbsolute(file) ? file : resolve(baseDir, file);
  const example = `Example: -c agentRepositoryKeyFile=${CONTEXT_EXAMPLES.agentRepositoryKeyFile}`;
  const hint = "download the vendor's public key (OpenVox: GPG-KEY-openvox.pub from yum.voxpupuli.org; Puppet: the RPM-GPG-KEY-puppet key from yum.puppet.com), check its fingerprint against the vendor's published one, and name the file";
  if (!existsSync(path)) {
    throw new ConfigError(`Invalid CDK context:\n  - agentRepositoryKeyFile: ${path} does not exist. ${example}`, { hint });
  }
  const key = readFileSync(path, 'utf8');
  if (!/-----BEGIN PGP PUBLIC KEY BLOCK-----[\s\S]+?-----END PGP PUBLIC KEY BLOCK-----/.test(key) || /PRIVATE KEY/.test(key)) {
    throw new ConfigError(
      `Invalid CDK context:\n  - agentRepositoryKeyFile: ${path} must hold an ASCII-armored PGP public key block and no private key. ${example}`,
      { hint },
    );
  }
  return key;
}

/** The primary's instances as the operator named them; undefined while only the example id stands in. */
export function namedPrimaryInstances(config: Pick<CompileMasterConfig, 'primaryInstances' | 'exampleKeysInUse'>): PrimaryInstances | undefined {
  return config.exampleKeysInUse.includes('primaryInstanceIds') ? undefined : config.primaryInstances;
}
