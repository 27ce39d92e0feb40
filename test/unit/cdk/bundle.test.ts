import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONTROLLER_CODE } from '../../../cdk/constructs/lifecycle-controller';
import { BUNDLED_FILES } from '../../../lambdas/efs-seeder/content';
import { bundleLikeStack } from '../../support/stack-bundle';
import { logicalIdByPath, only, synthStack } from './stack-fixture';

// The stack must package the real controller and node-agent sources, offline, with nothing
// prebuilt; this synthesizes it with NodejsFunction's real bundling.
const { app, template } = synthStack({}, { bundle: true });
const root = new URL('../../../', import.meta.url);
const assetDir = (functionPath: string) => {
  const code = template.toJSON().Resources[logicalIdByPath(template, functionPath)].Properties.Code;
  const hash = String(code.S3Key).replace(/\.zip$/, '');
  return { hash, dir: join(app.outdir, `asset.${hash}`) };
};

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
  const { hash, dir } = assetDir('SharedStorage/Content/Function/Resource');

  it('carries the node agent as one self-contained ESM file: it loads and runs with no node_modules anywhere near', () => {
    // scripts/build-node-agent.mjs refuses to build with a package left outside the file.
    const alone = mkdtempSync(join(tmpdir(), 'node-agent-alone-'));
    try {
      copyFileSync(join(dir, 'files/node-agent/node-agent.mjs'), join(alone, 'node-agent.mjs'));
      const run = spawnSync(process.execPath, [join(alone, 'node-agent.mjs'), 'no-such-step'], { cwd: alone, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
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
