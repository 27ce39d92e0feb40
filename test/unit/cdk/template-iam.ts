import { createHash } from 'node:crypto';
import type { Template } from 'aws-cdk-lib/assertions';
import type { Cfn } from './stack-fixture';

/** Where the template is pretended to be deployed: every ARN the suite compares is built from these. */
export interface Deployment {
  readonly partition: string;
  readonly region: string;
  readonly account: string;
}

export interface PolicyDocument {
  readonly Version: string;
  readonly Statement: Cfn[];
}

/**
 * Resolves the intrinsics a template's IAM policies use (Ref, Fn::GetAtt, Fn::Join, Fn::Sub) to
 * the values CloudFormation would give this stack's own resources in `deployment`. Anything it
 * does not know fails loudly, so no policy is ever evaluated with a reference left in it.
 */
export function templateResolver(template: Template, deployment: Deployment): (value: Cfn) => Cfn {
  const resources = template.toJSON().Resources as Record<string, Cfn>;
  const { partition, region, account } = deployment;
  const arn = (service: string, resource: string, inRegion = true) => `arn:${partition}:${service}:${inRegion ? region : ''}:${account}:${resource}`;
  const hex = (logicalId: string, length: number) => createHash('sha256').update(logicalId).digest('hex').slice(0, length);
  const typeOf = (logicalId: string): string => {
    const type = resources[logicalId]?.Type;
    if (!type) throw new Error(`the template has no resource ${logicalId}`);
    return type;
  };
  const nameOf = (logicalId: string, property: string): string => resources[logicalId].Properties?.[property] ?? logicalId;

  const ref = (logicalId: string): string => {
    switch (logicalId) {
      case 'AWS::Partition': return partition;
      case 'AWS::Region': return region;
      case 'AWS::AccountId': return account;
      case 'AWS::URLSuffix': return 'amazonaws.com';
    }
    switch (typeOf(logicalId)) {
      case 'AWS::SQS::Queue': return `https://sqs.${region}.amazonaws.com/${account}/${nameOf(logicalId, 'QueueName')}`;
      case 'AWS::SecretsManager::Secret': return arn('secretsmanager', `secret:${nameOf(logicalId, 'Name')}-${hex(logicalId, 6)}`);
      case 'AWS::DynamoDB::Table': return nameOf(logicalId, 'TableName');
      case 'AWS::EFS::FileSystem': return `fs-${hex(logicalId, 17)}`;
      case 'AWS::EFS::AccessPoint': return `fsap-${hex(logicalId, 17)}`;
      case 'AWS::AutoScaling::AutoScalingGroup': return nameOf(logicalId, 'AutoScalingGroupName');
      case 'AWS::IAM::Role': return nameOf(logicalId, 'RoleName');
      case 'AWS::Lambda::Function': return nameOf(logicalId, 'FunctionName');
      case 'AWS::EC2::SecurityGroup': return `sg-${hex(logicalId, 17)}`;
      default: throw new Error(`cannot resolve Ref ${logicalId} (${typeOf(logicalId)})`);
    }
  };
  const getAtt = (logicalId: string, attribute: string): string => {
    const type = typeOf(logicalId);
    if (attribute === 'Arn') {
      switch (type) {
        case 'AWS::SQS::Queue': return arn('sqs', nameOf(logicalId, 'QueueName'));
        case 'AWS::DynamoDB::Table': return arn('dynamodb', `table/${ref(logicalId)}`);
        case 'AWS::EFS::FileSystem': return arn('elasticfilesystem', `file-system/${ref(logicalId)}`);
        case 'AWS::EFS::AccessPoint': return arn('elasticfilesystem', `access-point/${ref(logicalId)}`);
        case 'AWS::Lambda::Function': return arn('lambda', `function:${ref(logicalId)}`);
        case 'AWS::IAM::Role': return arn('iam', `role/${ref(logicalId)}`, false);
        case 'AWS::Logs::LogGroup': return arn('logs', `log-group:${nameOf(logicalId, 'LogGroupName')}:*`);
        case 'AWS::Events::Rule': return arn('events', `rule/${nameOf(logicalId, 'Name')}`);
      }
    }
    if (type === 'AWS::EC2::VPC' && attribute === 'DefaultSecurityGroup') return `sg-${hex(logicalId, 17)}`;
    throw new Error(`cannot resolve Fn::GetAtt ${logicalId}.${attribute} (${type})`);
  };
  const sub = (text: string): string =>
    text.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
      const [logicalId, attribute] = name.split('.') as [string, string | undefined];
      return attribute ? getAtt(logicalId, attribute) : ref(logicalId);
    });

  const resolve = (node: Cfn): Cfn => {
    if (Array.isArray(node)) return node.map(resolve);
    if (node === null || typeof node !== 'object') return node;
    if ('Ref' in node) return ref(node.Ref);
    if ('Fn::GetAtt' in node) return getAtt(node['Fn::GetAtt'][0], node['Fn::GetAtt'][1]);
    if ('Fn::Join' in node) return (resolve(node['Fn::Join'][1]) as string[]).join(node['Fn::Join'][0]);
    if ('Fn::Sub' in node) {
      if (typeof node['Fn::Sub'] !== 'string') throw new Error('Fn::Sub with a variable map is not resolved here');
      return sub(node['Fn::Sub']);
    }
    const intrinsic = Object.keys(node).find((key) => key.startsWith('Fn::'));
    if (intrinsic) throw new Error(`cannot resolve ${intrinsic}`);
    return Object.fromEntries(Object.entries(node).map(([key, inner]) => [key, resolve(inner)]));
  };
  return resolve;
}

/** A role's identity policies: its inline ones and every AWS::IAM::Policy or ManagedPolicy attached to it, unresolved. */
export function identityPoliciesOf(template: Template, roleLogicalId: string): { name: string; document: PolicyDocument }[] {
  const resources = template.toJSON().Resources as Record<string, Cfn>;
  const role = resources[roleLogicalId];
  if (role?.Type !== 'AWS::IAM::Role') throw new Error(`${roleLogicalId} is not a role`);
  const inline = (role.Properties.Policies ?? []).map((policy: Cfn) => ({ name: policy.PolicyName, document: policy.PolicyDocument }));
  const attached = Object.entries(resources)
    .filter(
      ([, resource]) =>
        (resource.Type === 'AWS::IAM::Policy' || resource.Type === 'AWS::IAM::ManagedPolicy') &&
        (resource.Properties.Roles ?? []).some((entry: Cfn) => JSON.stringify(entry) === JSON.stringify({ Ref: roleLogicalId })),
    )
    .map(([logicalId, resource]) => ({ name: logicalId, document: resource.Properties.PolicyDocument }));
  return [...inline, ...attached];
}

/**
 * The resource policies of this stack's resources, by resolved ARN: queue policies, file system
 * policies (whose statements name no resource: EFS applies them to their own file system) and
 * secret policies.
 */
export function resourcePolicies(template: Template, resolve: (value: Cfn) => Cfn): Map<string, PolicyDocument> {
  const resources = template.toJSON().Resources as Record<string, Cfn>;
  const policies = new Map<string, PolicyDocument>();
  for (const [logicalId, resource] of Object.entries(resources)) {
    const properties = resource.Properties ?? {};
    if (resource.Type === 'AWS::SQS::QueuePolicy') {
      for (const queue of properties.Queues) policies.set(resolve({ 'Fn::GetAtt': [queue.Ref, 'Arn'] }), resolve(properties.PolicyDocument));
    } else if (resource.Type === 'AWS::SecretsManager::ResourcePolicy') {
      policies.set(resolve(properties.SecretId), resolve(properties.ResourcePolicy));
    } else if (resource.Type === 'AWS::EFS::FileSystem' && properties.FileSystemPolicy) {
      const fileSystemArn: string = resolve({ 'Fn::GetAtt': [logicalId, 'Arn'] });
      const document = resolve(properties.FileSystemPolicy) as PolicyDocument;
      policies.set(fileSystemArn, { ...document, Statement: document.Statement.map((statement) => ({ Resource: fileSystemArn, ...statement })) });
    }
  }
  return policies;
}
