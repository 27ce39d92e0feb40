import { describe, expect, it } from 'vitest';
import { MACHINE_PACKAGES, parseDeb822, parseOneLine, rootfsDir } from '../../../lab/machines/rootfs';

describe("the lab machines' root file system", () => {
  it("finds the host's Debian archives in deb822 sources, skipping disabled stanzas and deb-src", () => {
    const text = [
      'Types: deb',
      'URIs: http://mirror.example/debian',
      'Suites: bookworm bookworm-updates',
      'Components: main',
      '',
      'Types: deb-src',
      'URIs: http://src.example/debian',
      'Suites: bookworm',
      '',
      'Types: deb',
      'Enabled: no',
      'URIs: http://off.example/debian',
      'Suites: bookworm',
      '',
      'Types: deb',
      '# a comment',
      'URIs: http://mirror.example/debian-security',
      'Suites: bookworm-security',
    ].join('\n');
    expect(parseDeb822(text)).toEqual([
      { uri: 'http://mirror.example/debian', suites: ['bookworm', 'bookworm-updates'] },
      { uri: 'http://mirror.example/debian-security', suites: ['bookworm-security'] },
    ]);
  });

  it('reads one-line sources with options and comments', () => {
    const text = '# deb http://old.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\ndeb-src http://src.example/debian bookworm main\n';
    expect(parseOneLine(text)).toEqual([{ uri: 'http://mirror.example/debian', suites: ['bookworm'] }]);
  });

  it('caches by package list: another list is another tree, the order does not matter', () => {
    expect(rootfsDir('/c', [...MACHINE_PACKAGES].reverse())).toBe(rootfsDir('/c'));
    expect(rootfsDir('/c', [...MACHINE_PACKAGES, 'haproxy'])).not.toBe(rootfsDir('/c'));
    expect(rootfsDir('/c')).toMatch(/^\/c\/rootfs-[0-9a-f]{12}$/);
  });
});
