import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../lib/errors';
import { loadConfig as loadStackConfig } from '../../../cdk/config';
import { ENVIRONMENT_EXAMPLES, loadConfig } from '../../../lambdas/controller/config';
import { primaryRunProblem } from '../../../lib/flavor';
import { VALID_ENV } from './support';

function failure(env: Record<string, string | undefined>): string {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('reads the environment with the documented defaults', () => {
    const config = loadConfig(VALID_ENV);
    expect(config).toMatchObject({
      region: 'us-west-2',
      flavor: 'pe',
      primaryRun: {
        mode: 'orchestrator',
        rbacTokenSecretArn: VALID_ENV.RBAC_TOKEN_SECRET_ARN,
        orchestrator: { hostname: 'puppet.corp.example.com', port: 8143, environment: 'production' },
      },
      ca: { hostname: 'puppet.corp.example.com', port: 8140 },
      puppetdb: { hostname: 'puppet.corp.example.com', port: 8081 },
      nlbDnsName: 'compile-masters-0123.elb.us-west-2.amazonaws.com',
      extraAltNames: [],
      expectedExtensions: { pp_role: 'compile_master' },
      replaceUnhealthyAfterSeconds: 900,
    });
    expect([...config.protectedCertnames]).toEqual(['puppet.corp.example.com']);
    // The launch budget's default ceiling, 90 min.
    expect(config.launchCeilingSeconds).toBe(5400);
  });

  it('reads the launch ceiling, within the range of the context key', () => {
    expect(loadConfig({ ...VALID_ENV, LAUNCH_CEILING_SECONDS: '7200' }).launchCeilingSeconds).toBe(7200);
    expect(failure({ ...VALID_ENV, LAUNCH_CEILING_SECONDS: '60' })).toMatch(/LAUNCH_CEILING_SECONDS must be at least 1800 \(launchCeilingMinutes 30\)/);
    expect(failure({ ...VALID_ENV, LAUNCH_CEILING_SECONDS: 'soon' })).toMatch(/LAUNCH_CEILING_SECONDS must be a number of seconds/);
  });

  it('takes the unhealthy window in seconds, at least 5 minutes (a reboot must fit) and at most 2 hours', () => {
    expect(loadConfig({ ...VALID_ENV, REPLACE_UNHEALTHY_AFTER_SECONDS: '300' }).replaceUnhealthyAfterSeconds).toBe(300);
    expect(failure({ ...VALID_ENV, REPLACE_UNHEALTHY_AFTER_SECONDS: '60' })).toMatch(/REPLACE_UNHEALTHY_AFTER_SECONDS must be at least 300 \(replaceUnhealthyAfterMinutes 5\): a reboot must fit in it \(example: REPLACE_UNHEALTHY_AFTER_SECONDS=900\)/);
    expect(failure({ ...VALID_ENV, REPLACE_UNHEALTHY_AFTER_SECONDS: '7201' })).toMatch(/REPLACE_UNHEALTHY_AFTER_SECONDS must be at most 7200/);
    expect(failure({ ...VALID_ENV, REPLACE_UNHEALTHY_AFTER_SECONDS: '15m' })).toMatch(/REPLACE_UNHEALTHY_AFTER_SECONDS must be a number of seconds/);
  });

  it('takes explicit PuppetDB and orchestrator hosts, ports and lists', () => {
    const config = loadConfig({
      ...VALID_ENV,
      PUPPETDB_HOSTNAME: 'puppetdb.corp.example.com',
      PUPPETDB_PORT: '18081',
      ORCHESTRATOR_HOSTNAME: 'orch.corp.example.com',
      ORCHESTRATOR_ENVIRONMENT: 'infra',
      PROTECTED_CERTNAMES: '["replica.corp.example.com"]',
      EXTRA_ALT_NAMES: '["Puppet.corp.example.com"]',
    });
    expect(config.puppetdb).toEqual({ hostname: 'puppetdb.corp.example.com', port: 18081 });
    expect(config.primaryRun).toMatchObject({ orchestrator: { hostname: 'orch.corp.example.com', port: 8143, environment: 'infra' } });
    expect([...config.protectedCertnames].sort()).toEqual(['puppet.corp.example.com', 'replica.corp.example.com']);
    expect(config.extraAltNames).toEqual(['puppet.corp.example.com']);
  });

  it('names a missing variable and shows an example', () => {
    const { GROUP_NAME: _, ...env } = VALID_ENV;
    expect(failure(env)).toMatch(/GROUP_NAME is not set \(example: GROUP_NAME=compile-masters\)/);
  });

  it('lists every problem at once', () => {
    const message = failure({ ...VALID_ENV, CA_PORT: '81400', QUEUE_URL: 'http://sqs.example.com/q', PRIMARY_CERTNAME: '../primary' });
    expect(message).toMatch(/CA_PORT/);
    expect(message).toMatch(/QUEUE_URL must be an https:\/\/ SQS queue URL/);
    expect(message).toMatch(/PRIMARY_CERTNAME must be a lowercase DNS-style certname/);
  });

  it('explains JSON variables: syntax, shape and forbidden extensions', () => {
    expect(failure({ ...VALID_ENV, PROTECTED_CERTNAMES: '[oops' })).toMatch(/PROTECTED_CERTNAMES is not valid JSON \(example: PROTECTED_CERTNAMES=\["puppet-replica/);
    expect(failure({ ...VALID_ENV, EXTRA_ALT_NAMES: '"puppet"' })).toMatch(/EXTRA_ALT_NAMES must be a JSON array of DNS names/);
    expect(failure({ ...VALID_ENV, EXPECTED_EXTENSIONS: '{"pp_instance_id":"i-1"}' })).toMatch(/EXPECTED_EXTENSIONS.*pp_instance_id.*checked by the controller itself/);
    expect(failure({ ...VALID_ENV, EXPECTED_EXTENSIONS: '{"pp_cli_auth":"true"}' })).toMatch(/never granted/);
    // The node agent would refuse to put it in a CSR (lib/puppet/extensions.ts, one rule for both).
    expect(failure({ ...VALID_ENV, EXPECTED_EXTENSIONS: '{"pp_role":"compile_master\u00e9"}' })).toMatch(/printable ASCII/);
    expect(failure({ ...VALID_ENV, EXPECTED_EXTENSIONS: '{"role":"x"}' })).toMatch(/"role" is not an allowed Puppet extension short name/);
  });

  it('checks the orchestrator environment with the rule the stack uses', () => {
    const stack = (name: string) => () => loadStackConfig((key) => (key === 'orchestratorEnvironment' ? name : undefined));
    for (const name of ['Production', 'prod-1', 'dev env']) {
      expect(failure({ ...VALID_ENV, ORCHESTRATOR_ENVIRONMENT: name })).toMatch(/ORCHESTRATOR_ENVIRONMENT must be a Puppet environment name \(a-z, 0-9, _\)/);
      expect(stack(name)).toThrow(/orchestratorEnvironment: must be a Puppet environment name \(a-z, 0-9, _\)/);
    }
    expect(loadConfig({ ...VALID_ENV, ORCHESTRATOR_ENVIRONMENT: 'feature_42' }).primaryRun).toMatchObject({ orchestrator: { environment: 'feature_42' } });
    expect(stack('feature_42')().orchestratorEnvironment).toBe('feature_42');
  });

  it('refuses secret references that are not Secrets Manager ARNs', () => {
    expect(failure({ ...VALID_ENV, RBAC_TOKEN_SECRET_ARN: 'my-token' })).toMatch(/RBAC_TOKEN_SECRET_ARN must be a Secrets Manager secret ARN/);
  });

  it('checks the primary-run variables against FLAVOR and PRIMARY_RUN', () => {
    expect(loadConfig({ ...VALID_ENV, FLAVOR: 'pe', PRIMARY_RUN: 'orchestrator' }).primaryRun.mode).toBe('orchestrator');
    expect(failure({ ...VALID_ENV, FLAVOR: 'puppet' })).toMatch(/FLAVOR must be one of pe, oss, openvox \(example: FLAVOR=pe\)/);
    expect(failure({ ...VALID_ENV, PRIMARY_RUN: 'ansible' })).toMatch(/PRIMARY_RUN must be one of orchestrator, ssm, none/);
    // The flavor's own words (lib/flavor.ts), not a second phrasing of them.
    expect(failure({ ...VALID_ENV, FLAVOR: 'oss', PRIMARY_RUN: 'orchestrator' })).toContain(
      `PRIMARY_RUN is "orchestrator", which FLAVOR=oss cannot use: ${primaryRunProblem('oss', 'orchestrator')}`,
    );
    // Without PRIMARY_RUN, the flavor's default: open source has no orchestrator, so its token is a leftover.
    expect(failure({ ...VALID_ENV, FLAVOR: 'openvox' })).toMatch(/RBAC_TOKEN_SECRET_ARN is set, but only PRIMARY_RUN=orchestrator uses it \(PRIMARY_RUN is ssm\): a leftover/);
    const { RBAC_TOKEN_SECRET_ARN: _, ...withoutToken } = VALID_ENV;
    expect(failure(withoutToken)).toMatch(/RBAC_TOKEN_SECRET_ARN is not set \(PRIMARY_RUN=orchestrator needs the RBAC token\) \(example: RBAC_TOKEN_SECRET_ARN=arn:aws:secretsmanager:/);
  });

  it('reads an SSM runner by instance ids or by tag, and refuses leftovers of the orchestrator', () => {
    const { RBAC_TOKEN_SECRET_ARN: _, ...base } = VALID_ENV;
    const ssm = { ...base, FLAVOR: 'oss', PRIMARY_RUN: 'ssm' };
    expect(loadConfig({ ...ssm, PRIMARY_INSTANCE_IDS: '["i-0123456789abcdef0","i-0fedcba9876543210"]' })).toMatchObject({
      flavor: 'oss',
      primaryRun: { mode: 'ssm', target: { instanceIds: ['i-0123456789abcdef0', 'i-0fedcba9876543210'] }, puppetBin: '/opt/puppetlabs/bin/puppet' },
    });
    expect(loadConfig({ ...ssm, FLAVOR: 'openvox', PRIMARY_INSTANCE_TAG: '{"key":"Role","value":"puppet-primary"}', PRIMARY_PUPPET_BIN: '/usr/local/bin/puppet' }).primaryRun).toEqual({
      mode: 'ssm',
      target: { tag: { key: 'Role', value: 'puppet-primary' } },
      puppetBin: '/usr/local/bin/puppet',
    });
    // PE may use SSM too.
    expect(loadConfig({ ...base, PRIMARY_RUN: 'ssm', PRIMARY_INSTANCE_IDS: '["i-0123456789abcdef0"]' }).primaryRun.mode).toBe('ssm');

    expect(failure(ssm)).toMatch(/PRIMARY_INSTANCE_IDS is not set, nor PRIMARY_INSTANCE_TAG: PRIMARY_RUN=ssm needs exactly one of them .* \(example: PRIMARY_INSTANCE_IDS=\["i-0123456789abcdef0"\]\)/);
    expect(failure({ ...ssm, PRIMARY_INSTANCE_IDS: '["i-0123456789abcdef0"]', PRIMARY_INSTANCE_TAG: '{"key":"Role","value":"p"}' })).toMatch(/PRIMARY_INSTANCE_TAG is set as well as PRIMARY_INSTANCE_IDS: set exactly one/);
    expect(failure({ ...ssm, PRIMARY_INSTANCE_IDS: '[]' })).toMatch(/PRIMARY_INSTANCE_IDS must name at least one instance/);
    expect(failure({ ...ssm, PRIMARY_INSTANCE_IDS: '["i-0123456789abcdef0","i-0123456789abcdef0"]' })).toMatch(/PRIMARY_INSTANCE_IDS names an instance twice/);
    expect(failure({ ...ssm, PRIMARY_INSTANCE_IDS: '["i-../../x"]' })).toMatch(/PRIMARY_INSTANCE_IDS at 0 is not an EC2 instance id/);
    expect(failure({ ...ssm, PRIMARY_INSTANCE_IDS: JSON.stringify(Array.from({ length: 51 }, (_, i) => `i-${i.toString(16).padStart(17, '0')}`)) })).toMatch(/more than 50 instances/);
    expect(failure({ ...ssm, PRIMARY_INSTANCE_TAG: '{"key":"Role"}' })).toMatch(/PRIMARY_INSTANCE_TAG at value value must be a string/);
    expect(failure({ ...ssm, PRIMARY_INSTANCE_TAG: '{"key":"Role;rm -rf /","value":"p"}' })).toMatch(/PRIMARY_INSTANCE_TAG at key key must be a non-empty EC2 tag key/);
    expect(failure({ ...ssm, PRIMARY_INSTANCE_TAG: '{"key":"Role","value":"p","extra":1}' })).toMatch(/PRIMARY_INSTANCE_TAG/);
    expect(failure({ ...ssm, PRIMARY_INSTANCE_TAG: 'Role=p' })).toMatch(/PRIMARY_INSTANCE_TAG is not valid JSON/);
    expect(failure({ ...ssm, PRIMARY_INSTANCE_IDS: '["i-0123456789abcdef0"]', PRIMARY_PUPPET_BIN: 'puppet; curl evil' })).toMatch(/PRIMARY_PUPPET_BIN must be an absolute path/);

    const leftovers = failure({ ...ssm, PRIMARY_INSTANCE_IDS: '["i-0123456789abcdef0"]', RBAC_TOKEN_SECRET_ARN: VALID_ENV.RBAC_TOKEN_SECRET_ARN, ORCHESTRATOR_ENVIRONMENT: 'production' });
    expect(leftovers).toMatch(/RBAC_TOKEN_SECRET_ARN is set, but only PRIMARY_RUN=orchestrator uses it \(PRIMARY_RUN is ssm\)/);
    expect(leftovers).toMatch(/ORCHESTRATOR_ENVIRONMENT is set, but only PRIMARY_RUN=orchestrator uses it/);
  });

  it('takes none with no runner settings, and refuses the settings of the others', () => {
    const { RBAC_TOKEN_SECRET_ARN: _, ...base } = VALID_ENV;
    expect(loadConfig({ ...base, FLAVOR: 'oss', PRIMARY_RUN: 'none' }).primaryRun).toEqual({ mode: 'none' });
    expect(failure({ ...base, PRIMARY_RUN: 'none', PRIMARY_INSTANCE_TAG: '{"key":"Role","value":"p"}' })).toMatch(/PRIMARY_INSTANCE_TAG is set, but only PRIMARY_RUN=ssm uses it \(PRIMARY_RUN is none\)/);
    expect(failure({ ...VALID_ENV, PRIMARY_RUN: 'none' })).toMatch(/RBAC_TOKEN_SECRET_ARN is set, but only PRIMARY_RUN=orchestrator uses it/);
    // With the orchestrator, the SSM runner's settings are leftovers too.
    expect(failure({ ...VALID_ENV, PRIMARY_PUPPET_BIN: '/opt/puppetlabs/bin/puppet' })).toMatch(/PRIMARY_PUPPET_BIN is set, but only PRIMARY_RUN=ssm uses it \(PRIMARY_RUN is orchestrator\)/);
  });

  it('ENVIRONMENT_EXAMPLES is a complete, valid environment', () => {
    expect(loadConfig(ENVIRONMENT_EXAMPLES).primaryRun.mode).toBe('orchestrator');
  });
});
