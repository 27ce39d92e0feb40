import { describe, expect, it } from 'vitest';
import { VENDOR_REPOSITORY } from '../../../cdk/agent-install';
import { loadConfig as loadControllerConfig } from '../../../lambdas/controller/config';
import { FLAVOR } from '../../../lib/flavor';
import { parseConfig } from '../../../node-agent/src/config';
import { SIGNING_KEY_FILE as keyFile, SIGNING_KEY_PEM as KEY } from './real-deploy-context';
import { asArray, logicalIdByPath, only, renderAsDeployed, rulesOf, statementsOfRole, synthStack } from './stack-fixture';

// Open-source Puppet and OpenVox: no PCP broker (8142), no orchestrator, no RBAC token (issue 14).
const PRIMARY = '192.0.2.10/32';

const arn = (service: string, account: boolean, resource: string) => ({
  'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:${service}:`, { Ref: 'AWS::Region' }, ...(account ? [':', { Ref: 'AWS::AccountId' }, `:${resource}`] : [`::${resource}`])]],
});
const DOCUMENT = arn('ssm', false, 'document/AWS-RunShellScript');

function controllerOf(template: ReturnType<typeof synthStack>['template']) {
  const id = (path: string) => logicalIdByPath(template, path);
  const fn = template.toJSON().Resources[id('LifecycleController/Function/Resource')];
  const statements = statementsOfRole(template, fn.Properties.Role['Fn::GetAtt'][0]);
  return {
    env: fn.Properties.Environment.Variables as Record<string, unknown>,
    ssm: statements.filter((s) => asArray(s.Action).some((action: string) => action.startsWith('ssm:'))),
    statements,
  };
}

describe.each(['oss', 'openvox'] as const)('flavor %s', (flavor) => {
  const { template } = synthStack({ flavor, agentRepositoryKeyFile: keyFile });
  const id = (path: string) => logicalIdByPath(template, path);
  const instances = id('CompileMasters/SecurityGroup/Resource');
  const nlb = id('LoadBalancer/SecurityGroup/Resource');
  const controller = id('LifecycleController/SecurityGroup/Resource');

  it("outputs the controller's role, which doctor asks IAM's policy simulator about", () => {
    template.hasOutput('ControllerRoleArn', { Value: template.toJSON().Resources[id('LifecycleController/Function/Resource')].Properties.Role });
  });

  it('has no 8142 anywhere: no listener, target group, security-group rule or egress', () => {
    expect(JSON.stringify(template.toJSON())).not.toMatch(/8142|PcpBroker/);
    template.resourceCountIs('AWS::ElasticLoadBalancingV2::Listener', 1);
    template.resourceCountIs('AWS::ElasticLoadBalancingV2::TargetGroup', 1);
    expect(only(template, 'AWS::AutoScaling::AutoScalingGroup').properties.TargetGroupARNs).toEqual([{ Ref: id('LoadBalancer/PuppetServerTargets/Resource') }]);
    expect(rulesOf(template, nlb, 'ingress')).toEqual([{ peer: '10.0.0.0/8', port: 'tcp/8140' }]);
    expect(rulesOf(template, nlb, 'egress')).toEqual([
      { peer: instances, port: 'tcp/8140' },
      { peer: instances, port: 'tcp/8141' },
    ]);
  });

  it('opens no PE-only or orchestrator port towards the primary, from the instances or the controller', () => {
    expect(rulesOf(template, instances, 'egress')).toEqual([
      { peer: '0.0.0.0/0', port: 'tcp/443' },
      { peer: PRIMARY, port: 'tcp/8081' },
      { peer: PRIMARY, port: 'tcp/8140' },
      { peer: id('SharedStorage/SecurityGroup/Resource'), port: 'tcp/2049' },
    ]);
    // HTTPS (443) is what the SSM API needs; it was there for the other AWS APIs already.
    expect(rulesOf(template, controller, 'egress')).toEqual([
      { peer: '0.0.0.0/0', port: 'tcp/443' },
      { peer: PRIMARY, port: 'tcp/8081' },
      { peer: PRIMARY, port: 'tcp/8140' },
      { peer: instances, port: 'tcp/8140' },
    ]);
  });

  it('has no RBAC token secret, output or variable; says its flavor and primary run', () => {
    template.resourceCountIs('AWS::SecretsManager::Secret', 1);
    const outputs = template.toJSON().Outputs;
    expect(outputs.RbacTokenSecretArn).toBeUndefined();
    expect(outputs.Flavor.Value).toBe(flavor);
    expect(outputs.PrimaryRun.Value).toBe('ssm');
    const { env, statements } = controllerOf(template);
    expect(Object.keys(env).filter((name) => /RBAC|ORCHESTRATOR/.test(name))).toEqual([]);
    expect(env).toMatchObject({ FLAVOR: flavor, PRIMARY_RUN: 'ssm', PRIMARY_INSTANCE_IDS: '["i-0123456789abcdef0"]' });
    expect(env.PRIMARY_INSTANCE_TAG).toBeUndefined();
    expect(statements.filter((s) => asArray(s.Action).includes('secretsmanager:GetSecretValue'))).toEqual([
      { Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: { Ref: id('Secrets/ClientCert/Resource') } },
    ]);
  });

  it('may run a shell script on the primary\'s instance only, and read command status', () => {
    const { ssm } = controllerOf(template);
    expect(ssm).toEqual([
      {
        Effect: 'Allow',
        Action: ['autoscaling:DescribeAutoScalingGroups', 'ec2:DescribeInstances', 'ssm:ListCommands'],
        Resource: '*',
      },
      { Effect: 'Allow', Action: 'ssm:SendCommand', Resource: [arn('ec2', true, 'instance/i-0123456789abcdef0'), DOCUMENT] },
    ]);
  });

  it('alarms on the one target group there is', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).filter((a) => a.Properties.MetricName === 'UnHealthyHostCount');
    expect(alarms).toHaveLength(1);
  });

  it(`tells the node agent to restart ${FLAVOR[flavor].serverService} and the bootstrap to install ${FLAVOR[flavor].agentPackage} from the vendor with the pinned key`, () => {
    const content = only(template, 'Custom::CompileMasterEfsContent').properties;
    const agent = parseConfig(JSON.parse(renderAsDeployed(template, content.AgentConfig)), 'agent.json');
    expect(agent.localServerService).toBe('puppetserver');
    expect(agent.agentInstall).toEqual({ source: 'repository', package: FLAVOR[flavor].agentPackage, ...VENDOR_REPOSITORY[flavor].al2023 });
    expect(content.PackageSigningKey).toBe(KEY);
  });
});

describe('the primary\'s instances by tag', () => {
  const { template } = synthStack({ flavor: 'openvox', primaryInstanceTag: '{"key":"puppet-role","value":"primary"}' });

  it('scopes SendCommand to instances with that tag, and the document in its own statement', () => {
    const { ssm, env } = controllerOf(template);
    expect(ssm.filter((s) => asArray(s.Action).includes('ssm:SendCommand'))).toEqual([
      { Effect: 'Allow', Action: 'ssm:SendCommand', Resource: DOCUMENT },
      {
        Effect: 'Allow',
        Action: 'ssm:SendCommand',
        Resource: arn('ec2', true, 'instance/*'),
        Condition: { StringEquals: { 'ssm:resourceTag/puppet-role': 'primary' } },
      },
    ]);
    expect(env).toMatchObject({ PRIMARY_INSTANCE_TAG: '{"key":"puppet-role","value":"primary"}' });
    expect(env.PRIMARY_INSTANCE_IDS).toBeUndefined();
  });
});

describe('primaryRun none', () => {
  const { template } = synthStack({ flavor: 'oss', primaryRun: 'none', agentSource: 'ami' });

  it('grants no SSM at all and names no instance; the bootstrap leaves the agent to the image', () => {
    const { ssm, env } = controllerOf(template);
    expect(ssm).toEqual([]);
    expect(env).toMatchObject({ FLAVOR: 'oss', PRIMARY_RUN: 'none' });
    expect(Object.keys(env).filter((name) => /^PRIMARY_INSTANCE|RBAC|ORCHESTRATOR/.test(name))).toEqual([]);
    const content = only(template, 'Custom::CompileMasterEfsContent').properties;
    expect(JSON.parse(renderAsDeployed(template, content.AgentConfig)).agentInstall).toEqual({ source: 'ami' });
    expect(content.PackageSigningKey).toBeUndefined();
  });
});

describe('PE run through SSM', () => {
  const { template } = synthStack({ primaryRun: 'ssm', primaryInstanceIds: ['i-0aaaabbbbccccdddd'] });
  const id = (path: string) => logicalIdByPath(template, path);

  it('keeps 8142 and PE\'s ports, drops the orchestrator\'s and the RBAC token', () => {
    expect(rulesOf(template, id('CompileMasters/SecurityGroup/Resource'), 'egress').filter((r) => r.peer === PRIMARY).map((r) => r.port)).toEqual(
      ['tcp/4433', 'tcp/5432', 'tcp/8081', 'tcp/8140', 'tcp/8142'],
    );
    expect(rulesOf(template, id('LifecycleController/SecurityGroup/Resource'), 'egress').filter((r) => r.peer === PRIMARY).map((r) => r.port)).toEqual(
      ['tcp/8081', 'tcp/8140'],
    );
    template.resourceCountIs('AWS::ElasticLoadBalancingV2::TargetGroup', 2);
    template.resourceCountIs('AWS::SecretsManager::Secret', 1);
    expect(controllerOf(template).env).toMatchObject({ FLAVOR: 'pe', PRIMARY_RUN: 'ssm', PRIMARY_INSTANCE_IDS: '["i-0aaaabbbbccccdddd"]' });
    const agent = JSON.parse(renderAsDeployed(template, only(template, 'Custom::CompileMasterEfsContent').properties.AgentConfig));
    expect(agent).toMatchObject({ localServerService: 'pe-puppetserver', agentInstall: { source: 'primary' } });
  });
});

describe('the controller reads its own environment in every flavor', () => {
  const cases = [
    { context: { flavor: 'oss', agentRepositoryKeyFile: keyFile }, primaryRun: { mode: 'ssm', target: { instanceIds: ['i-0123456789abcdef0'] } } },
    { context: { flavor: 'openvox', primaryInstanceTag: '{"key":"puppet-role","value":"primary"}' }, primaryRun: { mode: 'ssm', target: { tag: { key: 'puppet-role', value: 'primary' } } } },
    { context: { flavor: 'oss', primaryRun: 'none', agentSource: 'ami' }, primaryRun: { mode: 'none' } },
    { context: { primaryRun: 'ssm', primaryInstanceIds: ['i-0aaaabbbbccccdddd'] }, primaryRun: { mode: 'ssm', target: { instanceIds: ['i-0aaaabbbbccccdddd'] } } },
  ] as const;
  it.each(cases)('$context', ({ context, primaryRun }) => {
    const { template } = synthStack(context);
    const env = renderAsDeployed(template, controllerOf(template).env) as Record<string, string>;
    const config = loadControllerConfig({ ...env, AWS_REGION: 'eu-west-1' });
    expect(config.flavor).toBe('flavor' in context ? context.flavor : 'pe');
    expect(config.primaryRun).toMatchObject(primaryRun);
  });
});
