import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './harness';

function cdkJson(context: Record<string, unknown>): string {
  const file = join(mkdtempSync(join(tmpdir(), 'cli-primary-')), 'cdk.json');
  writeFileSync(file, JSON.stringify({ context }));
  return file;
}

const SITE = cdkJson({ primaryHostname: 'puppet.corp.example.com', lifecycleClientCertname: 'cm-lifecycle.corp.example.com', roleExtension: { name: 'pp_role', value: 'cm' } });

describe('primary-setup', () => {
  it('PE (default): the ca-client certificate, PE-managed allow-list, alt names, the classifier rule, RBAC permissions and the token', async () => {
    const { code, stdout } = await runCli(['primary-setup', '--cdk-json', SITE]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^What puppet\.corp\.example\.com needs .*\(Puppet Enterprise\), lifecycle certname cm-lifecycle\.corp\.example\.com/);
    expect(stdout).toContain('puppetserver ca generate --ca-client --certname cm-lifecycle.corp.example.com');
    expect(stdout).toContain('systemctl stop pe-puppetserver');
    expect(stdout).toContain('puppet_enterprise::profile::puppetdb');
    expect(stdout).toContain('allow-subject-alt-names: true, allow-duplicate-certs: false');
    expect(stdout).toContain('["and",["=",["trusted","extensions","pp_role"],"cm"]]');
    expect(stdout).toContain('"Puppet agent: Run Puppet on agent nodes"');
    expect(stdout).toContain('puppet access login --lifetime 1y --print > token.txt');
    expect(stdout).toContain('npx compile-masters secrets put --stack CompileMasters');
  });

  it('--oss --out: writes the fragments and the Puppet module; the auth.conf rule keeps pp_cli_auth allowed', async () => {
    const out = mkdtempSync(join(tmpdir(), 'cli-primary-out-'));
    const { code, stdout } = await runCli(['primary-setup', '--oss', '--out', out, '--cdk-json', SITE, '--lifecycle-certname', 'other-lifecycle.corp.example.com']);
    expect(code).toBe(0);
    expect(stdout).toContain(join(out, 'auth.conf-rule.hocon'));
    const rule = readFileSync(join(out, 'auth.conf-rule.hocon'), 'utf8');
    expect(rule).toContain('allow: ["other-lifecycle.corp.example.com", { extensions: { pp_cli_auth: "true" } }]');
    expect(rule).toMatch(/sort-order: 400/);
    expect(readFileSync(join(out, 'puppetdb-allowlist-entry.txt'), 'utf8')).toBe('other-lifecycle.corp.example.com\n');
    expect(readFileSync(join(out, 'site.pp-classification.pp'), 'utf8')).toContain("$trusted['extensions']['pp_role'] == 'cm'");
    expect(readFileSync(join(out, 'steps.txt'), 'utf8')).toContain('open-source Puppet');
    expect(existsSync(join(out, 'compile_masters_primary', 'manifests', 'init.pp'))).toBe(true);
    expect(existsSync(join(out, 'rbac-role.json'))).toBe(false);
  });

  it('refuses a broken context with the parser the stack uses', async () => {
    const { code, stderr } = await runCli(['primary-setup', '--cdk-json', cdkJson({ lifecycleClientCertname: 'Not/A Name' })]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/Invalid CDK context:\n {2}- lifecycleClientCertname: "Not\/A Name" is not a lowercase DNS-style name/);
  });

  it('--pe and --oss exclude each other', async () => {
    const { code, stderr } = await runCli(['primary-setup', '--pe', '--oss']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/cannot be used with option '--oss'/);
  });
});
