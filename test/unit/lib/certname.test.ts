import { describe, expect, it } from 'vitest';
import { assertCertname, certnameProblem } from '../../../lib/certname';
import { RefusedInputError } from '../../../lib/errors';

describe('certname validation', () => {
  it.each(['ip-10-0-1-23.us-west-2.compute.internal', 'primary.lab.test', 'a', 'compile-01'])('accepts %s', (name) => {
    expect(certnameProblem(name)).toBeUndefined();
  });

  it.each([
    ['../x', /lowercase DNS-style/],
    ['a%2Fb', /lowercase DNS-style/],
    ['a/b', /lowercase DNS-style/],
    ['has space.example', /lowercase DNS-style/],
    ['UPPER.example', /lowercase DNS-style/],
    ['a..b', /lowercase DNS-style/],
    ['-leading.example', /lowercase DNS-style/],
    ['', /empty/],
    ['a'.repeat(300), /300 characters/],
  ])('refuses %j', (name, reason) => {
    expect(certnameProblem(name)).toMatch(reason);
    expect(() => assertCertname(name)).toThrow(RefusedInputError);
  });

  it('refuses non-strings and shows only a bounded, quoted prefix of hostile input', () => {
    expect(certnameProblem(42)).toBe('is not a string');
    const error = (() => {
      try {
        assertCertname(`${'x'.repeat(200)}\n/etc/passwd`);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error?.message).toMatch(/…\(212 chars\)/);
    expect(error?.message).not.toContain('\n');
  });
});
