import type { MetadataService } from '@aws-sdk/ec2-metadata-service';
import { assertCertname } from '../../lib/certname';
import { CompileMastersError } from '../../lib/errors';

export interface InstanceIdentity {
  instanceId: string;
  region: string;
  /** The private DNS name: the certname the controller expects for this instance. */
  certname: string;
}

/** What `autoscaling/target-lifecycle-state` told us, including that it could not tell. */
export type LifecycleObservation =
  | { kind: 'state'; state: string }
  | { kind: 'not-found' }
  | { kind: 'unavailable'; error: Error };

export interface InstanceMetadata {
  identity(): Promise<InstanceIdentity>;
  targetLifecycleState(): Promise<LifecycleObservation>;
}

type MetadataRequester = Pick<MetadataService, 'request'>;

const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;

/**
 * Instance metadata over IMDSv2, through the SDK's maintained client (which fetches the session
 * token). Paths carry no leading slash because the client joins them to the endpoint's path.
 */
export function instanceMetadata(service: MetadataRequester): InstanceMetadata {
  const get = async (path: string): Promise<string> => (await service.request(path, {})).trim();
  return {
    async identity() {
      try {
        const [instanceId, region, hostname] = await Promise.all([
          get('latest/meta-data/instance-id'),
          get('latest/meta-data/placement/region'),
          get('latest/meta-data/local-hostname'),
        ]);
        if (!INSTANCE_ID.test(instanceId)) throw new Error(`instance-id ${JSON.stringify(instanceId.slice(0, 40))} is not an EC2 instance id`);
        if (!REGION.test(region)) throw new Error(`placement/region ${JSON.stringify(region.slice(0, 40))} is not a region name`);
        return { instanceId, region, certname: assertCertname(hostname, 'local-hostname from instance metadata') };
      } catch (cause) {
        throw new CompileMastersError('Cannot read this instance\'s identity from instance metadata (IMDSv2)', {
          cause,
          hint: 'check that the instance metadata service is enabled with HttpTokens=required and a hop limit of at least 1',
        });
      }
    },
    async targetLifecycleState() {
      try {
        return { kind: 'state', state: await get('latest/meta-data/autoscaling/target-lifecycle-state') };
      } catch (error) {
        if (statusOf(error) === 404) return { kind: 'not-found' };
        return { kind: 'unavailable', error: error instanceof Error ? error : new Error(String(error)) };
      }
    },
  };
}

function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}
