import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../node-agent/src/config';
import { PuppetCli, csrAttributesYaml, execCommand, puppetConfSettings, type CommandResult } from '../../../node-agent/src/puppet';
import { memoryLog } from './fakes';

const identity = { certname: 'ip-10-0-1-23.eu-west-1.compute.internal', instanceId: 'i-0123456789abcdef0', region: 'eu-west-1' };

async function setup(overrides: Record<string, unknown> = {}, answer: (args: readonly string[]) => CommandResult = () => ({ code: 0, stdout: '', stderr: '' })) {
  const confdir = await mkdtemp(join(tmpdir(), 'agent-puppet-'));
  const config = parseConfig(
    {
      primaryServer: 'puppet.example.com',
      queueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/q',
      region: 'eu-west-1',
      extensions: { pp_role: 'compile_master' },
      dnsAltNames: ['cm.elb.eu-west-1.amazonaws.com'],
      confdir,
      ssldir: join(confdir, 'ssl'),
      ...overrides,
    },
    'test',
  );
  const calls: { file: string; args: readonly string[]; timeoutMs: number }[] = [];
  const cli = new PuppetCli(config, async (file, args, { timeoutMs }) => {
    calls.push({ file, args, timeoutMs });
    return answer(args);
  }, memoryLog());
  return { config, confdir, calls, cli };
}

describe('csr_attributes.yaml', () => {
  it('requests pp_instance_id, pp_region and the configured extensions, values quoted', () => {
    expect(csrAttributesYaml({ pp_instance_id: 'i-0123456789abcdef0', pp_region: 'eu-west-1', pp_role: 'compile "master"\nx: y' })).toBe(
      [
        '---',
        '# Written by compile-master-agent before each enrollment; changes are overwritten.',
        'extension_requests:',
        '  pp_instance_id: "i-0123456789abcdef0"',
        '  pp_region: "eu-west-1"',
        '  pp_role: "compile \\"master\\"\\nx: y"',
        '',
      ].join('\n'),
    );
  });
});

describe('the puppet command line', () => {
  it('configures the CSR: csr_attributes.yaml, then certname, server, CA port and alt names (+ certname) in puppet.conf', async () => {
    const { cli, calls, confdir } = await setup();
    await cli.configure(identity);
    const yaml = await readFile(join(confdir, 'csr_attributes.yaml'), 'utf8');
    expect(yaml).toContain('pp_instance_id: "i-0123456789abcdef0"');
    expect(yaml).toContain('pp_role: "compile_master"');
    expect((await stat(join(confdir, 'csr_attributes.yaml'))).mode & 0o777).toBe(0o640);
    expect(calls.map((call) => call.args.slice(0, 6))).toEqual([
      ['config', 'set', '--section', 'main', 'certname', identity.certname],
      ['config', 'set', '--section', 'main', 'server', 'puppet.example.com'],
      ['config', 'set', '--section', 'main', 'ca_port', '8140'],
      ['config', 'set', '--section', 'main', 'dns_alt_names', `${identity.certname},cm.elb.eu-west-1.amazonaws.com`],
    ]);
    expect(calls.every((call) => call.file === '/opt/puppetlabs/bin/puppet' && call.args.includes('--confdir') && call.args.includes('--ssldir'))).toBe(true);
  });

  it('does not list the certname twice in dns_alt_names', async () => {
    const { config } = await setup({ dnsAltNames: [identity.certname, 'nlb.example.com'] });
    expect(puppetConfSettings(config, identity.certname).at(-1)).toEqual(['dns_alt_names', `${identity.certname},nlb.example.com`]);
  });

  it('submits with ssl submit_request on a fresh connection, and fails with puppet\'s output on a refusal', async () => {
    const { cli, calls } = await setup();
    await cli.submitCsr();
    expect(calls[0]?.args.slice(0, 4)).toEqual(['ssl', 'submit_request', '--http_keepalive_timeout', '0']);
    const refused = await setup({}, () => ({ code: 1, stdout: '', stderr: "Error: Could not run: Could not submit certificate request for 'x' due to a conflict on the server" }));
    await expect(refused.cli.submitCsr()).rejects.toThrow(/puppet ssl submit_request \(submit the CSR\) exited 1; output:\nError: .*conflict on the server/);
  });

  it('fails with the command output when download_cert fails', async () => {
    const { cli } = await setup({}, () => ({ code: 1, stdout: '', stderr: 'Error: certificate does not match private key' }));
    await expect(cli.downloadCert()).rejects.toThrow(/puppet ssl download_cert .* exited 1; output:\nError: certificate does not match private key/);
  });

  it('runs puppet agent --test in a transient systemd unit, bounded by systemd', async () => {
    const { cli, calls } = await setup({}, () => ({ code: 2, stdout: '', stderr: '' }));
    await expect(cli.agentRun()).resolves.toBe('changes applied');
    expect(calls[0]?.file).toBe('systemd-run');
    expect(calls[0]?.args).toEqual(expect.arrayContaining(['--wait', '--pipe', '--collect', '--unit=compile-master-agent-puppet-run', '--property=RuntimeMaxSec=1800']));
    expect(calls[0]?.args.slice(calls[0].args.indexOf('--') + 1, calls[0].args.indexOf('--') + 4)).toEqual(['/opt/puppetlabs/bin/puppet', 'agent', '--test']);
  });

  it.each([
    [0, 'no changes'],
    [2, 'changes applied'],
  ])('treats run exit %i as success', async (code, outcome) => {
    const { cli, calls } = await setup({ isolatePuppetRun: false }, () => ({ code, stdout: '', stderr: '' }));
    await expect(cli.agentRun()).resolves.toBe(outcome);
    expect(calls[0]?.file).toBe('/opt/puppetlabs/bin/puppet');
  });

  it.each([[1], [4], [6], [null]])('treats run exit %s as failure', async (code) => {
    const { cli } = await setup({ isolatePuppetRun: false }, () => ({ code, stdout: 'Notice: Applied catalog', stderr: 'Error: Could not retrieve catalog' }));
    await expect(cli.agentRun()).rejects.toThrow(code === null ? /killed \(timeout\)/ : new RegExp(`exited ${code}; output:\\nNotice: Applied catalog\\nError: Could not retrieve catalog`));
  });
});

describe('execCommand', () => {
  it('returns exit codes and output, and rejects only when the program cannot start', async () => {
    await expect(execCommand('/bin/sh', ['-c', 'echo out; echo err >&2; exit 3'], { timeoutMs: 5_000 })).resolves.toEqual({ code: 3, stdout: 'out\n', stderr: 'err\n' });
    await expect(execCommand('/bin/sh', ['-c', 'sleep 5'], { timeoutMs: 100 })).resolves.toMatchObject({ code: null });
    await expect(execCommand('/nonexistent/puppet', [], { timeoutMs: 1_000 })).rejects.toThrow(/ENOENT/);
  });
});
