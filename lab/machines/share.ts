import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type NodeArchitecture, nodeRuntime, runtimeManifest } from '../../cdk/node-runtime';
import { applyContent, NODE_RUNTIME_BINARY_PATH, NODE_RUNTIME_MANIFEST_PATH, planContent } from '../../lambdas/efs-seeder/content';
import type { AgentConfigSchema } from '../../node-agent/src/config';
import { run } from '../processes';
import type * as z from 'zod';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where the instance mounts the EFS share (the stack's user data), and so where machines see it. */
export const SHARE_MOUNT = '/mnt/compile-masters';

/** What the stack's user data runs once the share is mounted. */
export const USER_DATA = `bash ${SHARE_MOUNT}/bootstrap.sh`;

/**
 * Debian's puppet-agent and puppetserver packages (the lab machines' Puppet), where Puppet Inc.'s
 * AIO packages use /opt/puppetlabs and /etc/puppetlabs.
 */
export const DEBIAN_PUPPET = {
  puppetBin: '/usr/bin/puppet',
  confdir: '/etc/puppet',
  ssldir: '/var/lib/puppet/ssl',
  localServerService: 'puppetserver',
} as const;

export type ShareAgentConfig = z.input<typeof AgentConfigSchema>;

/** The lab machines run on this host's CPU: the architecture whose Node.js runtime they get. */
export function hostNodeArchitecture(): NodeArchitecture {
  if (process.arch === 'x64') return 'x86_64';
  if (process.arch === 'arm64') return 'arm64';
  throw new Error(`no Node.js runtime is shipped for ${process.arch} machines`);
}

/**
 * Fills `dir` as the stack's EFS content writer fills the share: the same planContent and
 * applyContent, over the same files (the node-agent bundle from scripts/build-node-agent.mjs, the
 * lock file's Node.js runtime and its manifest, the three units and bootstrap.sh), with this
 * machine's agent.json and the lab CA's certificate.
 */
export async function writeShare(dir: string, options: { agentConfig: ShareAgentConfig; caCertificate: string }): Promise<void> {
  const bundle = await mkdtemp(join(tmpdir(), 'compile-masters-share-'));
  try {
    await assembleBundle(bundle);
    const plan = await planContent(
      { AgentConfig: options.agentConfig as Record<string, unknown>, CaCertificate: options.caCertificate, ContentHash: 'lab' },
      bundle,
    );
    await applyContent(dir, plan);
  } finally {
    await rm(bundle, { recursive: true, force: true });
  }
}

/** The Lambda package's layout, built the way efs-content-writer.ts bundles it at synth. */
async function assembleBundle(bundle: string): Promise<void> {
  run(process.execPath, [join(REPO, 'scripts', 'build-node-agent.mjs')], { cwd: REPO });
  await mkdir(join(bundle, 'node-agent'), { recursive: true });
  const copies: Array<[string, string]> = [
    ['dist/node-agent/node-agent.mjs', 'node-agent/node-agent.mjs'],
    ['node-agent/systemd/compile-master-agent.service', 'node-agent/compile-master-agent.service'],
    ['node-agent/systemd/compile-master-crl-refresh.service', 'node-agent/compile-master-crl-refresh.service'],
    ['node-agent/systemd/compile-master-readiness.service', 'node-agent/compile-master-readiness.service'],
    ['node-agent/bootstrap.sh', 'bootstrap.sh'],
  ];
  for (const [from, to] of copies) await copyFile(join(REPO, from), join(bundle, to));
  const runtime = nodeRuntime(hostNodeArchitecture());
  await mkdir(join(bundle, dirname(NODE_RUNTIME_BINARY_PATH)), { recursive: true });
  await copyFile(runtime.binary, join(bundle, NODE_RUNTIME_BINARY_PATH));
  await writeFile(join(bundle, NODE_RUNTIME_MANIFEST_PATH), runtimeManifest(runtime));
}
