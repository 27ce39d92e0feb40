// Bundles the node agent into one file that the instance bootstrap copies from EFS and runs
// with the distribution's Node.js: no node_modules on the instance.
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'dist', 'node-agent', 'node-agent.mjs');

await mkdir(dirname(outfile), { recursive: true });
const result = await build({
  entryPoints: [join(root, 'node-agent', 'src', 'main.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minify: true,
  // Error classes name themselves from their constructor (new.target.name); the journal should say
  // ConfigError, not a minified identifier.
  keepNames: true,
  legalComments: 'none',
  metafile: true,
  // The AWS SDK and undici are CommonJS inside and call require() on Node built-ins, which an ES
  // module does not have.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  logLevel: 'warning',
});

const bytes = Object.values(result.metafile.outputs).reduce((sum, output) => sum + output.bytes, 0);
console.log(JSON.stringify({ outfile, bytes }));
