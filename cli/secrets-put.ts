import type { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { PutSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { awsCall } from '../lambdas/controller/aws/call';
import { ConfigError } from '../lib/errors';
import { FLAVOR } from '../lib/flavor';
import { verifyBundle, verifyToken } from './credentials';
import { readSecretInputs, type CliDeps } from './deps';
import { describeStack } from './stack';
import type { TargetOptions } from './target';

export type SecretsPutOptions = Pick<TargetOptions, 'stack' | 'certSecret' | 'tokenSecret' | 'cert' | 'key' | 'ca' | 'tokenFile' | 'region'>;

/**
 * Validates everything before writing anything, so a bad file never replaces a working secret;
 * then stores the bundle as the controller reads it ({"cert","key","ca"} JSON) and the token as
 * plain text. Prints where it stored what, never the values.
 */
export async function secretsPut(options: SecretsPutOptions, deps: CliDeps): Promise<number> {
  const bundleFiles = [options.cert, options.key, options.ca];
  const withBundle = bundleFiles.some((file) => file !== undefined);
  if (withBundle && bundleFiles.some((file) => file === undefined)) {
    throw new ConfigError('--cert, --key and --ca go together', { hint: 'pass all three files of the lifecycle client certificate' });
  }
  if (!withBundle && options.tokenFile === undefined) {
    throw new ConfigError('Nothing to store', { hint: 'pass --cert/--key/--ca, and --token-file where the orchestrator runs the primary' });
  }
  const clients = deps.aws(options.region);
  const arns = await secretArns(options, clients.cloudFormation);
  const clientCertArn = withBundle ? required(arns.clientCert, '--cert-secret') : undefined;
  const tokenArn = options.tokenFile !== undefined ? required(arns.rbacToken, '--token-secret') : undefined;

  const inputs = await readSecretInputs(
    {
      ...(withBundle ? { cert: options.cert!, key: options.key!, ca: options.ca! } : {}),
      ...(options.tokenFile !== undefined ? { 'token-file': options.tokenFile } : {}),
    } as Record<'cert' | 'key' | 'ca' | 'token-file', string>,
    deps,
  );
  const bundle = withBundle ? { cert: inputs.cert, key: inputs.key, ca: inputs.ca } : undefined;
  const summary = bundle && (await verifyBundle(bundle, '--cert/--key/--ca', deps.now()));
  const token = options.tokenFile !== undefined ? verifyToken(inputs['token-file'], `--token-file ${options.tokenFile}`) : undefined;

  if (bundle && summary && clientCertArn) {
    const version = await put(clients.secretsManager, clientCertArn, JSON.stringify(bundle));
    deps.write(`Stored the lifecycle client certificate bundle (CN=${summary.certname ?? '?'}, valid until ${summary.notAfter.toISOString()}) in ${clientCertArn} (version ${version}).\n`);
  }
  if (token !== undefined && tokenArn) {
    const version = await put(clients.secretsManager, tokenArn, token);
    deps.write(`Stored the RBAC token in ${tokenArn} (version ${version}).\n`);
  }
  deps.write('The controller reads the secrets again every 10 minutes: new values apply within that time; keep the old ones valid until then. Check with: npx compile-masters doctor\n');
  return 0;
}

/**
 * Where the secrets go: the stack's outputs, or ARNs given directly. A stack whose primary is not
 * run through the orchestrator has no token secret: a token for it is refused, not dropped.
 */
async function secretArns(options: SecretsPutOptions, cloudFormation: CloudFormationClient): Promise<{ clientCert?: string; rbacToken?: string }> {
  if (options.stack === undefined) return { clientCert: options.certSecret, rbacToken: options.tokenSecret };
  if (options.certSecret !== undefined || options.tokenSecret !== undefined) throw new ConfigError('Pass either --stack or --cert-secret/--token-secret, not both');
  const { outputs } = await describeStack(cloudFormation, options.stack);
  if (options.tokenFile !== undefined && outputs.RbacTokenSecretArn === undefined) {
    throw new ConfigError(`Stack ${options.stack} runs its ${FLAVOR[outputs.Flavor].title} primary with ${outputs.PrimaryRun}, not the orchestrator: it has no RBAC token secret to put --token-file in`, {
      hint: 'drop --token-file: only a primary run through the orchestrator needs a token',
    });
  }
  return { clientCert: outputs.ClientCertSecretArn, rbacToken: outputs.RbacTokenSecretArn };
}

function required(arn: string | undefined, flag: string): string {
  if (arn === undefined) throw new ConfigError(`Where to? Pass --stack NAME or ${flag} ARN`);
  return arn;
}

async function put(client: SecretsManagerClient, arn: string, value: string): Promise<string> {
  const answer = await awsCall('PutSecretValue', () => client.send(new PutSecretValueCommand({ SecretId: arn, SecretString: value })));
  return answer.VersionId ?? 'unknown';
}
