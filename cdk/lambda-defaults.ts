import { fileURLToPath } from 'node:url';
import { AssetStaging } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';

export const PROJECT_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** The newest Node.js runtime in this aws-cdk-lib that is not deprecated. */
export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;

/** What every function of this project shares: TypeScript from this repository, ESM on ARM. */
export function typescriptFunction(
  entry: string,
  bundling: Partial<nodejs.BundlingOptions> = {},
): Pick<
  nodejs.NodejsFunctionProps,
  'entry' | 'handler' | 'projectRoot' | 'depsLockFilePath' | 'runtime' | 'architecture' | 'bundling'
> {
  return {
    entry: `${PROJECT_ROOT}${entry}`,
    handler: 'handler',
    projectRoot: PROJECT_ROOT,
    depsLockFilePath: `${PROJECT_ROOT}package-lock.json`,
    runtime: LAMBDA_RUNTIME,
    architecture: lambda.Architecture.ARM_64,
    bundling: {
      format: nodejs.OutputFormat.ESM,
      mainFields: ['module', 'main'],
      // CommonJS dependencies (the AWS SDK, undici) `require` Node built-ins, which ESM lacks.
      banner: "import { createRequire as __cmCreateRequire } from 'node:module'; const require = __cmCreateRequire(import.meta.url);",
      minify: true,
      sourceMap: true,
      // Stack traces in the logs need only the mappings and names (file:line:column and function
      // names of the sources); the sources' own text in the map serves debuggers. Without it the
      // controller's map is 2.9 MB instead of 7.6 MB: less for --enable-source-maps to read and
      // parse at every cold start (~12 ms of the import, bench:coldstart), a smaller package.
      sourcesContent: false,
      // Docker bundling otherwise runs esbuild from `/`, where the relative alias below resolves to
      // nothing; local bundling runs from the project root already.
      workingDirectory: AssetStaging.BUNDLING_INPUT_DIR,
      ...bundling,
      esbuildArgs: { ...(bundling.bundleAwsSDK ? ENVIRONMENT_CREDENTIALS_ALIAS : {}), ...bundling.esbuildArgs },
    },
  };
}

/**
 * A bundled SDK client brings its whole default credential chain, with the STS, SSO and sign-in
 * clients some sources use: ~95 KB parsed at every cold start (bench:coldstart), for sources that
 * never answer in Lambda. The bundle takes the environment provider in its place
 * (lambdas/environment-credentials.ts). The path is relative to the project root, esbuild's
 * working directory for local and (with workingDirectory above) Docker bundling alike.
 */
export const ENVIRONMENT_CREDENTIALS_ALIAS = {
  '--alias:@aws-sdk/credential-provider-node': './lambdas/environment-credentials.ts',
};

/** Makes the source maps above count: stack traces point into the TypeScript sources. */
export const SOURCE_MAPS_ENVIRONMENT = { NODE_OPTIONS: '--enable-source-maps' };
