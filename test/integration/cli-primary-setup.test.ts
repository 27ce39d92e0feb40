import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODULE_DIR } from '../../cli/primary-setup';
import { loadLab } from '../../lab/running-lab';
import { runCli } from '../unit/cli/harness';

/** Here, not in the unit suite: the lab's setup guarantees a real `puppet` is installed. */
describe('primary-setup output against a real puppet', () => {
  it('the Puppet module and the generated class declaration pass `puppet parser validate`', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-primary-'));
    const cdkJson = join(dir, 'cdk.json');
    writeFileSync(cdkJson, JSON.stringify({ context: { primaryHostname: 'puppet.corp.example.com', lifecycleClientCertname: 'cm-lifecycle.corp.example.com', roleExtension: { name: 'pp_role', value: 'cm' } } }));
    const out = join(dir, 'out');
    const { code } = await runCli(['primary-setup', '--oss', '--out', out, '--cdk-json', cdkJson]);
    expect(code).toBe(0);
    const manifests = [join(MODULE_DIR, 'manifests', 'init.pp'), join(MODULE_DIR, 'examples', 'init.pp'), join(out, 'primary.pp'), join(out, 'site.pp-classification.pp')];
    expect(() => execFileSync(loadLab().puppetBin, ['parser', 'validate', ...manifests], { stdio: 'pipe' })).not.toThrow();
  });
});
