import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { LAUNCH_HOOK_NAME, TERMINATE_HOOK_NAME } from '../../../cdk/compile-master-stack';
import { loadConfig as loadControllerConfig } from '../../../lambdas/controller/config';
import { READINESS_CHECK } from '../../../lib/readiness-check';
import { asArray, logicalIdByPath, only, renderAsDeployed, rulesOf, statementsOfRole, synthStack } from './stack-fixture';

// The embedded example configuration: what `cdk synth` produces on a fresh clone.
const { template } = synthStack();
const id = (path: string) => logicalIdByPath(template, path);
const groupArn = (name: string) => ({
  'Fn::Join': [
    '',
    ['arn:', { Ref: 'AWS::Partition' }, ':autoscaling:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, `:autoScalingGroup:*:autoScalingGroupName/${name}`],
  ],
});

describe('compile-master instances', () => {
  it('require IMDSv2 with a hop limit of 1', () => {
    template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1, InstanceMetadataTags: 'disabled' },
      }),
    });
  });

  it('boot from an encrypted gp3 root volume', () => {
    template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        BlockDeviceMappings: [
          { DeviceName: '/dev/xvda', Ebs: { Encrypted: true, VolumeType: 'gp3', VolumeSize: 50, DeleteOnTermination: true } },
        ],
      }),
    });
  });

  it('take the AMI from the public Amazon Linux 2023 SSM parameter, resolved at deploy time', () => {
    const imageId = only(template, 'AWS::EC2::LaunchTemplate').properties.LaunchTemplateData.ImageId;
    const parameter = template.toJSON().Parameters[imageId.Ref];
    expect(parameter.Type).toBe('AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>');
    expect(parameter.Default).toMatch(/^\/aws\/service\/ami-amazon-linux-latest\/al2023-ami-kernel-.*-x86_64$/);
  });

  it('mount EFS read-only over TLS with IAM, then run bootstrap.sh; user data holds no secret', () => {
    const userData = JSON.stringify(only(template, 'AWS::EC2::LaunchTemplate').properties.LaunchTemplateData.UserData);
    expect(userData).toContain('efs _netdev,nofail,noresvport,tls,iam,accesspoint=');
    expect(userData).toContain(',ro 0 0');
    expect(userData).toContain('bash \\"$MOUNT/bootstrap.sh\\"');
    expect(userData).not.toMatch(/secret|token|PRIVATE KEY/i);
  });

  it('have a role that can only mount the access point read-only and send to the controller queue', () => {
    const statements = statementsOfRole(template, id('CompileMasters/InstanceRole/Resource'));
    expect(statements).toEqual([
      {
        Action: 'elasticfilesystem:ClientMount',
        Effect: 'Allow',
        Resource: { 'Fn::GetAtt': [id('SharedStorage/FileSystem/Resource'), 'Arn'] },
        Condition: {
          StringEquals: { 'elasticfilesystem:AccessPointArn': expect.anything() },
          Bool: { 'elasticfilesystem:AccessedViaMountTarget': 'true' },
        },
      },
      { Action: 'sqs:SendMessage', Effect: 'Allow', Resource: { 'Fn::GetAtt': [id('LifecycleQueue/Resource/Resource'), 'Arn'] } },
    ]);
    expect(JSON.stringify(statements[0].Condition)).toContain(id('SharedStorage/FileSystem/AccessPoint/Resource'));
    expect(template.toJSON().Resources[id('CompileMasters/InstanceRole/Resource')].Properties.ManagedPolicyArns).toBeUndefined();
  });
});

describe('Auto Scaling group', () => {
  const group = only(template, 'AWS::AutoScaling::AutoScalingGroup');

  it('declares both lifecycle hooks inside the group, with explicit default results', () => {
    expect(group.properties.LifecycleHookSpecificationList).toEqual([
      {
        LifecycleHookName: LAUNCH_HOOK_NAME,
        LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING',
        DefaultResult: 'ABANDON',
        HeartbeatTimeout: 1800,
      },
      {
        LifecycleHookName: TERMINATE_HOOK_NAME,
        LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING',
        DefaultResult: 'CONTINUE',
        HeartbeatTimeout: 1800,
      },
    ]);
    template.resourceCountIs('AWS::AutoScaling::LifecycleHook', 0);
  });

  it('has a fixed name, EC2 health checks only (a reboot never costs a node) with a grace period, and both target groups', () => {
    expect(group.properties).toMatchObject({
      AutoScalingGroupName: 'CompileMasters-compile-masters',
      MinSize: '0',
      MaxSize: '4',
      HealthCheckType: 'EC2',
      HealthCheckGracePeriod: 120,
      TargetGroupARNs: [{ Ref: id('LoadBalancer/PuppetServerTargets/Resource') }, { Ref: id('LoadBalancer/PcpBrokerTargets/Resource') }],
    });
    // Unset, so a deploy never resets the size the scaling policy chose.
    expect(group.properties.DesiredCapacity).toBeUndefined();
  });

  it("names its instances after the stack, from launch on (in place of CDK's construct path)", () => {
    expect(group.properties.Tags).toEqual([{ Key: 'Name', Value: 'CompileMasters-compile-master', PropagateAtLaunch: true }]);
  });

  it("writes into agent.json the node agent's waits the launch budget gives the default ceiling (90 min)", () => {
    const content = only(template, 'Custom::CompileMasterEfsContent').properties;
    expect(JSON.parse(renderAsDeployed(template, content.AgentConfig)).timeouts).toEqual({
      caUnavailableSeconds: 300,
      certificateSeconds: 1800,
      puppetRunSeconds: 1800,
      serverHealthySeconds: 600,
    });
  });

  it('scales on 70 % CPU', () => {
    template.hasResourceProperties('AWS::AutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingConfiguration: Match.objectLike({
        PredefinedMetricSpecification: { PredefinedMetricType: 'ASGAverageCPUUtilization' },
        TargetValue: 70,
      }),
    });
  });

  it('launches only after the controller, its queue wiring and the EFS content exist', () => {
    const dependsOn = template.toJSON().Resources[group.logicalId].DependsOn as string[];
    expect(dependsOn).toEqual(
      expect.arrayContaining([
        id('LifecycleController/Function/Resource'),
        id('LifecycleController/Function/SqsEventSource:CompileMastersLifecycleQueue35CF0A70/Resource'),
        id('LifecycleQueue/LifecycleActions/Resource'),
        id('SharedStorage/Content/Resource/Default'),
      ]),
    );
  });
});

describe('security groups', () => {
  const instances = id('CompileMasters/SecurityGroup/Resource');
  const nlb = id('LoadBalancer/SecurityGroup/Resource');
  const controller = id('LifecycleController/SecurityGroup/Resource');
  const efs = id('SharedStorage/SecurityGroup/Resource');
  const writer = id('SharedStorage/Content/SecurityGroup/Resource');
  const primary = '192.0.2.10/32';

  it('NLB: agents in on 8140/8142, out only to the instances (and their readiness port, for health checks)', () => {
    expect(rulesOf(template, nlb, 'ingress')).toEqual([
      { peer: '10.0.0.0/8', port: 'tcp/8140' },
      { peer: '10.0.0.0/8', port: 'tcp/8142' },
    ]);
    expect(rulesOf(template, nlb, 'egress')).toEqual([
      { peer: instances, port: 'tcp/8140' },
      { peer: instances, port: 'tcp/8141' },
      { peer: instances, port: 'tcp/8142' },
    ]);
  });

  it('instances: in only from the NLB (agents, and health checks on the readiness port) and the controller\'s health check', () => {
    expect(rulesOf(template, instances, 'ingress')).toEqual(
      [
        { peer: controller, port: 'tcp/8140' },
        { peer: nlb, port: 'tcp/8140' },
        { peer: nlb, port: 'tcp/8141' },
        { peer: nlb, port: 'tcp/8142' },
      ].sort((a, b) => `${a.peer}${a.port}`.localeCompare(`${b.peer}${b.port}`)),
    );
  });

  it('instances: out to the primary\'s Puppet ports, NFS and HTTPS only', () => {
    expect(rulesOf(template, instances, 'egress')).toEqual([
      { peer: '0.0.0.0/0', port: 'tcp/443' },
      ...['tcp/4433', 'tcp/5432', 'tcp/8081', 'tcp/8140', 'tcp/8142', 'tcp/8143'].map((port) => ({ peer: primary, port })),
      { peer: efs, port: 'tcp/2049' },
    ]);
  });

  it('instances: also out to a CA port configured away from 8140, which their node agent uses', () => {
    const moved = synthStack({ caPort: 18140 }).template;
    expect(rulesOf(moved, logicalIdByPath(moved, 'CompileMasters/SecurityGroup/Resource'), 'egress')).toContainEqual({ peer: primary, port: 'tcp/18140' });
  });

  it('controller: out to the primary on 8140/8081/8143, to new nodes on 8140 and HTTPS only; nothing in', () => {
    expect(rulesOf(template, controller, 'ingress')).toEqual([]);
    expect(rulesOf(template, controller, 'egress')).toEqual([
      { peer: '0.0.0.0/0', port: 'tcp/443' },
      { peer: primary, port: 'tcp/8081' },
      { peer: primary, port: 'tcp/8140' },
      { peer: primary, port: 'tcp/8143' },
      { peer: instances, port: 'tcp/8140' },
    ]);
  });

  it('EFS: NFS from the instances and the content writer only', () => {
    expect(rulesOf(template, efs, 'ingress')).toEqual(
      [
        { peer: instances, port: 'tcp/2049' },
        { peer: writer, port: 'tcp/2049' },
      ].sort((a, b) => `${a.peer}${a.port}`.localeCompare(`${b.peer}${b.port}`)),
    );
    expect(rulesOf(template, efs, 'egress')).toEqual([]);
    expect(rulesOf(template, writer, 'egress')).toEqual([{ peer: efs, port: 'tcp/2049' }]);
  });
});

describe('encryption at rest and in transit', () => {
  it('EFS is encrypted, refuses non-TLS clients and allows nobody by resource policy', () => {
    const policy = only(template, 'AWS::EFS::FileSystem').properties.FileSystemPolicy;
    expect(only(template, 'AWS::EFS::FileSystem').properties.Encrypted).toBe(true);
    expect(policy.Statement).toEqual([
      {
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: ['elasticfilesystem:ClientMount', 'elasticfilesystem:ClientRootAccess', 'elasticfilesystem:ClientWrite'],
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      },
    ]);
  });

  it('both queues are encrypted and refuse non-TLS requests', () => {
    const queues = Object.keys(template.findResources('AWS::SQS::Queue'));
    expect(queues).toHaveLength(2);
    for (const queue of queues) {
      expect(template.toJSON().Resources[queue].Properties.SqsManagedSseEnabled).toBe(true);
      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: queue }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Deny', Action: 'sqs:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          ]),
        },
      });
    }
    template.hasResourceProperties('AWS::SQS::Queue', {
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [id('LifecycleQueue/DeadLetters/Resource'), 'Arn'] }, maxReceiveCount: 10 },
      VisibilityTimeout: 720,
    });
  });

  it('the registry table is encrypted, recoverable, on demand and keyed by instance id', () => {
    template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      Properties: Match.objectLike({
        KeySchema: [{ AttributeName: 'instanceId', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
        SSESpecification: { SSEEnabled: true },
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      }),
    });
  });

  it('the secrets are created empty for the operator to fill', () => {
    const secrets = template.findResources('AWS::SecretsManager::Secret');
    expect(Object.keys(secrets)).toHaveLength(2);
    for (const secret of Object.values(secrets)) {
      expect(secret.Properties.GenerateSecretString).toBeUndefined();
      expect(secret.Properties.SecretString).toBeUndefined();
    }
  });
});

describe('lifecycle controller', () => {
  const fn = template.toJSON().Resources[id('LifecycleController/Function/Resource')];
  const role = fn.Properties.Role['Fn::GetAtt'][0];
  const statements = statementsOfRole(template, role);
  const statementFor = (action: string) => statements.filter((s) => asArray(s.Action).includes(action));

  it('runs the current Node.js runtime on ARM in the private subnets', () => {
    expect(fn.Properties).toMatchObject({
      Runtime: 'nodejs24.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      Timeout: 120,
      VpcConfig: {
        SecurityGroupIds: [{ 'Fn::GetAtt': [id('LifecycleController/SecurityGroup/Resource'), 'GroupId'] }],
        SubnetIds: [{ Ref: id('Network/Vpc/privateSubnet1/Subnet') }, { Ref: id('Network/Vpc/privateSubnet2/Subnet') }],
      },
    });
  });

  it('consumes its queue in batches and reports partial failures', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: id('LifecycleController/Function/Resource') },
      EventSourceArn: { 'Fn::GetAtt': [id('LifecycleQueue/Resource/Resource'), 'Arn'] },
      BatchSize: 10,
      MaximumBatchingWindowInSeconds: 5,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
  });

  it('reserves no concurrency (a fresh account keeps its minimum of 10 unreserved); the event source runs two invocations at most', () => {
    // Reserved concurrency 1 fails the deploy there, and its throttled batches count toward the DLQ.
    for (const resource of Object.values(template.findResources('AWS::Lambda::Function'))) {
      expect(resource.Properties.ReservedConcurrentExecutions).toBeUndefined();
    }
    const mappings = Object.values(template.findResources('AWS::Lambda::EventSourceMapping'));
    expect(mappings).toHaveLength(1);
    expect(mappings[0]?.Properties.ScalingConfig).toEqual({ MaximumConcurrency: 2 });
  });

  it('gets exactly the configuration the controller parses', () => {
    const env = fn.Properties.Environment.Variables;
    expect(Object.keys(env).sort()).toEqual(
      [
        'GROUP_NAME', 'LAUNCH_HOOK_NAME', 'TERMINATE_HOOK_NAME', 'COMPILE_MASTER_ROLE_ID', 'REGISTRY_TABLE', 'QUEUE_URL', 'CLIENT_CERT_SECRET_ARN',
        'FLAVOR', 'PRIMARY_RUN', 'RBAC_TOKEN_SECRET_ARN', 'PRIMARY_HOSTNAME', 'PRIMARY_CERTNAME', 'CA_PORT', 'PUPPETDB_HOSTNAME', 'PUPPETDB_PORT',
        'ORCHESTRATOR_HOSTNAME', 'ORCHESTRATOR_PORT', 'ORCHESTRATOR_ENVIRONMENT', 'PROTECTED_CERTNAMES', 'NLB_DNS_NAME',
        'EXTRA_ALT_NAMES', 'EXPECTED_EXTENSIONS', 'REPLACE_UNHEALTHY_AFTER_SECONDS', 'LAUNCH_CEILING_SECONDS', 'POWERTOOLS_SERVICE_NAME',
        'POWERTOOLS_METRICS_NAMESPACE', 'POWERTOOLS_LOG_LEVEL', 'NODE_OPTIONS',
      ].sort(),
    );
    expect(env).toMatchObject({
      GROUP_NAME: 'CompileMasters-compile-masters',
      FLAVOR: 'pe',
      PRIMARY_RUN: 'orchestrator',
      LAUNCH_HOOK_NAME,
      TERMINATE_HOOK_NAME,
      PRIMARY_HOSTNAME: 'puppet.example.internal',
      PRIMARY_CERTNAME: 'puppet.example.internal',
      CA_PORT: '8140',
      PUPPETDB_HOSTNAME: 'puppet.example.internal',
      PUPPETDB_PORT: '8081',
      ORCHESTRATOR_HOSTNAME: 'puppet.example.internal',
      ORCHESTRATOR_PORT: '8143',
      ORCHESTRATOR_ENVIRONMENT: 'production',
      EXTRA_ALT_NAMES: '[]',
      EXPECTED_EXTENSIONS: '{"pp_role":"compile_master"}',
      LAUNCH_CEILING_SECONDS: '5400',
      NLB_DNS_NAME: { 'Fn::GetAtt': [id('LoadBalancer/Resource/Resource'), 'DNSName'] },
      POWERTOOLS_METRICS_NAMESPACE: 'CompileMasters',
      POWERTOOLS_LOG_LEVEL: 'INFO',
    });
    expect(JSON.parse(env.PROTECTED_CERTNAMES)).toEqual(
      expect.arrayContaining(['puppet.example.internal', 'compile-master-lifecycle.example.internal']),
    );
  });

  it('gets an environment the controller\'s own parser accepts', () => {
    const env = renderAsDeployed(template, fn.Properties.Environment.Variables);
    const config = loadControllerConfig({ ...env, AWS_REGION: 'eu-west-1' });
    expect(config).toMatchObject({ groupName: 'CompileMasters-compile-masters', launchHookName: LAUNCH_HOOK_NAME, replaceUnhealthyAfterSeconds: 15 * 60 });
  });

  it("trusts as instances' own word only messages sent with the compile masters' instance role", () => {
    const [roleId] = Object.keys(template.findResources('AWS::IAM::Role')).filter((logicalId) => logicalId.includes('InstanceRole'));
    expect(roleId).toBeDefined();
    expect(fn.Properties.Environment.Variables.COMPILE_MASTER_ROLE_ID).toEqual({ 'Fn::GetAtt': [roleId, 'RoleId'] });
  });

  it("lets instances' key reports expire from the registry table", () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', { TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true } });
  });

  it('completes lifecycle actions of, and marks unhealthy members in, its own group only', () => {
    expect(statementFor('autoscaling:CompleteLifecycleAction')).toEqual([
      {
        Effect: 'Allow',
        Action: ['autoscaling:CompleteLifecycleAction', 'autoscaling:RecordLifecycleActionHeartbeat', 'autoscaling:SetInstanceHealth'],
        Resource: groupArn('CompileMasters-compile-masters'),
      },
    ]);
  });

  it('reads exactly the two secrets, and nothing else in the stack can', () => {
    expect(statementFor('secretsmanager:GetSecretValue')).toEqual([
      {
        Effect: 'Allow',
        Action: 'secretsmanager:GetSecretValue',
        Resource: [{ Ref: id('Secrets/ClientCert/Resource') }, { Ref: id('Secrets/RbacToken/Resource') }],
      },
    ]);
    const everyPolicy = JSON.stringify(template.findResources('AWS::IAM::Policy'));
    expect(everyPolicy.match(/secretsmanager:/g)).toHaveLength(1);
  });

  it('reads and writes only its registry table and uses only its own queue', () => {
    const table = id('LifecycleController/Registry/Resource');
    const dynamodbStatements = statements.filter((s) => asArray(s.Action).some((a: string) => a.startsWith('dynamodb:')));
    expect(dynamodbStatements.length).toBeGreaterThan(0);
    for (const statement of dynamodbStatements) {
      // The table itself: it has no indexes, so no index/* either.
      expect(asArray(statement.Resource)).toEqual([{ 'Fn::GetAtt': [table, 'Arn'] }]);
    }
    for (const statement of statements.filter((s) => asArray(s.Action).some((a: string) => a.startsWith('sqs:')))) {
      expect(statement.Resource).toEqual({ 'Fn::GetAtt': [id('LifecycleQueue/Resource/Resource'), 'Arn'] });
    }
    expect(statementFor('sqs:SendMessage')).toHaveLength(1);
    expect(statementFor('cloudwatch:PutMetricData')).toEqual([]);
  });

  it('describes the group and its instances without resource scoping (the APIs have none), and nothing else', () => {
    expect(statements.filter((s) => s.Resource === '*')).toEqual([
      {
        Effect: 'Allow',
        Action: [
          'autoscaling:DescribeAutoScalingGroups',
          'ec2:DescribeInstances',
        ],
        Resource: '*',
      },
    ]);
  });
});

describe('network load balancer', () => {
  it('is an internal NLB with its security group attached at creation and cross-zone on', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      Type: 'network',
      Scheme: 'internal',
      SecurityGroups: [{ 'Fn::GetAtt': [id('LoadBalancer/SecurityGroup/Resource'), 'GroupId'] }],
      LoadBalancerAttributes: Match.arrayWith([{ Key: 'load_balancing.cross_zone.enabled', Value: 'true' }]),
    });
  });

  it.each([
    [8140, 'LoadBalancer/PuppetServerTargets/Resource'],
    [8142, 'LoadBalancer/PcpBrokerTargets/Resource'],
  ])('forwards TCP %i to its own instance target group, health-checked by the readiness daemon', (port, path) => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: port,
      Protocol: 'TCP',
      DefaultActions: [{ Type: 'forward', TargetGroupArn: { Ref: id(path) } }],
    });
    expect(template.toJSON().Resources[id(path)].Properties).toMatchObject({
      Port: port,
      Protocol: 'TCP',
      TargetType: 'instance',
      HealthCheckProtocol: 'HTTP',
      HealthCheckPort: '8141',
      HealthCheckPath: '/ready',
      Matcher: { HttpCode: '200' },
      HealthCheckIntervalSeconds: 10,
      HealthCheckTimeoutSeconds: 5,
      HealthyThresholdCount: 3,
      UnhealthyThresholdCount: 3,
      TargetGroupAttributes: expect.arrayContaining([
        { Key: 'deregistration_delay.timeout_seconds', Value: '60' },
        { Key: 'deregistration_delay.connection_termination.enabled', Value: 'true' },
        // A target turning unhealthy (a drain) keeps its agents' connections as a deregistration would.
        { Key: 'target_health_state.unhealthy.connection_termination.enabled', Value: 'false' },
        { Key: 'target_health_state.unhealthy.draining_interval_seconds', Value: '60' },
      ]),
    });
  });

  it('takes both health checks from the one definition the node agent drains by', () => {
    const checks = Object.values(template.findResources('AWS::ElasticLoadBalancingV2::TargetGroup')).map(({ Properties: p }) => [
      p.HealthCheckPort,
      p.HealthCheckPath,
      p.HealthCheckIntervalSeconds,
      p.HealthCheckTimeoutSeconds,
      p.HealthyThresholdCount,
      p.UnhealthyThresholdCount,
    ]);
    const { port, path, intervalSeconds, timeoutSeconds, healthyThresholdCount, unhealthyThresholdCount } = READINESS_CHECK;
    expect(checks).toEqual([1, 2].map(() => [String(port), path, intervalSeconds, timeoutSeconds, healthyThresholdCount, unhealthyThresholdCount]));
  });
});

describe('event routing', () => {
  const queueArn = { 'Fn::GetAtt': [id('LifecycleQueue/Resource/Resource'), 'Arn'] };

  it('sends this group\'s lifecycle actions to the queue', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.autoscaling'],
        'detail-type': ['EC2 Instance-launch Lifecycle Action', 'EC2 Instance-terminate Lifecycle Action'],
        detail: { AutoScalingGroupName: ['CompileMasters-compile-masters'] },
      },
      Targets: [Match.objectLike({ Arn: queueArn })],
    });
  });

  it('sends EC2 terminations (shutting-down, terminated) to the queue', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ec2'],
        'detail-type': ['EC2 Instance State-change Notification'],
        detail: { state: ['shutting-down', 'terminated'] },
      },
      Targets: [Match.objectLike({ Arn: queueArn })],
    });
  });

  it('schedules a reconcile every 5 minutes', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(5 minutes)',
      Targets: [Match.objectLike({ Arn: queueArn })],
    });
  });

  it('lets EventBridge send to the queue only from these rules', () => {
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: id('LifecycleQueue/Resource/Resource') }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 'events.amazonaws.com' },
            Condition: { ArnEquals: { 'aws:SourceArn': Match.anyValue() } },
          }),
        ]),
      },
    });
  });
});

describe('monitoring and outputs', () => {
  it('alarms on the DLQ, controller errors, lifecycle outcomes, identity attacks, suspended signing, damaged registry items and unhealthy targets', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a) => a.Properties);
    const byMetric = (name: string) => alarms.filter((a) => a.MetricName === name);
    expect(byMetric('ApproximateNumberOfMessagesVisible')[0]?.Dimensions).toEqual([
      { Name: 'QueueName', Value: { 'Fn::GetAtt': [id('LifecycleQueue/DeadLetters/Resource'), 'QueueName'] } },
    ]);
    expect(byMetric('Errors')).toHaveLength(1);
    for (const metric of ['LifecycleActionsRefused', 'LifecycleActionsFailed', 'PrimaryRunsFailed', 'Drift', 'ImpostorCsrsRemoved', 'ForgedMessagesIgnored', 'SigningSuspended', 'RegistryEntriesDamaged', 'SecretsMissing']) {
      expect(byMetric(metric)).toEqual([
        expect.objectContaining({
          Namespace: 'CompileMasters',
          Dimensions: [{ Name: 'service', Value: 'CompileMasters-lifecycle-controller' }],
          Threshold: 0,
          ComparisonOperator: 'GreaterThanThreshold',
        }),
      ]);
    }
    expect(byMetric('UnHealthyHostCount')).toHaveLength(2);
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });

  it('outputs what the operator needs', () => {
    expect(Object.keys(template.toJSON().Outputs)).toEqual(
      expect.arrayContaining([
        'LoadBalancerDnsName', 'LifecycleQueueUrl', 'ClientCertSecretArn', 'RbacTokenSecretArn', 'FileSystemId', 'RegistryTableName',
      ]),
    );
  });
});
