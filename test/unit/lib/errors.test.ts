import { describe, expect, it } from 'vitest';

describe('error names', () => {
  it('survive minification: each class spells its own name', async () => {
    const { build } = await import('esbuild');
    const bundled = await build({
      stdin: { contents: "import * as e from './lib/errors'; export const names = [new e.PuppetUnavailableError({ server: 'ca', url: 'u', operation: 'o' }).name, new e.RefusedInputError('x').name, new e.ConfigError('x').name];", resolveDir: process.cwd(), loader: 'ts' },
      bundle: true,
      minify: true,
      format: 'esm',
      write: false,
    });
    const module = await import(`data:text/javascript;base64,${Buffer.from(bundled.outputFiles[0]!.text).toString('base64')}`);
    expect(module.names).toEqual(['PuppetUnavailableError', 'RefusedInputError', 'ConfigError']);
  });
});

describe('summary and hint', () => {
  it('keeps what happened apart from what to do, which the message joins', async () => {
    const { ConfigError } = await import('../../../lib/errors');
    const error = new ConfigError('The RBAC token secret is empty', { hint: 'store the token — as plain text' });
    expect(error.message).toBe('The RBAC token secret is empty — store the token — as plain text');
    expect(error.summary).toBe('The RBAC token secret is empty');
    expect(new ConfigError('no hint').summary).toBe('no hint');
  });
});
