import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';

export interface ControllerSecretsProps {
  /** Import instead of create: the complete ARN of an existing secret. */
  readonly clientCertSecretArn?: string;
  readonly rbacTokenSecretArn?: string;
  /** Only the orchestrator takes an RBAC token; without it there is no such secret at all. */
  readonly orchestrator: boolean;
}

/**
 * The only credentials in the system: the lifecycle client certificate bundle (CA API and
 * PuppetDB, mTLS) and, when the orchestrator runs the primary, the PE RBAC token. Only the
 * controller reads them.
 */
export class ControllerSecrets extends Construct {
  /** JSON {"cert": PEM, "key": PEM, "ca": PEM}. */
  readonly clientCert: secretsmanager.ISecret;
  /** The RBAC token as a plain string; only with the orchestrator. */
  readonly rbacToken: secretsmanager.ISecret | undefined;

  constructor(scope: Construct, id: string, props: ControllerSecretsProps) {
    super(scope, id);
    this.clientCert = this.secret(
      'ClientCert',
      props.clientCertSecretArn,
      'Lifecycle client certificate for the Puppet CA and PuppetDB: JSON {"cert","key","ca"} (PEM). Fill with put-secret-value.',
    );
    this.rbacToken = props.orchestrator
      ? this.secret(
          'RbacToken',
          props.rbacTokenSecretArn,
          'PE RBAC token for orchestrator runs on the primary, as a plain string. Fill with put-secret-value.',
        )
      : undefined;
  }

  private secret(id: string, arn: string | undefined, description: string): secretsmanager.ISecret {
    if (arn) return secretsmanager.Secret.fromSecretCompleteArn(this, id, arn);

    // Retained: what the operator put here (a client key, a token) must not go with a stack delete.
    const secret = new secretsmanager.Secret(this, id, { description, removalPolicy: RemovalPolicy.RETAIN });
    // Created without a value: CDK would otherwise generate a random password, which the
    // controller could mistake for a token. An empty secret makes it refuse with "secret not set".
    (secret.node.defaultChild as secretsmanager.CfnSecret).addPropertyDeletionOverride('GenerateSecretString');
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'Not rotatable by a Lambda: the certificate is issued by the Puppet CA and the token by PE RBAC; the operator renews both there and updates the value.',
    });
    return secret;
  }
}
