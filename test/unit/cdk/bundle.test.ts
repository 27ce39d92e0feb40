import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONTROLLER_CODE } from '../../../cdk/constructs/lifecycle-controller';
import { lockedRuntime, type NodeArchitecture } from '../../../cdk/node-runtime';
import { BUNDLED_FILES, NODE_RUNTIME_BINARY_PATH, NODE_RUNTIME_MANIFEST_PATH } from '../../../lambdas/efs-seeder/content';
import { bundleLikeStack } from '../../support/stack-bundle';
import { logicalIdByPath, only, synthStack } from './stack-fixture';

// The stack must package the real controller and node-agent sources, offline, with nothing
// prebuilt; this synthesizes it with NodejsFunction's real bundling.
const { app, template } = synthStack({}, { bundle: true });
const root = new URL('../../../', import.meta.url);
const assetDir = (functionPath: string, { app: synthesized, template: synthesizedTemplate } = { app, template }) => {
  const code = synthesizedTemplate.toJSON().Resources[logicalIdByPath(synthesizedTemplate, functionPath)].Properties.Code;
  const hash = String(code.S3Key).replace(/\.zip$/, '');
  return { hash, dir: join(synthesized.outdir, `asset.${hash}`) };
};
const WRITER = 'SharedStorage/Content/Function/Resource';

/** The ELF header's e_machine: what CPU an executable is for, whatever its name says. */
const ELF_MACHINES: Record<NodeArchitecture, number> = { x86_64: 62, arm64: 183 };
function elfMachine(file: string): number {
  const header = Buffer.alloc(20);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, header, 0, header.length, 0);
  } finally {
    closeSync(fd);
  }
  expect(header.subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  // ELFCLASS64, little-endian: where e_machine sits and how it reads.
  expect([header[4], header[5]]).toEqual([2, 1]);
  return header.readUInt16LE(18);
}

/** The writer's package carries the lock's runtime for `architecture`, and the manifest that names it. */
function expectRuntime(dir: string, architecture: NodeArchitecture): void {
  const binary = join(dir, 'files', NODE_RUNTIME_BINARY_PATH);
  const locked = lockedRuntime(architecture);
  expect(elfMachine(binary)).toBe(ELF_MACHINES[architecture]);
  expect(statSync(binary).mode & 0o111).not.toBe(0);
  expect(readFileSync(join(dir, 'files', NODE_RUNTIME_MANIFEST_PATH), 'utf8')).toBe(
    `package=${locked.name}\nversion=${locked.version}\narchitecture=${architecture}\nsha256=${createHash('sha256').update(readFileSync(binary)).digest('hex')}\n`,
  );
}

describe('controller bundle', () => {
  const { dir } = assetDir('LifecycleController/Function/Resource');

  it('is one minified ESM file with a source map that exports the handler', () => {
    expect(readdirSync(dir).sort()).toEqual(['index.mjs', 'index.mjs.map']);
    const code = readFileSync(join(dir, 'index.mjs'), 'utf8');
    expect(code).toMatch(/export\s*\{[^}]*\bas handler\b|export\s*\{[^}]*\bhandler\b/);
  });

  it('is byte for byte what bench:coldstart and the bundle tests build, which carries the environment credential provider only', async () => {
    const outdir = mkdtempSync(join(tmpdir(), 'controller-bundle-'));
    try {
      const { file, metafile } = await bundleLikeStack(CONTROLLER_CODE, outdir);
      expect(readFileSync(file).equals(readFileSync(join(dir, 'index.mjs')))).toBe(true);
      const packages = new Set(Object.keys(metafile.inputs).map((input) => /node_modules\/(@[^/]+\/[^/]+|[^/]+)\//.exec(input)?.[1]));
      expect(packages).toContain('@aws-sdk/credential-provider-env');
      for (const chain of ['@aws-sdk/credential-provider-node', '@aws-sdk/credential-provider-ini', '@aws-sdk/credential-provider-sso', '@aws-sdk/nested-clients']) {
        expect(packages).not.toContain(chain);
      }
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  });
});

describe('EFS content writer bundle', () => {
  const { hash, dir } = assetDir(WRITER);

  it('carries the Node.js runtime for the stack\'s architecture (x86_64 by default), at the lock file\'s version', () => {
    expectRuntime(dir, 'x86_64');
    if (process.arch === 'x64') {
      const run = spawnSync(join(dir, 'files', NODE_RUNTIME_BINARY_PATH), ['--version'], { encoding: 'utf8' });
      expect(run.stdout.trim()).toBe(`v${lockedRuntime('x86_64').version}`);
    }
  });

  it('fits a Lambda function package (250 MB unzipped)', () => {
    const bytes = (path: string): number => (statSync(path).isDirectory() ? readdirSync(path).reduce((sum, name) => sum + bytes(join(path, name)), 0) : statSync(path).size);
    const total = bytes(dir);
    console.log(`EFS content writer package: ${(total / 1e6).toFixed(1)} MB unzipped`);
    expect(total).toBeLessThan(200e6);
  });

  it('carries the node agent as one self-contained ESM file: it loads and runs with no node_modules anywhere near', () => {
    // scripts/build-node-agent.mjs refuses to build with a package left outside the file.
    const alone = mkdtempSync(join(tmpdir(), 'node-agent-alone-'));
    try {
      copyFileSync(join(dir, 'files/node-agent/node-agent.mjs'), join(alone, 'node-agent.mjs'));
      // With the runtime the package ships for the instances (x86_64) where this host can run it.
      const node = process.arch === 'x64' ? join(dir, 'files', NODE_RUNTIME_BINARY_PATH) : process.execPath;
      const run = spawnSync(node, [join(alone, 'node-agent.mjs'), 'no-such-step'], { cwd: alone, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
      // Its own usage error, from its own code: every module it imports was found in the file.
      expect(run.status).toBe(78);
      expect(run.stderr + run.stdout).toMatch(/"name":"ConfigError".*usage: node-agent\.mjs boot\|shutdown\|crl-refresh/);
    } finally {
      rmSync(alone, { recursive: true, force: true });
    }
  });

  it('carries the units and the bootstrap script unchanged', () => {
    expect(readFileSync(join(dir, 'files/bootstrap.sh'))).toEqual(readFileSync(new URL('node-agent/bootstrap.sh', root)));
    for (const unit of ['compile-master-agent.service', 'compile-master-crl-refresh.service', 'compile-master-readiness.service']) {
      expect(readFileSync(join(dir, 'files/node-agent', unit))).toEqual(readFileSync(new URL(`node-agent/systemd/${unit}`, root)));
    }
  });

  it('has every file the writer copies to EFS', () => {
    for (const { path } of BUNDLED_FILES) expect(statSync(join(dir, 'files', path)).isFile()).toBe(true);
    expect(existsSync(join(dir, 'index.mjs'))).toBe(true);
  });

  it('changes the custom resource whenever the bundle changes, so updates rewrite EFS', () => {
    expect(only(template, 'Custom::CompileMasterEfsContent').properties.ContentHash).toBe(hash);
  });
});

describe('EFS content writer bundle of an arm64 stack', () => {
  // The arm64 runtime is not installed on an x86_64 machine: the synth takes the lock's tarball
  // (fetched once into node_modules/.cache/compile-masters, checked against the lock's integrity).
  const arm = synthStack({ instanceType: 'm7g.xlarge' }, { bundle: true });
  const { dir } = assetDir(WRITER, arm);

  it('carries an aarch64 Node.js, at the lock file\'s version', () => {
    expectRuntime(dir, 'arm64');
  });

  it('differs from the x86_64 stack\'s package, so switching architectures rewrites EFS', () => {
    expect(only(arm.template, 'Custom::CompileMasterEfsContent').properties.ContentHash).not.toBe(only(template, 'Custom::CompileMasterEfsContent').properties.ContentHash);
  });
});
