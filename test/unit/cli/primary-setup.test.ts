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
    expect(stdout).toMatch(/^What puppet\.corp\.example\.com needs .*\(Puppet Enterprise, primary run: orchestrator\), lifecycle certname cm-lifecycle\.corp\.example\.com/);
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

  it('--flavor openvox with the primary by tag: OpenVox service names, the SSM step with the tag, no RBAC role or token anywhere', async () => {
    const site = cdkJson({ primaryHostname: 'puppet.corp.example.com', lifecycleClientCertname: 'cm-lifecycle.corp.example.com', flavor: 'openvox', primaryInstanceTag: { key: 'Role', value: 'puppet-primary' } });
    const out = mkdtempSync(join(tmpdir(), 'cli-primary-out-'));
    const { code, stdout } = await runCli(['primary-setup', '--cdk-json', site]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^What puppet\.corp\.example\.com needs .*\(OpenVox, primary run: ssm\)/);
    expect(stdout).toContain('systemctl stop puppetserver');
    expect(stdout).not.toContain('pe-puppetserver');
    expect(stdout).toContain('Make the primary an SSM managed instance');
    expect(stdout).toContain('aws ec2 create-tags --resources <the primary\'s instance id> --tags Key=Role,Value=puppet-primary');
    expect(stdout).toContain('AmazonSSMManagedInstanceCore');
    expect(stdout).toContain('npx compile-masters secrets put --stack CompileMasters --cert lifecycle.pem --key lifecycle-key.pem --ca ca.pem\n');
    expect(stdout).toContain('No orchestrator, no RBAC token.');
    expect(stdout).not.toMatch(/puppet access login|RBAC role|--token-file|rbac-role\.json/);
    expect((await runCli(['primary-setup', '--flavor', 'openvox', '--out', out, '--cdk-json', site])).code).toBe(0);
    expect(existsSync(join(out, 'compile_masters_primary', 'manifests', 'init.pp'))).toBe(true);
    expect(existsSync(join(out, 'rbac-role.json'))).toBe(false);
    expect(readFileSync(join(out, 'steps.txt'), 'utf8')).toBe(stdout);
  });

  it('--oss on a PE cdk.json: the open-source default run (ssm), and where to name the primary\'s instances', async () => {
    const { code, stdout } = await runCli(['primary-setup', '--oss', '--cdk-json', SITE]);
    expect(code).toBe(0);
    expect(stdout).toContain('(open-source Puppet, primary run: ssm)');
    expect(stdout).toContain('set primaryInstanceIds (e.g. ["i-0123456789abcdef0"]) or');
    expect(stdout).not.toMatch(/puppet access login|RBAC role|--token-file/);
  });

  it('primaryRun none: the site admits the tier by role (its trusted extension); PE keeps its classifier rule but has no RBAC step', async () => {
    const site = cdkJson({ primaryHostname: 'puppet.corp.example.com', roleExtension: { name: 'pp_role', value: 'cm' }, primaryRun: 'none' });
    const out = mkdtempSync(join(tmpdir(), 'cli-primary-out-'));
    const { code, stdout } = await runCli(['primary-setup', '--out', out, '--cdk-json', site]);
    expect(code).toBe(0);
    const steps = readFileSync(join(out, 'steps.txt'), 'utf8');
    expect(steps).toContain('(Puppet Enterprise, primary run: none)');
    expect(steps).toContain('Nothing runs the primary: the site admits the tier by role');
    expect(steps).toContain('allow: [{ extensions: { pp_role: "cm" } }]');
    expect(steps).not.toMatch(/puppet access login|RBAC role|--token-file/);
    expect(existsSync(join(out, 'classifier-rule.json'))).toBe(true);
    expect(existsSync(join(out, 'rbac-role.json'))).toBe(false);
    expect(stdout).toContain(join(out, 'steps.txt'));
  });

  it('an ssm primary named by instance id', async () => {
    const site = cdkJson({ flavor: 'oss', primaryInstanceIds: ['i-0123456789abcdef0'] });
    const { stdout } = await runCli(['primary-setup', '--cdk-json', site]);
    expect(stdout).toContain('The controller sends AWS-RunShellScript to the instance(s) i-0123456789abcdef0 (context primaryInstanceIds)');
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
    const flavorAndShort = await runCli(['primary-setup', '--flavor', 'openvox', '--oss']);
    expect(flavorAndShort.code).toBe(2);
    expect(flavorAndShort.stderr).toMatch(/cannot be used with option '--oss'/);
    expect((await runCli(['primary-setup', '--flavor', 'puppet'])).stderr).toMatch(/Allowed choices are pe, oss, openvox/);
  });
});
