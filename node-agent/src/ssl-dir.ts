import { chmod, cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** Puppet's own file names below the ssldir (certdir and privatekeydir defaults). */
export function sslPaths(ssldir: string, certname: string) {
  return {
    cert: join(ssldir, 'certs', `${certname}.pem`),
    key: join(ssldir, 'private_keys', `${certname}.pem`),
  };
}

/** Puppet's localcacert. */
export function localCaPath(ssldir: string): string {
  return join(ssldir, 'certs', 'ca.pem');
}

export interface LocalSsl {
  certPem: string | undefined;
  keyPem: string | undefined;
}

export async function readLocalSsl(ssldir: string, certname: string): Promise<LocalSsl> {
  const paths = sslPaths(ssldir, certname);
  const [certPem, keyPem] = await Promise.all([readIfPresent(paths.cert), readIfPresent(paths.key)]);
  return { certPem, keyPem };
}

/** "2024-05-01T12-00-00-000Z": sortable and free of characters that upset shells and tar. */
export function backupName(now: Date): string {
  return `ssl-${now.toISOString().replace(/[:.]/g, '-')}`;
}

/**
 * Copies the ssldir aside before it is wiped, so a wrong decision can be undone by hand. A copy,
 * not a rename: the backup directory may be on another file system. 0700 because it holds the
 * old private key.
 */
export async function backupSslDir(ssldir: string, backupDir: string, now: Date): Promise<string | undefined> {
  if (!(await exists(ssldir))) return undefined;
  await mkdir(backupDir, { recursive: true, mode: 0o700 });
  await chmod(backupDir, 0o700);
  const target = join(backupDir, backupName(now));
  await cp(ssldir, target, { recursive: true, preserveTimestamps: true, errorOnExist: true, force: false });
  await chmod(target, 0o700);
  return target;
}

/**
 * Empties the ssldir and puts the pinned CA certificate where Puppet looks for it, so Puppet
 * never downloads the CA certificate on trust (its bootstrap does that when the file is absent).
 */
export async function resetSslDir(ssldir: string, caPem: string): Promise<void> {
  await rm(ssldir, { recursive: true, force: true });
  // Puppet's own modes for ssldir and certdir.
  await mkdir(join(ssldir, 'certs'), { recursive: true, mode: 0o755 });
  await chmod(ssldir, 0o771);
  await writeFile(localCaPath(ssldir), caPem, { mode: 0o644 });
}

/**
 * Puts this node's new private key where Puppet looks for it, with Puppet's own modes
 * (privatekeydir 0750, hostprivkey 0640). Exclusive: it follows `resetSslDir`, so a key already
 * there was written by someone else since, and is not one to overwrite silently.
 */
export async function writePrivateKey(ssldir: string, certname: string, pem: string): Promise<void> {
  const path = sslPaths(ssldir, certname).key;
  await mkdir(dirname(path), { recursive: true, mode: 0o750 });
  await writeFile(path, pem, { mode: 0o640, flag: 'wx' });
}

async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
