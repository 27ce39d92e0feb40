/**
 * `npm run bench:coldstart`: bundles the controller with the stack's own bundling options
 * (cdk/lambda-defaults.ts as cdk/constructs/lifecycle-controller.ts calls it: esbuild, ESM,
 * minified, source map, platform node, target from the runtime, the AWS SDK bundled in) and
 * measures the bundle's size and the time a fresh `node` process, with the function's
 * NODE_OPTIONS, takes to import it: the module's own share of a cold start (parse, compile, run
 * the top level: configuration parsed, clients built). Median of several processes. Also prints
 * where the bytes come from, and the figures with the SDK left to the runtime, for comparison.
 * The last stdout line is JSON.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type { Metafile } from 'esbuild';
import { CONTROLLER_CODE } from '../cdk/constructs/lifecycle-controller';
import { PROJECT_ROOT as ROOT, SOURCE_MAPS_ENVIRONMENT } from '../cdk/lambda-defaults';
import { bundleLikeStack } from '../test/support/stack-bundle';
import { ENVIRONMENT_EXAMPLES } from '../lambdas/controller/config';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 9);

/** A complete environment, as the stack sets it: the module parses it at import. */
const ENVIRONMENT: Record<string, string> = {
  ...ENVIRONMENT_EXAMPLES,
  // The Lambda runtime is newer than this machine's Node.js; its SDK warning is noise here.
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  ...SOURCE_MAPS_ENVIRONMENT,
};

/** Milliseconds to import the bundle in a fresh process (after Node.js itself has started). */
async function importTime(file: string): Promise<number> {
  const script = `const t = performance.now(); await import(${JSON.stringify(pathToFileURL(file).href)}); process.stdout.write(String(performance.now() - t));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...ENVIRONMENT },
  });
  return Number(stdout);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function topPackages(metafile: Metafile, count: number): string {
  const bytes = new Map<string, number>();
  for (const output of Object.values(metafile.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
      const name = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input)?.[1] ?? input.split('/').slice(0, 2).join('/');
      bytes.set(name, (bytes.get(name) ?? 0) + bytesInOutput);
    }
  }
  return [...bytes]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, size]) => `  ${(size / 1024).toFixed(0).padStart(5)} KB  ${name}`)
    .join('\n');
}

async function measure(label: string, sdkFromRuntime: boolean): Promise<{ bytes: number; ms: number }> {
  // Under the project, so a bundle that leaves the SDK to the runtime still finds it in node_modules.
  const outdir = mkdtempSync(join(ROOT, 'node_modules', '.coldstart-'));
  try {
    const { file, metafile } = await bundleLikeStack(CONTROLLER_CODE, outdir, { sdkFromRuntime });
    const bytes = statSync(file).size;
    await importTime(file); // warm the file cache
    const times: number[] = [];
    for (let sample = 0; sample < SAMPLES; sample++) times.push(await importTime(file));
    const ms = median(times);
    console.log(`${label}: ${(bytes / 1024).toFixed(0)} KB, import median ${ms.toFixed(1)} ms (min ${Math.min(...times).toFixed(1)}, max ${Math.max(...times).toFixed(1)}, ${SAMPLES} processes)`);
    if (!sdkFromRuntime) console.log(`largest contributors:\n${topPackages(metafile, 8)}`);
    return { bytes, ms };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  await measure('for comparison, with the runtime providing @aws-sdk/* (bundleAwsSDK: false)', true);
  const stack = await measure('as the stack bundles it (bundleAwsSDK: true)', false);
  console.log(JSON.stringify({ bundle_bytes: stack.bytes, init_ms: Number(stack.ms.toFixed(1)) }));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
