import { randomUUID } from 'node:crypto';
import { access, chmod, constants, copyFile, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as z from 'zod';

/**
 * What the seeder writes under the access point root, relative paths. The bundled ones come
 * from the Lambda package (bundled at synth); the config files from the custom resource.
 */
export const BUNDLED_FILES = [
  { path: 'bootstrap.sh', mode: 0o755 },
  { path: 'node-agent/node-agent.mjs', mode: 0o644 },
  { path: 'node-agent/compile-master-agent.service', mode: 0o644 },
  { path: 'node-agent/compile-master-crl-refresh.service', mode: 0o644 },
  { path: 'node-agent/compile-master-readiness.service', mode: 0o644 },
  // Binary before manifest: the manifest names the binary a deploy has finished writing.
  { path: 'node-runtime/node', mode: 0o755 },
  { path: 'node-runtime/manifest', mode: 0o644 },
] as const;
/**
 * The official Node.js build for the instances' architecture (cdk/node-runtime.ts), and the
 * manifest (version, architecture, SHA-256) bootstrap.sh checks its copy against.
 */
export const NODE_RUNTIME_BINARY_PATH = 'node-runtime/node' satisfies (typeof BUNDLED_FILES)[number]['path'];
export const NODE_RUNTIME_MANIFEST_PATH = 'node-runtime/manifest' satisfies (typeof BUNDLED_FILES)[number]['path'];
export const AGENT_CONFIG_PATH = 'config/agent.json';
export const CA_CERTIFICATE_PATH = 'config/ca.pem';
/** The vendor's public package-signing key (open source, OpenVox); bootstrap.sh trusts no other. */
export const PACKAGE_SIGNING_KEY_PATH = 'config/package-signing-key.asc';

const jsonObject = z.string().transform((text, ctx) => {
  try {
    const value: unknown = JSON.parse(text);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // reported below
  }
  ctx.addIssue({ code: 'custom', message: 'must be a JSON object' });
  return z.NEVER;
});

/** Custom resource properties (CloudFormation hands every scalar over as a string). */
export const ContentPropertiesSchema = z.looseObject({
  AgentConfig: jsonObject,
  CaCertificate: z.string().includes('-----BEGIN CERTIFICATE-----').optional(),
  PackageSigningKey: z.string().includes('-----BEGIN PGP PUBLIC KEY BLOCK-----').optional(),
  ContentHash: z.string().min(1),
});
export type ContentProperties = z.output<typeof ContentPropertiesSchema>;

/** A file to write: its content, or the bundled file to copy (the runtime is ~120 MB, more than to hold in memory). */
export type FileToWrite = { readonly path: string; readonly mode: number } & ({ readonly content: string | Buffer } | { readonly source: string });

export interface ContentPlan {
  readonly write: FileToWrite[];
  /** Files that must not linger from an earlier deploy (a CA certificate or key since removed). */
  readonly remove: string[];
}

export async function planContent(props: ContentProperties, bundleDir: string): Promise<ContentPlan> {
  const bundled = BUNDLED_FILES.map(({ path, mode }) => ({ path, mode, source: join(bundleDir, path) }));
  // A package missing a file fails here, before anything on EFS is replaced.
  await Promise.all(bundled.map(({ source }) => access(source, constants.R_OK)));
  const config: FileToWrite = {
    path: AGENT_CONFIG_PATH,
    mode: 0o644,
    content: `${JSON.stringify(props.AgentConfig, null, 2)}\n`,
  };
  const optional = [
    { path: CA_CERTIFICATE_PATH, content: props.CaCertificate },
    { path: PACKAGE_SIGNING_KEY_PATH, content: props.PackageSigningKey },
  ];
  return {
    write: [
      ...bundled,
      config,
      ...optional.flatMap(({ path, content }) => (content === undefined ? [] : [{ path, mode: 0o644, content }])),
    ],
    remove: optional.filter(({ content }) => content === undefined).map(({ path }) => path),
  };
}

/**
 * Each file is written beside its target and renamed over it, so an instance booting during a
 * deploy reads either the old or the new file, never half of one.
 */
export async function applyContent(root: string, plan: ContentPlan): Promise<void> {
  for (const file of plan.write) {
    const target = join(root, file.path);
    await mkdir(dirname(target), { recursive: true, mode: 0o755 });
    const staging = `${target}.${randomUUID()}.tmp`;
    try {
      if ('source' in file) await copyFile(file.source, staging);
      else await writeFile(staging, file.content, { mode: file.mode });
      // writeFile's mode is filtered by the umask and copyFile keeps the package's; the access
      // point's files must be exactly this.
      await chmod(staging, file.mode);
      await rename(staging, target);
    } catch (error) {
      await rm(staging, { force: true });
      throw error;
    }
  }
  for (const path of plan.remove) await rm(join(root, path), { force: true });
}
