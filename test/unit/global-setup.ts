import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Unit tests make scratch directories with mkdtemp(tmpdir()): point TMPDIR at one directory per
 * run (the test workers inherit it) and remove it at the end, so no run leaves private keys or
 * fake ssldirs behind in /tmp.
 */
export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'compile-masters-unit-'));
  process.env.TMPDIR = root;
  return () => rmSync(root, { recursive: true, force: true });
}
