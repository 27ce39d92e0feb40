/**
 * Builds a Lambda's code the way its NodejsFunction does (aws-lambda-nodejs/lib/bundling.ts turns
 * the same options into an esbuild command line), with esbuild's API so callers also get the
 * metafile. Used by bench:coldstart and by the tests that run the shipped bundle.
 */
import { join } from 'node:path';
import { build, type Metafile } from 'esbuild';
import { PROJECT_ROOT, type typescriptFunction } from '../../cdk/lambda-defaults';

export interface StackBundle {
  file: string;
  metafile: Metafile;
}

/**
 * `sdkFromRuntime` leaves @aws-sdk/* to the Lambda runtime instead (for comparison); `entry`
 * bundles another module with the same options (a test's own entry).
 */
export async function bundleLikeStack(
  code: ReturnType<typeof typescriptFunction>,
  outdir: string,
  { sdkFromRuntime = false, entry = code.entry as string }: { sdkFromRuntime?: boolean; entry?: string } = {},
): Promise<StackBundle> {
  const options = code.bundling ?? {};
  const version = /nodejs(\d+)/.exec(code.runtime?.name ?? '')?.[1];
  if (!version) throw new Error(`cannot read a Node.js version from the runtime ${code.runtime?.name}`);
  const file = join(outdir, 'index.mjs');
  const bundleSdk = options.bundleAwsSDK === true && !sdkFromRuntime;
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    target: `node${version}`,
    platform: 'node',
    format: options.format === 'esm' ? 'esm' : 'cjs',
    outfile: file,
    minify: options.minify ?? false,
    sourcemap: options.sourceMap ?? false,
    sourcesContent: options.sourcesContent ?? true,
    mainFields: options.mainFields,
    banner: options.banner ? { js: options.banner } : undefined,
    external: bundleSdk ? [] : ['@aws-sdk/*'],
    alias: bundleSdk ? aliases(options.esbuildArgs ?? {}) : {},
    absWorkingDir: PROJECT_ROOT,
    metafile: true,
    logLevel: 'error',
  });
  return { file, metafile: result.metafile };
}

/** The extra esbuild CLI arguments, as build options; any other kind would go unmirrored. */
function aliases(esbuildArgs: Record<string, string | boolean | string[]>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(esbuildArgs).map(([flag, value]) => {
      const name = /^--alias:(.+)$/.exec(flag)?.[1];
      if (name === undefined || typeof value !== 'string') throw new Error(`bundleLikeStack does not mirror the esbuild argument ${flag}`);
      return [name, value];
    }),
  );
}
