import { Agent } from 'node:https';
import type { SSMClientConfig } from '@aws-sdk/client-ssm';
import { layout } from '../layout';
import { primaryPuppetBin } from '../primary-puppet';
import type { LabDescription } from '../running-lab';
import { labAwsCa } from './ca';
import { roleSessionCredentials } from './credentials';
import { startSsmEndpoint, type SsmEndpoint } from './ssm-endpoint';

/**
 * The lab's primary as an SSM managed instance: the SSM endpoint double managing one instance,
 * the lab's primary, whose "SSM agent" runs commands on this machine, where the primary's Puppet
 * runs. Everything the controller's SSM adapter needs to be pointed at it is here, in one object:
 * the endpoint and its CA, the region, session credentials for the controller's role, the
 * primary's instance id and tag, and the `puppet` to name as the adapter's puppetBin.
 */

/** The lab primary's EC2 identity, as an operator would give it with primaryInstanceIds / primaryInstanceTag. */
export const LAB_PRIMARY_INSTANCE = {
  instanceId: 'i-0b1a0b1a0b1a0b1a0',
  tag: { key: 'Role', value: 'puppet-primary' },
} as const;

export interface LabSsm {
  /** https://localhost:<port>, served with a certificate from the lab's AWS CA. */
  readonly endpoint: string;
  readonly region: string;
  /** The CA that signed the endpoint's certificate: pin it, nothing else trusts it. */
  readonly caPem: string;
  /** The controller role's session credentials; the endpoint refuses any other key. */
  readonly credentials: { accessKeyId: string; secretAccessKey: string; sessionToken: string };
  readonly primary: { instanceId: string; tag: { key: string; value: string } };
  /** The adapter's puppetBin: `puppet` as the lab's primary (lab/primary-puppet.ts). */
  readonly puppetBin: string;
  /** The double itself: its commands and its fault switch. */
  readonly double: SsmEndpoint;
  /** An SSMClient's configuration for the endpoint: `new SSMClient(labSsm.clientConfig())`. */
  clientConfig(): SSMClientConfig;
  close(): Promise<void>;
}

export async function startLabSsm(options: { lab: LabDescription; region: string; accountId: string; log?: (line: string) => void }): Promise<LabSsm> {
  const ca = await labAwsCa(options.lab.dir);
  const session = roleSessionCredentials();
  const key = { secret: session.secretAccessKey, token: session.sessionToken, expiration: session.expiration };
  const puppetBin = primaryPuppetBin(layout(options.lab.dir));
  const double = await startSsmEndpoint({
    host: '127.0.0.1',
    port: 0,
    region: options.region,
    accountId: options.accountId,
    ca,
    credentials: { lookup: (accessKeyId) => (accessKeyId === session.accessKeyId ? key : undefined) },
    instances: [
      {
        instanceId: LAB_PRIMARY_INSTANCE.instanceId,
        tags: { [LAB_PRIMARY_INSTANCE.tag.key]: LAB_PRIMARY_INSTANCE.tag.value, Name: options.lab.primary.certname },
        computerName: options.lab.primary.certname,
        ipAddress: '127.0.0.1',
      },
    ],
    ...(options.log ? { log: options.log } : {}),
  });
  const credentials = { accessKeyId: session.accessKeyId, secretAccessKey: session.secretAccessKey, sessionToken: session.sessionToken };
  return {
    endpoint: double.url,
    region: options.region,
    caPem: ca.certPem,
    credentials,
    primary: { instanceId: LAB_PRIMARY_INSTANCE.instanceId, tag: { ...LAB_PRIMARY_INSTANCE.tag } },
    puppetBin,
    double,
    clientConfig: () => ({
      region: options.region,
      endpoint: double.url,
      credentials,
      requestHandler: { httpsAgent: new Agent({ ca: ca.certPem, keepAlive: true }) },
    }),
    close: () => double.close(),
  };
}
