import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { literalKeys } from '../../../scripts/aws-sdk-literal-keys.mjs';

// scripts/aws-sdk-literal-keys.mjs (npm postinstall) makes the AWS SDK schema files' computed keys
// literal, so that esbuild can drop the schemas a bundle does not use (aws/aws-sdk-js-v3#7607).

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** Runs a script (not a module) and returns what its last statement `return`s. */
const run = (body: string): unknown => new Function(body)();

describe('literalKeys', () => {
  it('makes computed keys naming a top-level string const literal', () => {
    const source = [
      'const _xN = "xmlName";',
      'const _eQN = "ec2QueryName";',
      'export var Foo$ = [3, n0, _Foo, 0, [_a, _b], [[0, { [_xN]: _aa, [_eQN]: "x" }], 0]];',
    ].join('\n');
    expect(literalKeys(source)).toEqual({
      text: [
        'const _xN = "xmlName";',
        'const _eQN = "ec2QueryName";',
        'export var Foo$ = [3, n0, _Foo, 0, [_a, _b], [[0, { "xmlName": _aa, "ec2QueryName": "x" }], 0]];',
      ].join('\n'),
      keys: 2,
    });
  });

  it('quotes the string as JSON', () => {
    expect(literalKeys(`const q = 'say "hi"\\n'; x = { [q]: 1 };`).text).toBe(`const q = 'say "hi"\\n'; x = { "say \\"hi\\"\\n": 1 };`);
  });

  it.each([
    ['a let', 'let _k = "k"; x = { [_k]: 1 };'],
    ['a var', 'var _k = "k"; x = { [_k]: 1 };'],
    ['a const that is not a string', 'const _k = 1; x = { [_k]: 1 };'],
    ['a const from an expression', 'const _k = "a" + "b"; x = { [_k]: 1 };'],
    ['a template string', 'const _k = `k`; x = { [_k]: 1 };'],
    ['an undeclared name', 'x = { [_k]: 1 };'],
    ['an imported name', 'import { _k } from "./k.js"; x = { [_k]: 1 };'],
    ['a const inside a function', 'function f() { const _k = "k"; return { [_k]: 1 }; }'],
    ['a sum', 'const a = "a", b = "b"; x = { [a + b]: 1 };'],
    ['a member expression', 'x = { [Symbol.iterator]: 1 };'],
    ['a method', 'const _k = "k"; x = { [_k]() {} };'],
    ['a getter', 'const _k = "k"; x = { get [_k]() { return 1; } };'],
    ['a class member', 'const _k = "k"; class C { [_k] = 1; [_k]() {} }'],
    ['a destructuring declaration', 'const _k = "k"; const { [_k]: v } = o;'],
    ['a destructuring assignment', 'const _k = "k"; ({ [_k]: v } = o); [{ [_k]: w }] = p; for ({ [_k]: u } of q);'],
    ['__proto__, which as a literal key would set the prototype', 'const _p = "__proto__"; x = { [_p]: null };'],
  ])('leaves alone a computed key naming %s', (_what, source) => {
    expect(literalKeys(source)).toEqual({ text: source, keys: 0 });
  });

  // A name declared anywhere else in the file might be shadowed where it is used: without a scope
  // analysis, such a name is never rewritten, at top level either.
  it.each([
    ['an inner const', 'const _k = "k"; function f() { const _k = "j"; return { [_k]: 1 }; } x = { [_k]: 2 };'],
    ['a parameter', 'const _k = "k"; const f = (_k) => ({ [_k]: 1 }); x = { [_k]: 2 };'],
    ['a destructured parameter', 'const _k = "k"; function f({ _k }) { return { [_k]: 1 }; }'],
    ['a catch binding', 'const _k = "k"; try { f(); } catch (_k) { x = { [_k]: 1 }; }'],
    ['a function', 'const _k = "k"; { function _k() {} x = { [_k]: 1 }; }'],
  ])('leaves alone a top-level const shadowed by %s', (_what, source) => {
    expect(literalKeys(source)).toEqual({ text: source, keys: 0 });
  });

  it('rewrites nothing the second time', () => {
    const first = literalKeys('const _xN = "xmlName"; x = [{ [_xN]: _aa }, { [_xN]: { [_xN]: 1 } }];');
    expect(first.keys).toBe(3);
    expect(literalKeys(first.text)).toEqual({ text: first.text, keys: 0 });
  });

  it('builds the same objects as before', () => {
    const source = [
      'const _xN = "xmlName";',
      'const _eQN = "ec2QueryName";',
      'const _p = "__proto__";',
      'const _a = "a", _n = "1";',
      'var A$ = [3, "ns", "A", 0, [_a, "b"], [[0, { [_xN]: "A", [_eQN]: "a" }], ["B", { [_xN]: "B", x: 1, [_xN]: "C" }]]];',
      'var B$ = { [_n]: 1, z: 2, [_a]: { [_p]: 3, [_a]: [_a] } };',
      'return { A$, B$ };',
    ].join('\n');
    const rewritten = literalKeys(source);
    expect(rewritten.keys).toBe(7);
    const before = run(source) as Record<string, unknown>;
    const after = run(rewritten.text) as Record<string, unknown>;
    expect(JSON.stringify(after)).toBe(JSON.stringify(before)); // same keys in the same order
    expect(after).toStrictEqual(before);
    const inner = (value: Record<string, unknown>) => (value.B$ as Record<string, object>).a as object;
    expect(Object.getPrototypeOf(inner(after))).toBe(Object.prototype);
    expect(Object.keys(inner(after))).toEqual(['__proto__', 'a']);
  });

  it('reports a file it cannot parse', () => {
    expect(() => literalKeys('const _k = "k"; x = { [_k]: };')).toThrow();
  });
});

describe('the installed AWS SDK (npm postinstall ran scripts/aws-sdk-literal-keys.mjs)', () => {
  it('has literal keys in the EC2 schemas', () => {
    const text = readFileSync(`${root}node_modules/@aws-sdk/client-ec2/dist-es/schemas/schemas_0.js`, 'utf8');
    expect(literalKeys(text).keys).toBe(0);
    expect(text).not.toMatch(/\[_\w+\]:/);
  });

  it('bundles one EC2 command without the schemas of all the others', async () => {
    const result = await build({
      stdin: {
        contents: "import { EC2Client, DescribeInstancesCommand } from '@aws-sdk/client-ec2'; export { EC2Client, DescribeInstancesCommand };",
        resolveDir: root,
      },
      write: false,
      bundle: true,
      platform: 'node',
      format: 'esm',
      minify: true,
      mainFields: ['module', 'main'],
      logLevel: 'silent',
    });
    // ~318 KB with literal keys, ~850 KB without (esbuild keeps the whole 1.3 MB schema file).
    expect(result.outputFiles[0]?.contents.byteLength).toBeLessThan(400_000);
  });
});
