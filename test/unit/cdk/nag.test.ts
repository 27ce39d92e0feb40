import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { synthStack } from './stack-fixture';
import { REAL_DEPLOY_CONTEXT, SIGNING_KEY_FILE } from './real-deploy-context';

const { rbacTokenSecretArn: _orchestratorOnly, ...withoutToken } = REAL_DEPLOY_CONTEXT;
const OPENVOX_DEPLOY_CONTEXT = {
  ...withoutToken,
  flavor: 'openvox',
  primaryInstanceTag: '{"key":"puppet-role","value":"primary"}',
  agentRepositoryKeyFile: SIGNING_KEY_FILE,
};

describe.each([
  ['the embedded example configuration', {}, ['compile-masters:example-config']],
  // An explicit desiredCapacity resets the group's size on every deploy: the operator is told.
  // An existing VPC's routes are the operator's: synth says what they must reach.
  ['a real-deploy configuration (existing VPC, imported secrets, own AMI)', REAL_DEPLOY_CONTEXT, ['existing-vpc-routes', 'desiredCapacitySet']],
  // Open source: SSM runs on the primary's instance (by id), the vendor repository without a key yet.
  ['open-source Puppet with the embedded examples', { flavor: 'oss' }, ['compile-masters:example-config']],
  // OpenVox, the primary chosen by tag: SendCommand on instance/* under a tag condition.
  ['OpenVox, real-deploy keys, the primary by tag', OPENVOX_DEPLOY_CONTEXT, ['existing-vpc-routes', 'desiredCapacitySet']],
  // A new VPC routed to a private primary: the attachment, its routes and DNS to custom resolvers.
  [
    'a new VPC through a Transit Gateway, with custom resolvers',
    { primaryCidr: '10.20.0.15/32', primaryRoute: '{"transitGatewayId":"tgw-0123456789abcdef0"}', dnsResolverCidrs: '10.30.0.2/32' },
    ['compile-masters:example-config'],
  ],
  ['a new VPC peered with the primary\'s', { primaryCidr: '10.20.0.15/32', primaryRoute: '{"vpcPeeringConnectionId":"pcx-0123456789abcdef0"}' }, ['compile-masters:example-config']],
  // On demand only: the group names its launch template itself, with no mixed instances policy.
  ['the embedded examples without spot', { spot: 'false' }, ['compile-masters:example-config']],
])('%s', (_name, context, expectedWarnings) => {
  const { app, stack } = synthStack(context, { validate: true });

  it('has no unacknowledged AwsSolutions finding', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(report.violations.map((v) => `${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
  });

  it('passes CDK\'s built-in CloudFormation schema validation', () => {
    const report = JSON.parse(readFileSync(join(app.outdir, 'validation-report.json'), 'utf8'));
    expect(report.pluginReports).toEqual([]);
  });

  it('has no errors and only the expected warnings', () => {
    const annotations = Annotations.fromStack(stack);
    expect(annotations.findError('*', Match.anyValue())).toEqual([]);
    const warnings = annotations.findWarning('*', Match.anyValue()).map((w) => String(w.entry.data));
    expect(warnings).toHaveLength(expectedWarnings.length);
    for (const [index, id] of expectedWarnings.entries()) expect(warnings[index]).toContain(id);
  });
});
