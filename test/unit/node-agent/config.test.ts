import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../lib/errors';
import { IN_FLIGHT_WAIT_MAX_SECONDS } from '../../../lib/readiness-check';
import { loadConfig, parseConfig } from '../../../node-agent/src/config';

/** The shape the CDK stack writes to config/agent.json. */
const written = {
  primaryServer: 'puppet.example.com',
  caPort: 8140,
  caCertPath: '/etc/compile-master-agent/ca.pem',
  queueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/compile-masters-lifecycle',
  region: 'eu-west-1',
  extensions: { pp_role: 'compile_master' },
  dnsAltNames: ['compile-masters-0123456789.elb.eu-west-1.amazonaws.com'],
  puppetBin: '/opt/puppetlabs/bin/puppet',
  confdir: '/etc/puppetlabs/puppet',
  ssldir: '/etc/puppetlabs/puppet/ssl',
  localServerPort: 8140,
};

describe('agent configuration', () => {
  it('accepts the contract shape and fills the optional fields with documented defaults', () => {
    expect(parseConfig(written, 'agent.json')).toEqual({
      ...written,
      agentInstall: { source: 'primary' },
      localServerService: 'pe-puppetserver',
      isolatePuppetRun: true,
      crlRefreshSeconds: 15,
      bootMarkerPath: '/run/compile-master-agent/boot-complete.json',
      readinessPort: 8141,
      drainSeconds: 45,
      inFlightWaitSeconds: IN_FLIGHT_WAIT_MAX_SECONDS,
      backupDir: '/var/lib/compile-master-agent/ssl-backups',
      timeouts: { imdsMs: 2000, caUnavailableSeconds: 300, certificateSeconds: 1800, puppetRunSeconds: 1800, serverHealthySeconds: 600 },
    });
  });

  it('lowercases DNS names (ELB names keep capitals), so the CSR asks for what the controller compares', () => {
    const config = parseConfig({ ...written, primaryServer: 'Puppet.Example.com', dnsAltNames: ['CompileMasters-Nlb-1A2B3C.elb.eu-west-1.amazonaws.com'] }, 'x');
    expect(config.primaryServer).toBe('puppet.example.com');
    expect(config.dnsAltNames).toEqual(['compilemasters-nlb-1a2b3c.elb.eu-west-1.amazonaws.com']);
  });

  it('defaults the Puppet Enterprise layout', () => {
    const { primaryServer, queueUrl, region } = written;
    expect(parseConfig({ primaryServer, queueUrl, region }, 'x')).toMatchObject({ puppetBin: '/opt/puppetlabs/bin/puppet', ssldir: '/etc/puppetlabs/puppet/ssl', caPort: 8140 });
  });

  it.each([
    [{ primaryServer: 'puppet_server.example.com' }, /must be a DNS name[\s\S]*at primaryServer/],
    [{ queueUrl: 'http://sqs.local/q' }, /https:\/\/ SQS queue URL[\s\S]*at queueUrl/],
    [{ region: 'Ireland' }, /region[\s\S]*eu-west-1/],
    [{ extensions: { pp_instance_id: 'i-1' } }, /set by the node agent from instance metadata/],
    [{ extensions: { pp_cli_auth: 'true' } }, /CA-administrator rights/],
    [{ agentInstall: { source: 'internet' } }, /agentInstall/],
    [{ agentInstall: { source: 'repository', package: 'openvox-agent', packageManager: 'dnf', rpmBaseUrl: 'http://yum.voxpupuli.org/openvox8/amazon/2023/$basearch' } }, /https:\/\/ repository URL/],
    [{ agentInstall: { source: 'repository', package: 'openvox-agent; rm -rf /', packageManager: 'dnf', rpmBaseUrl: 'https://yum.voxpupuli.org/x' } }, /package name such as openvox-agent/],
    // One word each: a suite or component cannot smuggle more into the apt source line.
    [{ agentInstall: { source: 'repository', package: 'openvox-agent', packageManager: 'apt', aptUri: 'https://apt.voxpupuli.org', aptSuite: 'ubuntu24.04 main', aptComponent: 'openvox8' } }, /one apt suite or component name/],
    [{ agentInstall: { source: 'repository', package: 'openvox-agent', packageManager: 'zypper', rpmBaseUrl: 'https://yum.voxpupuli.org/x' } }, /packageManager/],
    [{ extensions: { role: 'x' } }, /not a Puppet extension short name/],
    [{ extensions: { pp_role: 'compile_master\u00e9' } }, /printable ASCII/],
    [{ dnsAltNames: ['bad name'] }, /dnsAltNames/],
    [{ ssldir: 'relative/ssl' }, /absolute path[\s\S]*at ssldir/],
    [{ queueURL: 'typo' }, /Unrecognized key[\s\S]*queueURL/],
    [{ timeouts: { certificateSeconds: 0 } }, /timeouts\.certificateSeconds/],
    // A slower poll could not keep the 60 s promise from revocation to refusal.
    [{ crlRefreshSeconds: 60 }, /crlRefreshSeconds/],
  ])('refuses %j with a message naming the field', (change, message) => {
    const attempt = () => parseConfig({ ...written, ...change }, '/etc/compile-master-agent/agent.json');
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(message);
    expect(attempt).toThrow(/in \/etc\/compile-master-agent\/agent.json/);
  });

  it('says which file is unreadable or not JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'agent-config-'));
    await expect(loadConfig(join(dir, 'missing.json'))).rejects.toThrow(/Cannot read the node-agent configuration .*missing.json — .*EFS is mounted/);
    await writeFile(join(dir, 'broken.json'), '{"primaryServer":');
    await expect(loadConfig(join(dir, 'broken.json'))).rejects.toThrow(/broken.json is not valid JSON/);
    await writeFile(join(dir, 'ok.json'), JSON.stringify(written));
    await expect(loadConfig(join(dir, 'ok.json'))).resolves.toMatchObject({ primaryServer: 'puppet.example.com' });
  });
});
