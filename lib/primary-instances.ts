import * as z from 'zod';
import { instanceIdSchema } from './node-agent-notice';

/**
 * How the primary's EC2 instance(s) are named for SSM Run Command, defined once for the stack's
 * context (primaryInstanceIds / primaryInstanceTag) and the controller's environment
 * (PRIMARY_INSTANCE_IDS / PRIMARY_INSTANCE_TAG): by instance id, or by a tag.
 */

/** SendCommand takes at most 50 instance ids. */
export const MAX_PRIMARY_INSTANCE_IDS = 50;

export const primaryInstanceIdsSchema = z
  .array(instanceIdSchema, 'must be a JSON array of EC2 instance ids')
  .min(1, 'must name at least one instance')
  .max(MAX_PRIMARY_INSTANCE_IDS, `names more than ${MAX_PRIMARY_INSTANCE_IDS} instances (SendCommand's limit)`)
  .refine((ids) => new Set(ids).size === ids.length, 'names an instance twice');

/**
 * EC2 tag keys and values (letters, digits, spaces and _ . : / = @ -), within what SSM accepts as
 * a target ("tag:<key>") and IAM as a condition key (ssm:resourceTag/<key>); '+' is left out, as
 * SSM's target keys refuse it.
 */
const TAG_TEXT = /^[\p{L}\p{Z}\p{N}_.:/=@-]+$/u;

export const primaryInstanceTagSchema = z.strictObject(
  {
    key: z
      .string('key must be a string')
      .max(128, 'key is longer than 128 characters')
      .regex(TAG_TEXT, 'key must be a non-empty EC2 tag key (letters, digits, spaces, _ . : / = @ -)')
      .refine((key) => !key.toLowerCase().startsWith('aws:'), 'key must not start with aws: (reserved by AWS)'),
    value: z.string('value must be a string').max(256, 'value is longer than 256 characters').regex(TAG_TEXT, 'value must be a non-empty EC2 tag value (letters, digits, spaces, _ . : / = @ -)'),
  },
  'must be a JSON object {"key": ..., "value": ...}',
);
export type PrimaryInstanceTag = z.infer<typeof primaryInstanceTagSchema>;

/** The primary's EC2 instance(s) that SSM Run Command runs Puppet on: by id, or by a tag. */
export type PrimaryInstances = { readonly instanceIds: readonly string[] } | { readonly tag: PrimaryInstanceTag };
