import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONTEXT_DEFAULTS, CONTEXT_EXAMPLES, CONTEXT_KEYS, loadConfig } from '../../../cdk/config';
import { ConfigError } from '../../../lib/errors';
import { CA_PEM as PEM } from './real-deploy-context';

const load = (context: Record<string, unknown>, baseDir?: string) => loadConfig((key) => context[key], baseDir);
const failure = (context: Record<string, unknown>, baseDir?: string): Error => {
  try {
    load(context, baseDir);
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the configuration to be refused');
};


describe('defaults', () => {
  it('describe the example site, so a fresh clone synthesizes', () => {
    const config = load({});
    expect(config).toMatchObject(CONTEXT_DEFAULTS);
    expect(config.primaryCertname).toBe('puppet.example.internal');
    expect(config.puppetdbHostname).toBe('puppet.example.internal');
    expect(config.orchestratorHostname).toBe('puppet.example.internal');
    expect(config.primaryCaCertificate).toBeUndefined();
    expect(config.exampleKeysInUse).toEqual(['primaryHostname', 'primaryCidr', 'primaryCaCertificateFile']);
  });

  it('come with an example for every key', () => {
    expect(CONTEXT_KEYS.filter((key) => !(key in CONTEXT_EXAMPLES))).toEqual([]);
  });

  it('protect the primary, the other Puppet servers and the lifecycle client certname', () => {
    const config = load({
      primaryHostname: 'puppet.corp.example.com',
      puppetdbHostname: 'puppetdb.corp.example.com',
      lifecycleClientCertname: 'lifecycle.corp.example.com',
      protectedCertnames: ['replica.corp.example.com', 'puppet.corp.example.com'],
    });
    expect(config.allProtectedCertnames.sort()).toEqual(
      ['lifecycle.corp.example.com', 'puppet.corp.example.com', 'puppetdb.corp.example.com', 'replica.corp.example.com'],
    );
  });
});

describe('command-line values (-c key=value arrive as strings)', () => {
  it('are coerced to numbers, lists and objects', () => {
    const config = load({
      minSize: '2',
      maxSize: ' 6 ',
      desiredCapacity: '3',
      privateSubnetIds: 'subnet-0123456789abcdef0, subnet-0fedcba9876543210',
      vpcId: 'vpc-0123456789abcdef0',
      agentCidrs: '["10.1.0.0/16","192.168.0.0/24"]',
      roleExtension: '{"name":"pp_role","value":"puppet::compiler"}',
    });
    expect(config).toMatchObject({
      minSize: 2,
      maxSize: 6,
      desiredCapacity: 3,
      privateSubnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'],
      agentCidrs: ['10.1.0.0/16', '192.168.0.0/24'],
      roleExtension: { name: 'pp_role', value: 'puppet::compiler' },
    });
  });
});

describe('a wrong key fails synth with a message that names it and shows an example', () => {
  it.each([
    ['primaryHostname', 'Puppet.Example.com', 'lowercase DNS-style name'],
    ['primaryCertname', '../etc/passwd', 'lowercase DNS-style name'],
    ['primaryCidr', '10.0.0.1', 'IPv4 CIDR'],
    ['minSize', 'two', 'expected number'],
    ['cpuTargetPercent', 99, 'expected number to be <=95'],
    ['instanceType', 'huge', 'EC2 instance type'],
    ['amiId', 'ubuntu', 'AMI id'],
    ['agentCidrs', '0.0.0.0/0', 'would admit every address'],
    ['agentCidrs', '[not json', 'not valid JSON'],
    ['roleExtension', { name: 'role', value: 'compile_master' }, 'Puppet extension short name'],
    ['roleExtension', '{"name":"pp_instance_id","value":"i-0123"}', 'set by the node agent'],
    ['roleExtension', '{"name":"pp_role","value":"caf\u00e9"}', 'printable ASCII'],
    ['nlbScheme', 'public', 'internal'],
    ['heartbeatTimeoutSeconds', 10, 'expected number to be >=30'],
    ['launchCeilingMinutes', 20, 'expected number to be >=30'],
    ['launchCeilingMinutes', 3000, 'expected number to be <=2880'],
    ['clientCertSecretArn', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:client-cert', 'complete secret ARN'],
    ['logLevel', 'verbose', 'DEBUG'],
  ])('%s = %j', (key, value, problem) => {
    const error = failure({ [key]: value });
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain(`- ${key}`);
    expect(error.message).toContain(problem);
    expect(error.message).toContain(`Example: -c ${key}=${CONTEXT_EXAMPLES[key]}`);
  });

  it('bounds the unhealthy window to 5..120 minutes, 15 by default', () => {
    expect(load({}).replaceUnhealthyAfterMinutes).toBe(15);
    expect(load({ replaceUnhealthyAfterMinutes: '30' }).replaceUnhealthyAfterMinutes).toBe(30);
    expect(failure({ replaceUnhealthyAfterMinutes: 4 }).message).toContain('- replaceUnhealthyAfterMinutes: ');
    expect(failure({ replaceUnhealthyAfterMinutes: 121 }).message).toContain('- replaceUnhealthyAfterMinutes: ');
  });

  it('lists every wrong key at once', () => {
    const message = failure({ minSize: -1, primaryCidr: 'x' }).message;
    expect(message).toMatch(/- primaryCidr:[\s\S]*- minSize:|- minSize:[\s\S]*- primaryCidr:/);
  });
});

describe('keys that only make sense together', () => {
  it.each([
    [{ minSize: 5, maxSize: 2 }, 'maxSize', 'at least minSize'],
    [{ desiredCapacity: 9 }, 'desiredCapacity', 'between minSize'],
    [{ vpcId: 'vpc-0123456789abcdef0' }, 'privateSubnetIds', 'required when vpcId'],
    [{ privateSubnetIds: ['subnet-0123456789abcdef0'] }, 'vpcId', 'required when privateSubnetIds'],
    [{ amiId: 'ami-0123456789abcdef0', amiSsmParameter: '/golden/ami' }, 'amiSsmParameter', 'not both'],
    [
      { vpcId: 'vpc-0123456789abcdef0', privateSubnetIds: ['subnet-0123456789abcdef0'], nlbScheme: 'internet-facing', agentCidrs: '["203.0.113.0/24"]' },
      'nlbSubnetIds',
      'internet-facing',
    ],
    [{ nlbScheme: 'internet-facing' }, 'agentCidrs', "name the agents' public CIDRs"],
    [{ heartbeatTimeoutSeconds: 600 }, 'heartbeatTimeoutSeconds', 'raise it above 900 or lower reconcileIntervalMinutes to at most 3'],
    [{ reconcileIntervalMinutes: 15 }, 'heartbeatTimeoutSeconds', 'raise it above 2700'],
    [{ launchCeilingMinutes: 30 }, 'launchCeilingMinutes', 'never limits a launch'],
  ])('%j names %s', (context, key, problem) => {
    const message = failure(context).message;
    expect(message).toContain(`- ${key}: `);
    expect(message).toContain(problem);
  });
});

describe('agentCidrs', () => {
  it('defaults to the private range for an internal load balancer, and takes what an internet-facing one names', () => {
    expect(load({}).agentCidrs).toEqual(['10.0.0.0/8']);
    expect(load({ nlbScheme: 'internet-facing', agentCidrs: '["203.0.113.0/24"]' }).agentCidrs).toEqual(['203.0.113.0/24']);
  });
});

describe('primaryCaCertificateFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cdk-config-'));
  writeFileSync(join(dir, 'ca.pem'), PEM);
  writeFileSync(join(dir, 'ca_key.pem'), `${PEM}-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----\n`);

  it('is read relative to the directory cdk runs in', () => {
    const config = load({ primaryCaCertificateFile: 'ca.pem' }, dir);
    expect(config.primaryCaCertificate).toBe(PEM);
    expect(config.exampleKeysInUse).not.toContain('primaryCaCertificateFile');
  });

  it('must exist', () => {
    const message = failure({ primaryCaCertificateFile: 'missing.pem' }, dir).message;
    expect(message).toContain('primaryCaCertificateFile');
    expect(message).toContain('does not exist');
  });

  it('must not carry a private key', () => {
    expect(failure({ primaryCaCertificateFile: 'ca_key.pem' }, dir).message).toContain('no private key');
  });
});

describe('flavor and the primary run', () => {
  it('defaults to PE with the orchestrator and the primary\'s install.bash, as before flavors existed', () => {
    expect(load({})).toMatchObject({ flavor: 'pe', primaryRun: 'orchestrator', primaryInstances: undefined, agentSource: 'primary' });
  });

  it.each(['oss', 'openvox'])('%s defaults to SSM runs and the vendor repository; synth still works offline, with example keys named', (flavor) => {
    const config = load({ flavor });
    expect(config).toMatchObject({ flavor, primaryRun: 'ssm', primaryInstances: { instanceIds: ['i-0123456789abcdef0'] }, agentSource: 'repository', agentRepositoryKey: undefined });
    expect(config.exampleKeysInUse).toEqual(['primaryHostname', 'primaryCidr', 'primaryCaCertificateFile', 'primaryInstanceIds', 'agentRepositoryKeyFile']);
  });

  it('takes the primary\'s instances by id (a -c list) or by tag (-c JSON), and no longer calls them examples', () => {
    const byId = load({ flavor: 'oss', primaryInstanceIds: 'i-0aaaabbbbccccdddd,i-0eeeeffff00001111' });
    expect(byId.primaryInstances).toEqual({ instanceIds: ['i-0aaaabbbbccccdddd', 'i-0eeeeffff00001111'] });
    expect(byId.exampleKeysInUse).not.toContain('primaryInstanceIds');
    const byTag = load({ flavor: 'openvox', primaryInstanceTag: '{"key":"puppet-role","value":"primary"}' });
    expect(byTag.primaryInstances).toEqual({ tag: { key: 'puppet-role', value: 'primary' } });
    expect(byTag.exampleKeysInUse).not.toContain('primaryInstanceIds');
  });

  it('runs nothing with none: no instances, no examples for them', () => {
    const config = load({ flavor: 'oss', primaryRun: 'none' });
    expect(config).toMatchObject({ primaryRun: 'none', primaryInstances: undefined });
    expect(config.exampleKeysInUse).not.toContain('primaryInstanceIds');
  });

  it('lets PE use SSM or none too', () => {
    expect(load({ primaryRun: 'ssm', primaryInstanceIds: ['i-0123456789abcdef0'] }).primaryRun).toBe('ssm');
    expect(load({ primaryRun: 'none' }).primaryRun).toBe('none');
  });

  it.each([
    [{ flavor: 'oss', primaryRun: 'orchestrator' }, 'primaryRun', 'open-source Puppet has no orchestrator; use "ssm" or "none"'],
    [{ flavor: 'openvox', primaryRun: 'orchestrator' }, 'primaryRun', 'OpenVox has no orchestrator; use "ssm" or "none"'],
    [{ flavor: 'oss', rbacTokenSecretArn: CONTEXT_EXAMPLES.rbacTokenSecretArn }, 'rbacTokenSecretArn', 'is only used with primaryRun orchestrator (primaryRun is ssm)'],
    [{ primaryRun: 'none', orchestratorHostname: 'orch.corp.example.com' }, 'orchestratorHostname', 'is only used with primaryRun orchestrator'],
    [{ flavor: 'oss', orchestratorPort: '8143' }, 'orchestratorPort', 'is only used with primaryRun orchestrator'],
    [{ flavor: 'oss', orchestratorEnvironment: 'production' }, 'orchestratorEnvironment', 'is only used with primaryRun orchestrator'],
    [{ primaryInstanceIds: ['i-0123456789abcdef0'] }, 'primaryInstanceIds', 'is only used with primaryRun ssm (primaryRun is orchestrator)'],
    [{ flavor: 'oss', primaryRun: 'none', primaryInstanceTag: { key: 'role', value: 'primary' } }, 'primaryInstanceTag', 'is only used with primaryRun ssm (primaryRun is none)'],
    [{ flavor: 'oss', primaryInstanceIds: ['i-0123456789abcdef0'], primaryInstanceTag: { key: 'role', value: 'primary' } }, 'primaryInstanceTag', 'set either primaryInstanceIds or primaryInstanceTag, not both'],
    [{ flavor: 'pe', agentSource: 'repository' }, 'agentSource', 'Puppet Enterprise compile masters cannot take puppet-agent from "repository"; use "primary" or "ami"'],
    [{ flavor: 'openvox', agentSource: 'primary' }, 'agentSource', 'OpenVox compile masters cannot take puppet-agent from "primary"; use "repository" or "ami"'],
    [{ flavor: 'oss', agentSource: 'ami', agentRepositoryKeyFile: './key.asc' }, 'agentRepositoryKeyFile', 'is only used with agentSource repository (agentSource is ami)'],
  ])('%j is refused, naming %s', (context, key, problem) => {
    const error = failure(context);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain(`- ${key}: ${problem}`);
    expect(error.message).toContain(`Example: -c ${key}=${CONTEXT_EXAMPLES[key]}`);
  });

  it.each([
    ['flavor', 'puppet', 'oss'],
    ['primaryRun', 'bolt', 'ssm'],
    ['primaryInstanceIds', 'primary-1', 'EC2 instance id'],
    ['primaryInstanceIds', '[]', 'must name at least one instance'],
    ['primaryInstanceTag', '{"key":"aws:role","value":"x"}', 'reserved by AWS'],
    ['primaryInstanceTag', '{"key":"role"}', 'value'],
    ['agentSource', 'internet', 'repository'],
  ])('%s = %j is refused', (key, value, problem) => {
    const message = failure({ flavor: 'oss', [key]: value }).message;
    expect(message).toContain(`- ${key}`);
    expect(message).toContain(problem);
  });
});

describe('agentRepositoryKeyFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cdk-key-'));
  const KEY = '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGexample\n-----END PGP PUBLIC KEY BLOCK-----\n';
  writeFileSync(join(dir, 'vendor.asc'), KEY);
  writeFileSync(join(dir, 'secret.asc'), `${KEY}-----BEGIN PGP PRIVATE KEY BLOCK-----\nx\n-----END PGP PRIVATE KEY BLOCK-----\n`);
  writeFileSync(join(dir, 'ca.pem'), PEM);

  it('is read at synth relative to the directory cdk runs in, and is no longer an example', () => {
    const config = load({ flavor: 'openvox', agentRepositoryKeyFile: 'vendor.asc' }, dir);
    expect(config.agentRepositoryKey).toBe(KEY);
    expect(config.exampleKeysInUse).not.toContain('agentRepositoryKeyFile');
  });

  it.each([
    ['missing.asc', 'does not exist'],
    ['ca.pem', 'must hold an ASCII-armored PGP public key block'],
    ['secret.asc', 'no private key'],
  ])('%s is refused: %s', (file, problem) => {
    const message = failure({ flavor: 'openvox', agentRepositoryKeyFile: file }, dir).message;
    expect(message).toContain('agentRepositoryKeyFile');
    expect(message).toContain(problem);
  });
});
