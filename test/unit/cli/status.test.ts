import { AutoScalingClient, DescribeAutoScalingGroupsCommand } from '@aws-sdk/client-auto-scaling';
import { CloudFormationClient, DescribeStacksCommand, ListStackResourcesCommand } from '@aws-sdk/client-cloudformation';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DescribeTargetHealthCommand, ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusRow } from '../../../cli/status-view';
import { makeTestCa } from '../../support/pki';
import { fakePuppet, type FakePuppet } from '../../support/fake-puppet';
import { ARNS, runCli, STACK, STACK_OUTPUTS, STACK_RESOURCES, TARGET_GROUPS } from './harness';

/**
 * status against a mocked AWS account and a fake primary (CA and PuppetDB answering as Puppet
 * does): one healthy compile master and one of each kind of drift.
 */
describe('status --stack', () => {
  const mocks = {
    cfn: mockClient(CloudFormationClient),
    sm: mockClient(SecretsManagerClient),
    asg: mockClient(AutoScalingClient),
    ec2: mockClient(EC2Client),
    ddb: mockClient(DynamoDBDocumentClient),
    elb: mockClient(ElasticLoadBalancingV2Client),
  };
  const name = (ip: string) => `ip-10-0-1-${ip}.us-west-2.compute.internal`;
  const ca: Record<string, string> = { [name('1')]: 'signed', [name('2')]: 'signed', [name('3')]: 'signed', [name('4')]: 'requested', [name('6')]: 'signed' };
  const pdb: Record<string, object> = { [name('1')]: { deactivated: null }, [name('3')]: { deactivated: null }, [name('5')]: { deactivated: '2026-01-01T00:00:00Z' }, [name('6')]: { deactivated: null } };
  let primary: FakePuppet;
  let cdkJson: string;

  beforeAll(async () => {
    const pki = await makeTestCa('Puppet CA: localhost');
    const client = await pki.issue({ commonName: 'compile-master-lifecycle.corp.example.com' });
    primary = await fakePuppet(await pki.issue({ commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1'] }), ({ method, path }) => {
      const caMatch = /^\/puppet-ca\/v1\/certificate_status\/(.+)$/.exec(path);
      if (method === 'GET' && caMatch) return ca[caMatch[1]!] ? { status: 200, body: { name: caMatch[1], state: ca[caMatch[1]!] } } : { status: 404, body: 'Not Found' };
      const pdbMatch = /^\/pdb\/query\/v4\/nodes\/(.+)$/.exec(path);
      if (method === 'GET' && pdbMatch) return pdb[pdbMatch[1]!] ? { status: 200, body: { certname: pdbMatch[1], ...pdb[pdbMatch[1]!] } } : { status: 404, body: { error: 'No information is known' } };
      return undefined;
    });
    const port = new URL(primary.url).port;
    cdkJson = join(mkdtempSync(join(tmpdir(), 'cli-status-')), 'cdk.json');
    writeFileSync(cdkJson, JSON.stringify({ context: { primaryHostname: 'localhost', caPort: port, puppetdbPort: port } }));

    mocks.cfn.on(DescribeStacksCommand).resolves(STACK_OUTPUTS).on(ListStackResourcesCommand).resolves(STACK_RESOURCES);
    mocks.sm.on(GetSecretValueCommand, { SecretId: ARNS.clientCert }).resolves({ SecretString: JSON.stringify({ cert: client.cert, key: client.key, ca: pki.cert }) });
    mocks.sm.on(GetSecretValueCommand, { SecretId: ARNS.rbacToken }).resolves({ SecretString: 'token' });
    mocks.asg.on(DescribeAutoScalingGroupsCommand).resolves({
      AutoScalingGroups: [
        {
          AutoScalingGroupName: 'CompileMasters-compile-masters',
          Instances: [
            { InstanceId: 'i-01', LifecycleState: 'InService' },
            { InstanceId: 'i-02', LifecycleState: 'InService' },
            { InstanceId: 'i-04', LifecycleState: 'Pending:Wait' },
            { InstanceId: 'i-06', LifecycleState: 'InService' },
          ],
        } as never,
      ],
    });
    mocks.ec2.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: ['1', '2', '3', '4', '6'].map((ip) => ({ InstanceId: `i-0${ip}`, PrivateDnsName: name(ip), PrivateIpAddress: `10.0.1.${ip}`, State: { Name: ip === '3' ? 'terminated' : 'running' } })) as never }],
    });
    const entry = (id: string, state: string) => ({ instanceId: `i-0${id}`, certname: name(id), state, createdAt: '2026-01-01T00:00:00Z', updatedAt: '2026-01-01T00:00:00Z' });
    mocks.ddb.on(ScanCommand).resolves({ Items: [entry('1', 'in-service'), entry('3', 'in-service'), entry('5', 'purged'), entry('6', 'in-service'), { instanceId: 'orchestrator-run', version: 3 }] });
    mocks.elb
      .on(DescribeTargetHealthCommand, { TargetGroupArn: TARGET_GROUPS[0] })
      .resolves({ TargetHealthDescriptions: [{ Target: { Id: 'i-01', Port: 8140 }, TargetHealth: { State: 'healthy' } }, { Target: { Id: 'i-06', Port: 8140 }, TargetHealth: { State: 'unhealthy' } }] })
      .on(DescribeTargetHealthCommand, { TargetGroupArn: TARGET_GROUPS[1] })
      .resolves({ TargetHealthDescriptions: [{ Target: { Id: 'i-01', Port: 8142 }, TargetHealth: { State: 'healthy' } }, { Target: { Id: 'i-06', Port: 8142 }, TargetHealth: { State: 'healthy' } }] });
  });
  afterAll(async () => {
    await primary.close();
    Object.values(mocks).forEach((mock) => mock.restore());
  });

  it('--json: one row per member and registry entry, drift named, purged-and-gone left out', async () => {
    const result = await runCli(['status', '--stack', STACK, '--json', '--cdk-json', cdkJson]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const { source, rows } = JSON.parse(result.stdout) as { source: string; rows: StatusRow[] };
    expect(source).toBe(`stack ${STACK}`);
    const byId = Object.fromEntries(rows.map((row) => [row.instanceId, row]));
    expect(Object.keys(byId)).toEqual(['i-01', 'i-02', 'i-03', 'i-04', 'i-06']);
    expect(byId['i-01']).toEqual({ instanceId: 'i-01', lifecycle: 'InService', certname: name('1'), ca: 'signed', puppetdb: 'active', targets: '8140:healthy 8142:healthy', registry: 'in-service', drift: [] });
    expect(byId['i-02']!.drift).toEqual(['in service but not enrolled by the controller (no registry entry)', 'in service but not healthy behind the load balancer (not registered)']);
    expect(byId['i-03']).toMatchObject({ lifecycle: 'not a member (terminated)', ca: 'signed', puppetdb: 'active' });
    expect(byId['i-03']!.drift).toEqual([
      'certificate signed at the CA but not a member of the group',
      'active in PuppetDB but not a member of the group',
      'registry says in-service but not a member of the group',
    ]);
    expect(byId['i-04']).toMatchObject({ lifecycle: 'Pending:Wait', ca: 'requested', puppetdb: 'absent', registry: '-', drift: [] });
    expect(byId['i-06']!.drift).toEqual(['in service but not healthy behind the load balancer (8140:unhealthy 8142:healthy)']);
    expect(mocks.ddb.commandCalls(ScanCommand)[0]!.args[0].input.TableName).toBe('CompileMasters-Registry');
    expect(mocks.asg.commandCalls(DescribeAutoScalingGroupsCommand)[0]!.args[0].input.AutoScalingGroupNames).toEqual(['CompileMasters-compile-masters']);
  });

  it('as a table: drifting rows marked with "!" and their drift listed under them', async () => {
    const result = await runCli(['status', '--stack', STACK, '--cdk-json', cdkJson]);
    expect(result.code).toBe(0);
    const lines = result.stdout.split('\n');
    expect(lines[0]).toBe(`Tier: stack ${STACK}`);
    expect(lines[2]).toMatch(/^ {2}INSTANCE +LIFECYCLE +CERTNAME +CA +PUPPETDB +TARGETS +REGISTRY$/);
    expect(lines.find((line) => line.includes('i-01'))).toMatch(/^ {2}i-01 /);
    expect(lines.find((line) => line.includes('i-03'))).toMatch(/^! i-03 /);
    expect(result.stdout).toContain('    drift: certificate signed at the CA but not a member of the group');
    expect(result.stdout).toMatch(/5 row\(s\), 3 with drift\.\n$/);
  });
});
