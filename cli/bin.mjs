#!/usr/bin/env node
// The CLI runs from its TypeScript sources through tsx (installed by `npm ci`): no build step,
// so `npx compile-masters` works in a fresh clone, offline, and always matches the checkout.
import { register } from 'tsx/esm/api';

register();
const { run } = await import('./main.ts');
process.exitCode = await run(process.argv.slice(2));
