/**
 * The AWS calls each component makes, as IAM authorizes them. Every adapter exports the list of
 * its own calls next to its code; test/unit/cdk/iam-simulation.test.ts evaluates the synthesized
 * stack's IAM policies with a policy simulator and proves that each call is allowed on this
 * stack's resources and denied on any other, and test/unit/aws-calls.test.ts that each adapter
 * lists exactly the SDK commands it imports.
 */

/** The resources of this stack a call can target; the simulation suite knows each one's ARN. */
export type StackResource =
  | 'autoScalingGroup'
  | 'lifecycleQueue'
  | 'registryTable'
  | 'clientCertSecret'
  | 'rbacTokenSecret'
  | 'fileSystem'
  | 'accessPoint'
  /** The primary's EC2 instance, which SSM Run Command converges (primaryRun ssm). */
  | 'primaryInstance'
  | 'runShellScriptDocument';

/** One IAM authorization: an action on a resource, with the condition keys the request carries. */
export interface IamCheck {
  readonly action: `${string}:${string}`;
  /** `'*'` only for actions that have no resource-level permissions (the suite checks that). */
  readonly resource: StackResource | '*';
  /** Request context: each key's value is a stack resource's ARN or a literal. */
  readonly context?: Readonly<Record<string, { readonly arnOf: StackResource } | string>>;
}

/**
 * Who sends the request: the component's own code through the SDK, or AWS on its behalf with
 * its role (an NFS mount that EFS authorizes, Lambda's SQS event source).
 */
export type CallSender = 'sdk' | 'efs-mount' | 'sqs-event-source';

export interface AwsCall {
  /** For `sdk`, the SDK command's name without "Command" (DynamoDB's low-level one for lib-dynamodb). */
  readonly operation: string;
  readonly sender: CallSender;
  /** Everything IAM checks for this one call: it succeeds only if all of them are allowed. */
  readonly authorizes: readonly [IamCheck, ...IamCheck[]];
}

/** The common case: an SDK operation that IAM authorizes as one action of the same name. */
export function sdkCall(action: IamCheck['action'], resource: IamCheck['resource'], context?: IamCheck['context']): AwsCall {
  const operation = action.slice(action.indexOf(':') + 1);
  return { operation, sender: 'sdk', authorizes: [context ? { action, resource, context } : { action, resource }] };
}

/** Every IAM action the calls need, once each: what a grant for them names. */
export function actionsOf(calls: readonly AwsCall[]): string[] {
  return [...new Set(calls.flatMap((call) => call.authorizes.map((check) => check.action)))];
}

type EfsClientAction = 'elasticfilesystem:ClientMount' | 'elasticfilesystem:ClientWrite' | 'elasticfilesystem:ClientRootAccess';

/**
 * An NFS mount of this stack's file system through its access point, over a mount target, as
 * EFS authorizes it: once, at mount time, for each client action the mount needs.
 */
export function efsMount(...actions: [EfsClientAction, ...EfsClientAction[]]): AwsCall {
  const [first, ...rest] = actions.map((action) => ({
    action,
    resource: 'fileSystem' as const,
    context: { 'elasticfilesystem:AccessPointArn': { arnOf: 'accessPoint' as const }, 'elasticfilesystem:AccessedViaMountTarget': 'true' },
  }));
  return { operation: 'mount', sender: 'efs-mount', authorizes: [first!, ...rest] };
}
