import { paginateDescribeInstanceInformation, type InstanceInformation, type InstanceInformationStringFilter, type SSMClient } from '@aws-sdk/client-ssm';
import { SimulatePrincipalPolicyCommand, type EvaluationResult, type IAMClient } from '@aws-sdk/client-iam';
import { errorName, toAwsCallError } from '../lambdas/controller/aws/call';
import { RUN_SHELL_SCRIPT } from '../lambdas/controller/primary-run/ssm';
import { FLAVOR } from '../lib/flavor';
import { failed, type Check } from './checks';
import type { PrimaryInstances } from '../lib/primary-instances';
import type { PrimaryRunTarget } from './target';

export const PRIMARY_RUN = 'primary run';
export const SSM_MANAGED = "primary's instance(s) online in SSM";
export const CONTROLLER_MAY_RUN = 'controller may run Puppet on the primary';

/** Everything an EC2 instance needs before SSM Run Command can reach it. */
export const SSM_AGENT_FIX =
  'on the primary: run the SSM agent (amazon-ssm-agent, preinstalled on Amazon Linux 2023 and Ubuntu AMIs; systemctl enable --now amazon-ssm-agent), ' +
  'attach an instance profile whose role has the AWS managed policy AmazonSSMManagedInstanceCore, and let the instance reach the ssm, ssmmessages and ec2messages endpoints ' +
  '(VPC interface endpoints, or HTTPS egress through a NAT gateway); it shows as Online within minutes';

export function describeInstances(instances: PrimaryInstances): string {
  return 'instanceIds' in instances ? instances.instanceIds.join(', ') : `the instance(s) tagged ${instances.tag.key}=${instances.tag.value}`;
}

/** Which run doctor checks, and whether the deployed stack and cdk.json agree on it. */
export function primaryRunCheck(run: PrimaryRunTarget): Check {
  const what = `${run.mode} on ${FLAVOR[run.flavor].title} (from ${run.source})`;
  if (run.mismatch) {
    return {
      name: PRIMARY_RUN,
      status: 'failed',
      detail: `${what}, but ${run.mismatch}`,
      fix: 'deploy cdk.json again (npx cdk deploy), or make its flavor and primaryRun match what is deployed: the controller runs what was deployed',
    };
  }
  const how = {
    orchestrator: "PE's orchestrator runs Puppet on the primary with the RBAC token",
    ssm: `SSM Run Command (AWS-RunShellScript) runs Puppet on ${run.instances ? describeInstances(run.instances) : "the primary's instance(s)"}; no RBAC token`,
    none: "nothing runs Puppet on the primary when compile masters come and go: the site's PuppetDB allow-list and auth rules must admit them by role (npx compile-masters primary-setup shows how); no RBAC token",
  }[run.mode];
  return { name: PRIMARY_RUN, status: 'ok', detail: `${what}: ${how}` };
}

/**
 * SendCommand reaches only managed instances whose agent is Online: a ConnectionLost primary makes
 * every launch wait for a run that never starts. Asked the way the controller targets them.
 */
export async function checkSsmManaged(ssm: SSMClient | undefined, instances: PrimaryInstances | undefined): Promise<Check & { online?: string[] }> {
  // Only the lab comes without AWS clients: its primary is no EC2 instance that doctor could ask about.
  if (!ssm) return { name: SSM_MANAGED, status: 'skipped', detail: 'the lab has no SSM endpoint for doctor to ask' };
  if (!instances) {
    return {
      name: SSM_MANAGED,
      status: 'failed',
      detail: 'cdk.json names neither primaryInstanceIds nor primaryInstanceTag',
      fix: 'set the one the stack was deployed with in cdk.json "context", e.g. "primaryInstanceTag": {"key": "Role", "value": "puppet-primary"}',
    };
  }
  let found: InstanceInformation[];
  try {
    found = await describeManaged(ssm, instances);
  } catch (error) {
    if (errorName(error) === 'InvalidInstanceId') found = [];
    else if (errorName(error) === 'AccessDeniedException') return failed(SSM_MANAGED, toAwsCallError('DescribeInstanceInformation', error), 'run doctor with credentials allowed ssm:DescribeInstanceInformation (read-only)');
    else return failed(SSM_MANAGED, toAwsCallError('DescribeInstanceInformation', error));
  }
  const missing = 'instanceIds' in instances ? instances.instanceIds.filter((id) => !found.some((info) => info.InstanceId === id)) : [];
  const offline = found.filter((info) => info.PingStatus !== 'Online');
  if (found.length === 0 && 'tag' in instances) {
    return {
      name: SSM_MANAGED,
      status: 'failed',
      detail: `SSM manages no instance tagged ${instances.tag.key}=${instances.tag.value}`,
      fix: `tag the primary (aws ec2 create-tags --resources <its instance id> --tags Key=${instances.tag.key},Value=${instances.tag.value}); and ${SSM_AGENT_FIX}`,
    };
  }
  if (missing.length > 0 || offline.length > 0) {
    const problems = [
      ...missing.map((id) => `${id} is not a managed instance (SSM has never heard from its agent, or it is stopped)`),
      ...offline.map((info) => `${info.InstanceId ?? '?'} is ${info.PingStatus ?? 'unknown'}${info.LastPingDateTime ? ` since ${info.LastPingDateTime.toISOString()}` : ''}`),
    ];
    return { name: SSM_MANAGED, status: 'failed', detail: problems.join('; '), fix: SSM_AGENT_FIX };
  }
  const online = found.map((info) => `${info.InstanceId ?? '?'}${info.AgentVersion ? ` (agent ${info.AgentVersion})` : ''}`);
  return { name: SSM_MANAGED, status: 'ok', detail: `${online.join(', ')} Online`, online: found.flatMap((info) => (info.InstanceId ? [info.InstanceId] : [])) };
}

/**
 * What IAM says of the controller's own role sending the command to those instances: the stack
 * scopes ssm:SendCommand to the primary's ids or tag, so a primary rebuilt with another id, or a
 * tag typed differently, would be denied at the first launch. IAM's policy simulator evaluates
 * the role's policies as deployed, without sending anything.
 */
export async function checkControllerMayRun(
  iam: IAMClient | undefined,
  controllerRoleArn: string | undefined,
  instances: PrimaryInstances | undefined,
  online: readonly string[] | undefined,
  region: string | undefined,
): Promise<Check> {
  if (!iam) return { name: CONTROLLER_MAY_RUN, status: 'skipped', detail: 'the lab has no IAM to ask' };
  if (!controllerRoleArn) return { name: CONTROLLER_MAY_RUN, status: 'skipped', detail: 'needs --stack, deployed with a version that outputs ControllerRoleArn' };
  if (!instances || !online?.length || !region) return { name: CONTROLLER_MAY_RUN, status: 'skipped', detail: "needs the primary's instance(s) online in SSM" };
  const [, partition, , , account] = controllerRoleArn.split(':');
  const document = `arn:${partition}:ssm:${region}::document/${RUN_SHELL_SCRIPT}`;
  const instanceArns = online.map((id) => `arn:${partition}:ec2:${region}:${account}:instance/${id}`);
  const tag = 'tag' in instances ? instances.tag : undefined;
  let results: EvaluationResult[];
  try {
    const answer = await iam.send(
      new SimulatePrincipalPolicyCommand({
        PolicySourceArn: controllerRoleArn,
        ActionNames: ['ssm:SendCommand'],
        ResourceArns: [document, ...instanceArns],
        ...(tag ? { ContextEntries: [{ ContextKeyName: `ssm:resourceTag/${tag.key}`, ContextKeyType: 'string', ContextKeyValues: [tag.value] }] } : {}),
      }),
    );
    results = answer.EvaluationResults ?? [];
  } catch (error) {
    if (errorName(error) === 'AccessDenied' || errorName(error) === 'AccessDeniedException') {
      return { name: CONTROLLER_MAY_RUN, status: 'skipped', detail: "doctor's credentials may not call iam:SimulatePrincipalPolicy on the controller's role" };
    }
    return failed(CONTROLLER_MAY_RUN, toAwsCallError('SimulatePrincipalPolicy', error));
  }
  const decisions = [document, ...instanceArns].map((arn) => ({ arn, decision: results.find((result) => result.EvalResourceName === arn)?.EvalDecision ?? 'no answer' }));
  const denied = decisions.filter(({ decision }) => decision !== 'allowed');
  if (denied.length === 0) return { name: CONTROLLER_MAY_RUN, status: 'ok', detail: `ssm:SendCommand with ${RUN_SHELL_SCRIPT} on ${online.join(', ')} is allowed` };
  return {
    name: CONTROLLER_MAY_RUN,
    status: 'failed',
    detail: `IAM denies the controller ssm:SendCommand on ${denied.map(({ arn, decision }) => `${arn} (${decision})`).join(', ')}`,
    fix: 'the stack grants it on primaryInstanceIds, or on instances tagged primaryInstanceTag: make cdk.json name the primary as it is now, and deploy',
  };
}

async function describeManaged(ssm: SSMClient, instances: PrimaryInstances): Promise<InstanceInformation[]> {
  const filter: InstanceInformationStringFilter =
    'instanceIds' in instances ? { Key: 'InstanceIds', Values: [...instances.instanceIds] } : { Key: `tag:${instances.tag.key}`, Values: [instances.tag.value] };
  const found: InstanceInformation[] = [];
  for await (const page of paginateDescribeInstanceInformation({ client: ssm }, { Filters: [filter] })) found.push(...(page.InstanceInformationList ?? []));
  return found;
}
