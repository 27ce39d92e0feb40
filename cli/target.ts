import type { CompileMasterConfig } from '../cdk/config';
import { SecretsManagerSecrets } from '../lambdas/controller/aws/secrets';
import type { ClientBundle, SecretsPort } from '../lambdas/controller/ports';
import { ConfigError } from '../lib/errors';
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
}

export interface PuppetEndpoints {
  ca: string;
  puppetdb: string;
  orchestrator: string;
}

export interface Target {
  /** Where the secrets come from, for the report. */
  secretsSource: string;
  /** The command that fixes a missing or wrong secret here. */
  secretsFix: string;
  secrets: SecretsPort;
  endpoints: PuppetEndpoints;
  aws: AwsClients | undefined;
  stack: DeployedStack | undefined;
  lab: LabDescription | undefined;
}

export async function resolveTarget(options: TargetOptions, deps: CliDeps): Promise<Target> {
  if (options.stack !== undefined && options.lab) throw new ConfigError('Pass either --stack or --lab, not both');
  const lab = options.lab ? loadLab() : undefined;
  const needsAws = !lab && (options.stack !== undefined || options.certSecret !== undefined || options.tokenSecret !== undefined);
  const aws = needsAws ? deps.aws(options.region) : undefined;
  const stack = aws && options.stack !== undefined ? await describeStack(aws.cloudFormation, options.stack) : undefined;
  return {
    ...secretsOf(options, deps, lab, aws, stack),
    endpoints: endpointsOf(options, lab),
    aws,
    stack,
    lab,
  };
}

function secretsOf(options: TargetOptions, deps: CliDeps, lab: LabDescription | undefined, aws: AwsClients | undefined, stack: DeployedStack | undefined) {
  const certSecret = options.certSecret ?? stack?.outputs.ClientCertSecretArn;
  const tokenSecret = options.tokenSecret ?? stack?.outputs.RbacTokenSecretArn;
  const stored: SecretsPort | undefined = lab
    ? labSecrets(lab)
    : aws && certSecret && tokenSecret
      ? new SecretsManagerSecrets(aws.secretsManager, { clientCert: certSecret, rbacToken: tokenSecret })
      : undefined;
  const files = options.cert !== undefined || options.tokenFile !== undefined;
  if (!stored && !(options.cert !== undefined && options.tokenFile !== undefined)) {
    throw new ConfigError('Which tier? Pass --stack NAME (with its cdk.json), --lab, or --cert-secret/--token-secret ARNs', {
      hint: 'or local files: --cert/--key/--ca and --token-file, with --ca-url/--puppetdb-url/--orchestrator-url',
    });
  }
  const secrets: SecretsPort = {
    clientBundle: () => (options.cert !== undefined ? fileBundle(options, deps) : stored!.clientBundle()),
    rbacToken: () => (options.tokenFile !== undefined ? readSecretInputs({ 'token-file': options.tokenFile }, deps).then((read) => read['token-file']) : stored!.rbacToken()),
  };
  const where = lab ? `the lab (${lab.dir})` : certSecret ? `Secrets Manager (${certSecret}, ${tokenSecret})` : 'local files';
  const putFlags = options.stack !== undefined ? `--stack ${options.stack}` : `--cert-secret ${certSecret ?? 'ARN'} --token-secret ${tokenSecret ?? 'ARN'}`;
  return {
    secretsSource: files && stored ? `local files and ${where}` : where,
    secretsFix: lab ? 'the lab writes these itself: npm run lab:puppet -- up' : `npx compile-masters secrets put ${putFlags} --cert FILE --key FILE --ca FILE --token-file FILE`,
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

function endpointsOf(options: TargetOptions, lab: LabDescription | undefined): PuppetEndpoints {
  const flags = { ca: options.caUrl, puppetdb: options.puppetdbUrl, orchestrator: options.orchestratorUrl };
  if (flags.ca && flags.puppetdb && flags.orchestrator) return flags as PuppetEndpoints;
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
