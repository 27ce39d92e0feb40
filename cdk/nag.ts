import { Validations } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';

/**
 * Lambda's AWS-managed execution policies (cdk-nag IAM4), acknowledged per role: they grant
 * only the function's own logs and, in a VPC, the ENI calls Lambda makes on its behalf.
 */
export function acknowledgeLambdaExecutionPolicies(role: iam.IRole, what: string, inVpc: boolean): void {
  Validations.of(role).acknowledge({
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    reason: `AWS-maintained policy limited to writing the CloudWatch Logs of ${what}.`,
  });
  if (inVpc) {
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]',
      reason: `AWS-maintained policy for the network interfaces of ${what} in the VPC.`,
    });
  }
}
