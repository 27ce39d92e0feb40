import { readFileSync } from 'node:fs';
import { run } from '../processes';

/** Mount points at or below `path`, deepest first (the order they must be unmounted in). */
export function mountsBelow(path: string): string[] {
  const root = path.replace(/\/+$/, '');
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point): point is string => point !== undefined)
    // mountinfo escapes spaces and the like as octal (\040).
    .map((point) => point.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))))
    .filter((point) => point === root || point.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts everything at or below `path`, lazily when a mount is still busy. */
export function unmountBelow(path: string): void {
  for (const point of mountsBelow(path)) {
    try {
      run('umount', [point]);
    } catch {
      run('umount', ['--lazy', point]);
    }
  }
}

/** rm -rf that stays on this file system and first lets go of anything mounted inside. */
export function removeTree(path: string): void {
  unmountBelow(path);
  run('rm', ['-rf', '--one-file-system', path]);
}
