import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { CompileMasterStack } from '../../../cdk/compile-master-stack';
import { loadConfig } from '../../../cdk/config';

/** A fragment of a synthesized template: plain JSON with no static shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- CloudFormation JSON is checked by the assertions, not by types
export type Cfn = any;

export interface SynthOptions {
  /** Real esbuild bundling of the Lambdas and the node agent (slow); off by default. */
  readonly bundle?: boolean;
  /** CDK's built-in CloudFormation schema validation at synth (slow); off by default. */
  readonly validate?: boolean;
}

/** cdk.json's context (feature flags), which the CLI would hand to the app. */
const CDK_JSON_CONTEXT = JSON.parse(readFileSync(new URL('../../../cdk.json', import.meta.url), 'utf8')).context;

/** Builds the stack as cdk/app.ts does, from context; one call per test file keeps synth fast. */
export function synthStack(context: Record<string, unknown> = {}, options: SynthOptions = {}) {
  const app = new App({
    context: {
      ...CDK_JSON_CONTEXT,
      ...context,
      // As under the CLI: resources carry their construct path, which the tests look them up by.
      'aws:cdk:enable-path-metadata': true,
      ...(options.bundle ? {} : { 'aws:cdk:bundling-stacks': [] }),
    },
    builtinCloudFormationValidation: options.validate ?? false,
  });
  const config = loadConfig((key) => app.node.tryGetContext(key));
  const stack = new CompileMasterStack(app, 'CompileMasters', { config });
  const template = Template.fromStack(stack);
  return { app, stack, template, config };
}

/** The single resource of a type (fails loudly when there are several or none). */
export function only(template: Template, type: string): { logicalId: string; properties: Record<string, Cfn> } {
  const resources = Object.entries(template.findResources(type));
  if (resources.length !== 1) throw new Error(`expected one ${type}, found ${resources.length}`);
  const [logicalId, resource] = resources[0]!;
  return { logicalId, properties: resource.Properties ?? {} };
}

/** Logical id of the resource whose construct path ends with `pathSuffix`. */
export function logicalIdByPath(template: Template, pathSuffix: string): string {
  const match = Object.entries(template.toJSON().Resources as Record<string, Cfn>).find(([, resource]) =>
    String(resource.Metadata?.['aws:cdk:path'] ?? '').endsWith(pathSuffix),
  );
  if (!match) throw new Error(`no resource at a path ending with ${pathSuffix}`);
  return match[0];
}

export interface Rule {
  /** A CIDR, or the logical id of the peer security group. */
  readonly peer: string;
  readonly port: string;
}

/**
 * Every ingress or egress rule of a security group, inline or standalone, as sorted
 * "peer:port" pairs, so a test can assert the complete set and nothing more.
 */
export function rulesOf(template: Template, groupLogicalId: string, direction: 'ingress' | 'egress'): Rule[] {
  const resources = template.toJSON().Resources as Record<string, Cfn>;
  const isThisGroup = (ref: unknown) => JSON.stringify(ref) === JSON.stringify({ 'Fn::GetAtt': [groupLogicalId, 'GroupId'] });
  const peerOf = (rule: Cfn): string => {
    const group = rule.SourceSecurityGroupId ?? rule.DestinationSecurityGroupId;
    return group ? group['Fn::GetAtt'][0] : (rule.CidrIp ?? rule.CidrIpv6);
  };
  const portOf = (rule: Cfn): string =>
    rule.IpProtocol === '-1' ? 'all' : rule.FromPort === rule.ToPort ? `${rule.IpProtocol}/${rule.FromPort}` : `${rule.IpProtocol}/${rule.FromPort}-${rule.ToPort}`;

  const inline = resources[groupLogicalId].Properties[direction === 'ingress' ? 'SecurityGroupIngress' : 'SecurityGroupEgress'] ?? [];
  const standaloneType = direction === 'ingress' ? 'AWS::EC2::SecurityGroupIngress' : 'AWS::EC2::SecurityGroupEgress';
  const standalone = Object.values(resources)
    .filter((resource) => resource.Type === standaloneType && isThisGroup(resource.Properties.GroupId))
    .map((resource) => resource.Properties);
  return [...inline, ...standalone]
    // CDK's placeholder that stands for "no egress at all" when allowAllOutbound is false.
    .filter((rule) => !(rule.CidrIp === '255.255.255.255/32' && rule.IpProtocol === 'icmp'))
    .map((rule) => ({ peer: peerOf(rule), port: portOf(rule) }))
    .sort((a, b) => `${a.peer}${a.port}`.localeCompare(`${b.peer}${b.port}`));
}

/** All IAM policy statements attached to a role (inline policies and AWS::IAM::Policy). */
export function statementsOfRole(template: Template, roleLogicalId: string): Cfn[] {
  const resources = template.toJSON().Resources as Record<string, Cfn>;
  const inline = (resources[roleLogicalId].Properties.Policies ?? []).flatMap((p: Cfn) => p.PolicyDocument.Statement);
  const attached = Object.values(resources)
    .filter(
      (resource) =>
        resource.Type === 'AWS::IAM::Policy' &&
        resource.Properties.Roles.some((role: unknown) => JSON.stringify(role) === JSON.stringify({ Ref: roleLogicalId })),
    )
    .flatMap((resource) => resource.Properties.PolicyDocument.Statement);
  return [...inline, ...attached];
}

export const asArray = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);

/**
 * Renders a template value the way CloudFormation would at deploy time, with plausible values
 * for references (queue URL, secret ARN, NLB DNS name, ...), so the result can be fed to the
 * parsers of the code that consumes it (controller environment, node-agent configuration).
 */
export function renderAsDeployed(template: Template, value: Cfn): Cfn {
  const resources = template.toJSON().Resources as Record<string, Cfn>;
  const arn = (service: string, resource: string) => `arn:aws:${service}:eu-west-1:123456789012:${resource}`;
  const ref = (logicalId: string): string => {
    if (logicalId === 'AWS::Region') return 'eu-west-1';
    if (logicalId === 'AWS::AccountId') return '123456789012';
    if (logicalId === 'AWS::Partition') return 'aws';
    switch (resources[logicalId]?.Type) {
      case 'AWS::SQS::Queue': return `https://sqs.eu-west-1.amazonaws.com/123456789012/${logicalId}`;
      case 'AWS::SecretsManager::Secret': return arn('secretsmanager', `secret:${logicalId}-AbCdEf`);
      case 'AWS::ElasticLoadBalancingV2::TargetGroup': return arn('elasticloadbalancing', `targetgroup/${logicalId}/0123456789abcdef`);
      default: return logicalId.toLowerCase();
    }
  };
  const getAtt = (logicalId: string, attribute: string): string => {
    if (attribute === 'DNSName') return `internal-${logicalId.toLowerCase()}-0123456789.elb.eu-west-1.amazonaws.com`;
    if (attribute === 'Arn') return arn(resources[logicalId].Type.split('::')[1].toLowerCase(), logicalId);
    // IAM's unique ids: a type prefix and 17 upper-case characters.
    if (attribute === 'RoleId') return `AROA${createHash('sha256').update(logicalId).digest('hex').slice(0, 17).toUpperCase()}`;
    return `${logicalId}.${attribute}`.toLowerCase();
  };
  const render = (node: Cfn): Cfn => {
    if (Array.isArray(node)) return node.map(render);
    if (node === null || typeof node !== 'object') return node;
    if ('Ref' in node) return ref(node.Ref);
    if ('Fn::GetAtt' in node) return getAtt(node['Fn::GetAtt'][0], node['Fn::GetAtt'][1]);
    if ('Fn::Join' in node) return (render(node['Fn::Join'][1]) as string[]).join(node['Fn::Join'][0]);
    return Object.fromEntries(Object.entries(node).map(([key, inner]) => [key, render(inner)]));
  };
  return render(value);
}
