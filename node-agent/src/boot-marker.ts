import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { certnameProblem } from '../../lib/certname';

/**
 * The boot step's "done" for the readiness daemon. It lives in the boot unit's RuntimeDirectory
 * (/run, a tmpfs), so a reboot, a restart of the boot step or its stop removes it; the boot step
 * also removes it itself before it starts, so it is only ever there after a boot step that
 * completed for the identity it names. The unit's state would say the same, but reading it needs
 * systemd's bus, which the readiness daemon's sandbox does not open.
 */
const BootMarkerSchema = z.strictObject({
  certname: z.string().refine((value) => certnameProblem(value) === undefined, { error: 'must be a certname' }),
  instanceId: z.string().regex(/^i-[0-9a-f]{8,17}$/),
  completedAt: z.iso.datetime(),
});
export type BootMarker = z.infer<typeof BootMarkerSchema>;

export type BootObservation =
  | { kind: 'complete'; marker: BootMarker }
  | { kind: 'pending' }
  | { kind: 'unreadable'; detail: string };

export async function clearBootMarker(path: string): Promise<void> {
  await rm(path, { force: true });
}

/** Written beside the target and renamed over it: the daemon never reads half a marker. */
export async function writeBootMarker(path: string, marker: BootMarker): Promise<void> {
  // The unit's RuntimeDirectory makes it on an instance; a node started by hand has none yet.
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const staging = join(dirname(path), `.boot-marker.${randomUUID()}.tmp`);
  try {
    // World-readable: the readiness daemon runs as its own unprivileged user.
    await writeFile(staging, `${JSON.stringify(BootMarkerSchema.parse(marker))}\n`, { mode: 0o644 });
    // writeFile's mode passes through the umask, and the agent's unit sets UMask=0027.
    await chmod(staging, 0o644);
    await rename(staging, path);
  } catch (error) {
    await rm(staging, { force: true });
    throw error;
  }
}

export async function readBootMarker(path: string): Promise<BootObservation> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'pending' };
    return { kind: 'unreadable', detail: (error as Error).message };
  }
  try {
    return { kind: 'complete', marker: BootMarkerSchema.parse(JSON.parse(text)) };
  } catch (error) {
    return { kind: 'unreadable', detail: `${path} is not a boot marker (${(error as Error).message.replace(/\s+/g, ' ').slice(0, 120)})` };
  }
}
