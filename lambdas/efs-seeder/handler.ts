import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { type AwsCall, efsMount } from '../../lib/aws-calls';
import { applyContent, ContentPropertiesSchema, planContent } from './content';

/**
 * The writer's only AWS call, for the IAM simulation suite: Lambda mounts the access point for it
 * with its role, and EFS authorizes that mount as ClientMount and, for writing, ClientWrite.
 */
export const CONTENT_WRITER_CALLS: readonly AwsCall[] = [efsMount('elasticfilesystem:ClientMount', 'elasticfilesystem:ClientWrite')];

/** Where the access point is mounted in this function (set by the stack). */
const CONTENT_ROOT = process.env.CONTENT_ROOT ?? '/mnt/compile-masters';
/** Node-agent bundle, unit and bootstrap script, staged into the Lambda package at synth. */
const BUNDLE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'files');
const PHYSICAL_ID = 'compile-masters-efs-content';

interface ProviderResponse {
  PhysicalResourceId: string;
  Data?: Record<string, string>;
}

/**
 * onEvent handler for the custom-resource provider framework, which sends the CloudFormation
 * response (and a FAILED one if this throws).
 */
export async function handler(event: CloudFormationCustomResourceEvent): Promise<ProviderResponse> {
  if (event.RequestType === 'Delete') {
    // The file system is deleted with the stack; nothing here is worth failing a delete over.
    return { PhysicalResourceId: event.PhysicalResourceId };
  }
  const parsed = ContentPropertiesSchema.safeParse(event.ResourceProperties);
  if (!parsed.success) {
    throw new Error(`Refused EFS content properties: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
  }
  const plan = await planContent(parsed.data, BUNDLE_DIR);
  await applyContent(CONTENT_ROOT, plan);
  console.log(
    JSON.stringify({
      message: 'EFS content written',
      requestType: event.RequestType,
      contentHash: parsed.data.ContentHash,
      written: plan.write.map((file) => file.path),
      removed: plan.remove,
    }),
  );
  return { PhysicalResourceId: PHYSICAL_ID, Data: { ContentHash: parsed.data.ContentHash } };
}
