import { Stack } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { CA_PEM, CLIENT_CERT_ARN, PRIVATE_SUBNETS, RBAC_TOKEN_ARN, REAL_DEPLOY_CONTEXT } from './real-deploy-context';
import { loadConfig as loadControllerConfig } from '../../../lambdas/controller/config';
import { parseConfig as parseAgentConfig } from '../../../node-agent/src/config';
import { type Cfn, logicalIdByPath, only, renderAsDeployed, statementsOfRole, synthStack } from './stack-fixture';

const { template, stack } = synthStack(REAL_DEPLOY_CONTEXT);
const resources = template.toJSON().Resources as Record<string, Cfn>;
const controller = resources[logicalIdByPath(template, 'LifecycleController/Function/Resource')].Properties;

describe('a real deploy into an existing VPC', () => {
  it('builds no network of its own and uses the given private subnets everywhere', () => {
    for (const type of ['AWS::EC2::VPC', 'AWS::EC2::Subnet', 'AWS::EC2::NatGateway', 'AWS::EC2::FlowLog']) {
      template.resourceCountIs(type, 0);
    }
    expect(only(template, 'AWS::AutoScaling::AutoScalingGroup').properties.VPCZoneIdentifier).toEqual(PRIVATE_SUBNETS);
    expect(controller.VpcConfig.SubnetIds).toEqual(PRIVATE_SUBNETS);
    expect(only(template, 'AWS::ElasticLoadBalancingV2::LoadBalancer').properties.Subnets).toEqual(PRIVATE_SUBNETS);
    const mountTargets = Object.values(template.findResources('AWS::EFS::MountTarget')).map((m) => m.Properties.SubnetId);
    expect(mountTargets.sort()).toEqual([...PRIVATE_SUBNETS].sort());
    const groups = Object.values(template.findResources('AWS::EC2::SecurityGroup'));
    expect(groups.length).toBeGreaterThan(0);
    for (const group of groups) expect(group.Properties.VpcId).toBe('vpc-0123456789abcdef0');
  });

  it('imports the operator\'s secrets instead of creating them, and reads only those', () => {
    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    expect(controller.Environment.Variables).toMatchObject({
      CLIENT_CERT_SECRET_ARN: CLIENT_CERT_ARN,
      RBAC_TOKEN_SECRET_ARN: RBAC_TOKEN_ARN,
    });
    const read = statementsOfRole(template, controller.Role['Fn::GetAtt'][0]).filter((s) => s.Action === 'secretsmanager:GetSecretValue');
    expect(read).toEqual([{ Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: [CLIENT_CERT_ARN, RBAC_TOKEN_ARN] }]);
  });

  it('hands the Puppet settings to the controller', () => {
    const env = controller.Environment.Variables;
    expect(env).toMatchObject({
      PRIMARY_HOSTNAME: 'puppet.corp.example.com',
      PRIMARY_CERTNAME: 'puppet.corp.example.com',
      PUPPETDB_HOSTNAME: 'puppetdb.corp.example.com',
      ORCHESTRATOR_HOSTNAME: 'puppet.corp.example.com',
      EXTRA_ALT_NAMES: '["puppet.corp.example.com","puppet"]',
    });
    expect(JSON.parse(env.PROTECTED_CERTNAMES).sort()).toEqual([
      'compile-master-lifecycle.corp.example.com',
      'puppet-replica.corp.example.com',
      'puppet.corp.example.com',
      'puppetdb.corp.example.com',
    ]);
  });

  it('launches the operator\'s AMI and sizes the group from context', () => {
    const data = only(template, 'AWS::EC2::LaunchTemplate').properties.LaunchTemplateData;
    expect(data).toMatchObject({ ImageId: 'ami-0123456789abcdef0', InstanceType: 'm7g.2xlarge' });
    const group = only(template, 'AWS::AutoScaling::AutoScalingGroup').properties;
    expect(group).toMatchObject({ MinSize: '2', MaxSize: '6', DesiredCapacity: '3' });
    expect(group.LifecycleHookSpecificationList.map((hook: Cfn) => hook.HeartbeatTimeout)).toEqual([1200, 1200]);
  });

  it('writes the primary\'s CA certificate and an agent configuration the node agent accepts', () => {
    const content = only(template, 'Custom::CompileMasterEfsContent').properties;
    expect(content.CaCertificate).toBe(CA_PEM);
    const agentConfig = parseAgentConfig(JSON.parse(renderAsDeployed(template, content.AgentConfig)), 'the stack');
    expect(agentConfig).toMatchObject({
      primaryServer: 'puppet.corp.example.com',
      caPort: 8140,
      caCertPath: '/etc/compile-master-agent/ca.pem',
      queueUrl: expect.stringMatching(/^https:\/\/sqs\./),
      region: 'eu-west-1',
      extensions: { pp_role: 'compile_master' },
      dnsAltNames: [expect.stringMatching(/\.elb\.eu-west-1\.amazonaws\.com$/), 'puppet.corp.example.com', 'puppet'],
      localServerPort: 8140,
      // The health check's port, and the drain its settings need (3 × 10 s + 5 s + 10 s).
      readinessPort: 8141,
      drainSeconds: 45,
      // Then up to the NLB's draining interval for agents still connected: the context's
      // deregistration delay of 30 s.
      inFlightWaitSeconds: 30,
      // launchCeilingMinutes 180: the default ceiling's waits, doubled (lib/launch-budget.ts).
      timeouts: { caUnavailableSeconds: 600, certificateSeconds: 3600, puppetRunSeconds: 3600, serverHealthySeconds: 1200 },
    });
    expect(Stack.of(stack).resolve(content.ContentHash)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('gives the controller an environment its own parser accepts', () => {
    const env = renderAsDeployed(template, controller.Environment.Variables);
    const config = loadControllerConfig({ ...env, AWS_REGION: 'eu-west-1' });
    expect(config.protectedCertnames).toContain('puppet-replica.corp.example.com');
    expect(config.puppetdb).toEqual({ hostname: 'puppetdb.corp.example.com', port: 8081 });
    expect(config.launchCeilingSeconds).toBe(180 * 60);
  });

  it('notifies the operator\'s topic on every alarm', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms.length).toBeGreaterThan(0);
    for (const alarm of alarms) expect(alarm.Properties.AlarmActions).toEqual(['arn:aws:sns:eu-west-1:123456789012:ops-alarms']);
  });
});
