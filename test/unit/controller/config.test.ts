import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../lib/errors';
import { loadConfig as loadStackConfig } from '../../../cdk/config';
import { loadConfig } from '../../../lambdas/controller/config';
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
      ca: { hostname: 'puppet.corp.example.com', port: 8140 },
      puppetdb: { hostname: 'puppet.corp.example.com', port: 8081 },
      orchestrator: { hostname: 'puppet.corp.example.com', port: 8143, environment: 'production' },
      nlbDnsName: 'compile-masters-0123.elb.us-west-2.amazonaws.com',
      extraAltNames: [],
      expectedExtensions: { pp_role: 'compile_master' },
    });
    expect([...config.protectedCertnames]).toEqual(['puppet.corp.example.com']);
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
    expect(config.orchestrator).toEqual({ hostname: 'orch.corp.example.com', port: 8143, environment: 'infra' });
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
    expect(loadConfig({ ...VALID_ENV, ORCHESTRATOR_ENVIRONMENT: 'feature_42' }).orchestrator.environment).toBe('feature_42');
    expect(stack('feature_42')().orchestratorEnvironment).toBe('feature_42');
  });

  it('refuses secret references that are not Secrets Manager ARNs', () => {
    expect(failure({ ...VALID_ENV, RBAC_TOKEN_SECRET_ARN: 'my-token' })).toMatch(/RBAC_TOKEN_SECRET_ARN must be a Secrets Manager secret ARN/);
  });
});
