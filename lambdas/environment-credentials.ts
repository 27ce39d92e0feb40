/**
 * Stands in for @aws-sdk/credential-provider-node in Lambda bundles that carry the AWS SDK (an
 * esbuild alias, cdk/lambda-defaults.ts). Lambda hands a function its execution role's
 * credentials in AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, which is where
 * the default chain looks first; its other sources (SSO, shared config files, web identity,
 * container and instance metadata, console login) can never answer there.
 */
export { fromEnv as defaultProvider } from '@aws-sdk/credential-provider-env';
