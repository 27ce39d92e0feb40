import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import {
  AGENT_CONFIG_PATH,
  applyContent,
  BUNDLED_FILES,
  CA_CERTIFICATE_PATH,
  ContentPropertiesSchema,
  NODE_RUNTIME_BINARY_PATH,
  NODE_RUNTIME_MANIFEST_PATH,
  PACKAGE_SIGNING_KEY_PATH,
  planContent,
} from '../../../lambdas/efs-seeder/content';
import { handler } from '../../../lambdas/efs-seeder/handler';

const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function bundleDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'seeder-bundle-'));
  for (const { path } of BUNDLED_FILES) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), `content of ${path}\n`);
  }
  return dir;
}

const properties = (extra: Record<string, unknown> = {}) =>
  ContentPropertiesSchema.parse({
    ServiceToken: 'arn:aws:lambda:eu-west-1:123456789012:function:provider',
    AgentConfig: '{"primaryServer":"puppet.example.internal","caPort":8140}',
    ContentHash: 'abc123',
    ...extra,
  });

function filesUnder(root: string, prefix = ''): string[] {
  return readdirSync(join(root, prefix), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(root, join(prefix, entry.name)) : [join(prefix, entry.name)],
  );
}

describe('EFS content', () => {
  it('is the bundled files plus the agent configuration and the CA, with their modes', async () => {
    const root = mkdtempSync(join(tmpdir(), 'efs-'));
    await applyContent(root, await planContent(properties({ CaCertificate: CA }), bundleDir()));

    expect(filesUnder(root).sort()).toEqual(
      ['bootstrap.sh', 'config/agent.json', 'config/ca.pem', 'node-agent/compile-master-agent.service', 'node-agent/compile-master-crl-refresh.service', 'node-agent/compile-master-readiness.service', 'node-agent/node-agent.mjs', NODE_RUNTIME_MANIFEST_PATH, NODE_RUNTIME_BINARY_PATH],
    );
    expect(statSync(join(root, 'bootstrap.sh')).mode & 0o777).toBe(0o755);
    expect(statSync(join(root, NODE_RUNTIME_BINARY_PATH)).mode & 0o777).toBe(0o755);
    expect(readFileSync(join(root, NODE_RUNTIME_BINARY_PATH), 'utf8')).toBe(`content of ${NODE_RUNTIME_BINARY_PATH}\n`);
    expect(statSync(join(root, NODE_RUNTIME_MANIFEST_PATH)).mode & 0o777).toBe(0o644);
    expect(statSync(join(root, 'node-agent/node-agent.mjs')).mode & 0o777).toBe(0o644);
    expect(statSync(join(root, AGENT_CONFIG_PATH)).mode & 0o777).toBe(0o644);
    expect(JSON.parse(readFileSync(join(root, AGENT_CONFIG_PATH), 'utf8'))).toEqual({
      primaryServer: 'puppet.example.internal',
      caPort: 8140,
    });
    expect(readFileSync(join(root, CA_CERTIFICATE_PATH), 'utf8')).toBe(CA);
  });

  it('replaces what an earlier deploy wrote, and drops a CA certificate no longer configured', async () => {
    const root = mkdtempSync(join(tmpdir(), 'efs-'));
    const bundle = bundleDir();
    await applyContent(root, await planContent(properties({ CaCertificate: CA }), bundle));
    writeFileSync(join(bundle, 'bootstrap.sh'), 'new bootstrap\n');

    await applyContent(root, await planContent(properties(), bundle));

    expect(readFileSync(join(root, 'bootstrap.sh'), 'utf8')).toBe('new bootstrap\n');
    expect(filesUnder(root)).not.toContain(CA_CERTIFICATE_PATH);
    expect(filesUnder(root).filter((file) => file.endsWith('.tmp'))).toEqual([]);
  });

  it('writes the pinned package-signing key when the stack sends one, and drops it when it no longer does', async () => {
    const root = mkdtempSync(join(tmpdir(), 'efs-'));
    const bundle = bundleDir();
    const key = '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGexample\n-----END PGP PUBLIC KEY BLOCK-----\n';
    await applyContent(root, await planContent(properties({ CaCertificate: CA, PackageSigningKey: key }), bundle));
    expect(readFileSync(join(root, PACKAGE_SIGNING_KEY_PATH), 'utf8')).toBe(key);
    expect(statSync(join(root, PACKAGE_SIGNING_KEY_PATH)).mode & 0o777).toBe(0o644);

    await applyContent(root, await planContent(properties({ CaCertificate: CA }), bundle));
    expect(filesUnder(root)).not.toContain(PACKAGE_SIGNING_KEY_PATH);
    expect(filesUnder(root)).toContain(CA_CERTIFICATE_PATH);
  });

  it('refuses to plan from a package that lacks a file, before anything is written', async () => {
    const bundle = bundleDir();
    rmSync(join(bundle, NODE_RUNTIME_BINARY_PATH));
    await expect(planContent(properties({ CaCertificate: CA }), bundle)).rejects.toThrow(/ENOENT.*node-runtime\/node/);
  });

  it('refuses properties that are not what the stack sends', () => {
    expect(ContentPropertiesSchema.safeParse({ AgentConfig: '{}', ContentHash: 'x', PackageSigningKey: '-----BEGIN PGP PRIVATE KEY BLOCK-----' }).success).toBe(false);
    expect(ContentPropertiesSchema.safeParse({ AgentConfig: '[1,2]', ContentHash: 'x' }).success).toBe(false);
    expect(ContentPropertiesSchema.safeParse({ AgentConfig: '{', ContentHash: 'x' }).success).toBe(false);
    expect(ContentPropertiesSchema.safeParse({ AgentConfig: '{}', ContentHash: 'x', CaCertificate: 'not a pem' }).success).toBe(false);
  });
});

describe('custom resource handler', () => {
  const event = (requestType: 'Create' | 'Delete', resourceProperties: Record<string, unknown>) =>
    ({
      RequestType: requestType,
      PhysicalResourceId: 'compile-masters-efs-content',
      ResourceProperties: { ServiceToken: 'arn:aws:lambda:eu-west-1:123456789012:function:provider', ...resourceProperties },
    }) as unknown as CloudFormationCustomResourceEvent;

  it('leaves EFS alone on delete, so a stack delete cannot fail here', async () => {
    await expect(handler(event('Delete', {}))).resolves.toEqual({ PhysicalResourceId: 'compile-masters-efs-content' });
  });

  it('fails a create with a message that names the bad property', async () => {
    await expect(handler(event('Create', { AgentConfig: 'nope', ContentHash: 'x' }))).rejects.toThrow(/AgentConfig must be a JSON object/);
  });
});
