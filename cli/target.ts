import { existsSync } from 'node:fs';
import { namedPrimaryInstances, type CompileMasterConfig } from '../cdk/config';
import { SecretsManagerSecrets } from '../lambdas/controller/aws/secrets';
import type { ClientBundle, SecretsPort } from '../lambdas/controller/ports';
import { ConfigError } from '../lib/errors';
import { defaultPrimaryRun, FLAVOR, primaryRunProblem, type Flavor, type PrimaryRunMode } from '../lib/flavor';
import type { PrimaryInstances } from '../lib/primary-instances';
import { loadLab, orchestratorToken, readPems, type LabDescription } from '../lab/running-lab';
import { readSecretInputs, type AwsClients, type CliDeps } from './deps';
import { describeStack, loadContext, type DeployedStack } from './stack';

/** Where a tier lives: a deployed stack, the Puppet lab, or explicit ARNs, files and URLs. */
export interface TargetOptions {
  stack?: string;
  lab?: boolean;
  region?: string;
  cdkJson?: string;
  certSecret?: string;
  tokenSecret?: string;
  cert?: string;
  key?: string;
  ca?: string;
  tokenFile?: string;
  caUrl?: string;
  puppetdbUrl?: string;
  orchestratorUrl?: string;
  /** Without --stack: the site's flavor and primary run (default: cdk.json's, else PE's). */
  flavor?: Flavor;
  primaryRun?: PrimaryRunMode;
}

export interface PuppetEndpoints {
  ca: string;
  puppetdb: string;
  /** Undefined only where no orchestrator runs the primary and none was named. */
  orchestrator: string | undefined;
}

/** How the controller converges the primary, as doctor checks it. */
export interface PrimaryRunTarget {
  flavor: Flavor;
  mode: PrimaryRunMode;
  /** Where flavor and mode came from, for the report. */
  source: string;
  /** With ssm: the primary's instance(s) from cdk.json; undefined when it names none. */
  instances: PrimaryInstances | undefined;
  /** The deployed stack and cdk.json disagree about flavor or primary run: said, not guessed. */
  mismatch: string | undefined;
}

export interface Target {
  /** Where the secrets come from, for the report. */
  secretsSource: string;
  /** The command that fixes a missing or wrong secret here. */
  secretsFix: string;
  /** rbacToken() is only asked for with the orchestrator: nothing else needs a token. */
  secrets: SecretsPort;
  endpoints: PuppetEndpoints;
  primaryRun: PrimaryRunTarget;
  aws: AwsClients | undefined;
  stack: DeployedStack | undefined;
  lab: LabDescription | undefined;
}

export async function resolveTarget(options: TargetOptions, deps: CliDeps): Promise<Target> {
  if (options.stack !== undefined && options.lab) throw new ConfigError('Pass either --stack or --lab, not both');
  if (options.stack !== undefined && (options.flavor !== undefined || options.primaryRun !== undefined)) {
    throw new ConfigError('--flavor and --primary-run are for --lab and local files', { hint: "with --stack, the deployed stack's Flavor and PrimaryRun outputs decide" });
  }
  const lab = options.lab ? loadLab() : undefined;
  const localRun = lab || options.stack !== undefined ? undefined : primaryRunOf(options, undefined);
  const needsAws = !lab && (options.stack !== undefined || options.certSecret !== undefined || options.tokenSecret !== undefined || localRun?.mode === 'ssm');
  const aws = needsAws ? deps.aws(options.region) : undefined;
  const stack = aws && options.stack !== undefined ? await describeStack(aws.cloudFormation, options.stack) : undefined;
  const primaryRun = localRun ?? primaryRunOf(options, stack);
  return {
    ...secretsOf(options, deps, lab, aws, stack, primaryRun.mode === 'orchestrator'),
    endpoints: endpointsOf(options, lab, primaryRun.mode === 'orchestrator'),
    primaryRun,
    aws,
    stack,
    lab,
  };
}

/**
 * A deployed stack's outputs decide; elsewhere the flags, then cdk.json's context when there is
 * one, then PE with the orchestrator (the lab's primary, and stacks from before flavors).
 */
function primaryRunOf(options: TargetOptions, stack: DeployedStack | undefined): PrimaryRunTarget {
  const cdkJson = options.cdkJson ?? 'cdk.json';
  const context = !options.lab && existsSync(cdkJson) ? loadContext(cdkJson) : undefined;
  const instances = context && namedPrimaryInstances(context);
  if (stack) {
    const { Flavor: flavor, PrimaryRun: mode } = stack.outputs;
    const disagree = context && (context.flavor !== flavor || context.primaryRun !== mode);
    return {
      flavor,
      mode,
      source: `stack ${stack.stackName}'s outputs`,
      instances,
      mismatch: disagree ? `${cdkJson} says ${context.flavor} with ${context.primaryRun}, the deployed stack ${flavor} with ${mode}` : undefined,
    };
  }
  const flagged = options.flavor !== undefined || options.primaryRun !== undefined;
  const flavor = options.flavor ?? context?.flavor ?? 'pe';
  // Another flavor than cdk.json's takes its own default run, not one meant for cdk.json's flavor.
  const mode = options.primaryRun ?? (flavor === context?.flavor ? context.primaryRun : undefined) ?? defaultPrimaryRun(flavor);
  const problem = primaryRunProblem(flavor, mode);
  if (problem) throw new ConfigError(`--primary-run ${mode} with ${FLAVOR[flavor].title}: ${problem}`);
  return { flavor, mode, source: flagged ? 'the command line' : context ? cdkJson : options.lab ? 'the lab (PE with its orchestrator double)' : 'the default', instances, mismatch: undefined };
}

function secretsOf(options: TargetOptions, deps: CliDeps, lab: LabDescription | undefined, aws: AwsClients | undefined, stack: DeployedStack | undefined, withToken: boolean) {
  if (!withToken && (options.tokenFile !== undefined || options.tokenSecret !== undefined)) {
    throw new ConfigError(`${options.tokenFile !== undefined ? '--token-file' : '--token-secret'} has no use here: only a primary run through the orchestrator needs an RBAC token`, {
      hint: 'drop it, or pass --flavor pe --primary-run orchestrator if this site runs PE with the orchestrator',
    });
  }
  const certSecret = options.certSecret ?? stack?.outputs.ClientCertSecretArn;
  const tokenSecret = withToken ? (options.tokenSecret ?? stack?.outputs.RbacTokenSecretArn) : undefined;
  const stored: SecretsPort | undefined = lab
    ? labSecrets(lab)
    : aws && certSecret && (tokenSecret || !withToken)
      ? new SecretsManagerSecrets(aws.secretsManager, { clientCert: certSecret, ...(tokenSecret ? { rbacToken: tokenSecret } : {}) })
      : undefined;
  const files = options.cert !== undefined || options.tokenFile !== undefined;
  if (!stored && !(options.cert !== undefined && (options.tokenFile !== undefined || !withToken))) {
    throw new ConfigError(`Which tier? Pass --stack NAME (with its cdk.json), --lab, or --cert-secret${withToken ? '/--token-secret ARNs' : ' ARN'}`, {
      hint: `or local files: --cert/--key/--ca${withToken ? ' and --token-file, with --ca-url/--puppetdb-url/--orchestrator-url' : ', with --ca-url/--puppetdb-url'}`,
    });
  }
  const secrets: SecretsPort = {
    clientBundle: () => (options.cert !== undefined ? fileBundle(options, deps) : stored!.clientBundle()),
    rbacToken: () => (options.tokenFile !== undefined ? readSecretInputs({ 'token-file': options.tokenFile }, deps).then((read) => read['token-file']) : stored!.rbacToken()),
  };
  const arns = [certSecret, tokenSecret].filter(Boolean).join(', ');
  const where = lab ? `the lab (${lab.dir})` : certSecret ? `Secrets Manager (${arns})` : 'local files';
  const putFlags = options.stack !== undefined ? `--stack ${options.stack}` : `--cert-secret ${certSecret ?? 'ARN'}${withToken ? ` --token-secret ${tokenSecret ?? 'ARN'}` : ''}`;
  return {
    secretsSource: files && stored ? `local files and ${where}` : where,
    secretsFix: lab ? 'the lab writes these itself: npm run lab:puppet -- up' : `npx compile-masters secrets put ${putFlags} --cert FILE --key FILE --ca FILE${withToken ? ' --token-file FILE' : ''}`,
    secrets,
  };
}

async function fileBundle(options: TargetOptions, deps: CliDeps): Promise<ClientBundle> {
  if (options.key === undefined || options.ca === undefined) throw new ConfigError('--cert, --key and --ca go together');
  return readSecretInputs({ cert: options.cert!, key: options.key, ca: options.ca }, deps);
}

function labSecrets(lab: LabDescription): SecretsPort {
  const pems = readPems(lab);
  return {
    clientBundle: async () => ({ ...pems.lifecycle, ca: pems.ca }),
    rbacToken: async () => orchestratorToken(lab),
  };
}

function endpointsOf(options: TargetOptions, lab: LabDescription | undefined, withOrchestrator: boolean): PuppetEndpoints {
  const flags = { ca: options.caUrl, puppetdb: options.puppetdbUrl, orchestrator: options.orchestratorUrl };
  if (flags.ca && flags.puppetdb && (flags.orchestrator || !withOrchestrator)) return { ca: flags.ca, puppetdb: flags.puppetdb, orchestrator: flags.orchestrator };
  const base = lab ? { ca: lab.ca.url, puppetdb: lab.puppetdb.url, orchestrator: lab.orchestrator.url } : contextEndpoints(loadContext(options.cdkJson ?? 'cdk.json'));
  return { ca: flags.ca ?? base.ca, puppetdb: flags.puppetdb ?? base.puppetdb, orchestrator: flags.orchestrator ?? base.orchestrator };
}

/** The primary's services as the stack's context names them, as the controller will reach them. */
export function contextEndpoints(config: Pick<CompileMasterConfig, 'primaryHostname' | 'caPort' | 'puppetdbHostname' | 'puppetdbPort' | 'orchestratorHostname' | 'orchestratorPort'>): PuppetEndpoints {
  return {
    ca: `https://${config.primaryHostname}:${config.caPort}`,
    puppetdb: `https://${config.puppetdbHostname}:${config.puppetdbPort}`,
    orchestrator: `https://${config.orchestratorHostname}:${config.orchestratorPort}`,
  };
}
