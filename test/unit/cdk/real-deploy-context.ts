import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export const CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2E=\n-----END CERTIFICATE-----\n';
const caFile = join(mkdtempSync(join(tmpdir(), 'compile-masters-ca-')), 'ca.pem');
writeFileSync(caFile, CA_PEM);

/** A vendor's public package-signing key, as an operator would download it (not a real key). */
export const SIGNING_KEY_PEM = '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGexample\n-----END PGP PUBLIC KEY BLOCK-----\n';
export const SIGNING_KEY_FILE = join(dirname(caFile), 'GPG-KEY-vendor.pub');
writeFileSync(SIGNING_KEY_FILE, SIGNING_KEY_PEM);

export const CLIENT_CERT_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:compile-masters/client-cert-AbCdEf';
export const RBAC_TOKEN_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:compile-masters/rbac-token-GhIjKl';
export const PRIVATE_SUBNETS = ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'];

/** What an operator's cdk.json (or -c flags, hence some strings) looks like for a real deploy. */
export const REAL_DEPLOY_CONTEXT: Record<string, unknown> = {
  primaryHostname: 'puppet.corp.example.com',
  primaryCidr: '10.20.0.15/32',
  primaryCaCertificateFile: caFile,
  puppetdbHostname: 'puppetdb.corp.example.com',
  lifecycleClientCertname: 'compile-master-lifecycle.corp.example.com',
  protectedCertnames: '["puppet-replica.corp.example.com"]',
  dnsAltNames: ['puppet.corp.example.com', 'puppet'],
  vpcId: 'vpc-0123456789abcdef0',
  privateSubnetIds: PRIVATE_SUBNETS.join(','),
  amiId: 'ami-0123456789abcdef0',
  instanceType: 'm7g.2xlarge',
  minSize: '2',
  maxSize: '6',
  desiredCapacity: '3',
  heartbeatTimeoutSeconds: 1200,
  launchCeilingMinutes: '180',
  deregistrationDelaySeconds: 30,
  clientCertSecretArn: CLIENT_CERT_ARN,
  rbacTokenSecretArn: RBAC_TOKEN_ARN,
  alarmTopicArn: 'arn:aws:sns:eu-west-1:123456789012:ops-alarms',
};
