import { randomBytes } from 'node:crypto';
import { instanceSenderId } from '../../lib/node-agent-notice';
import { imdsCredentialsDocument, type ImdsCredentialsDocument, type RoleCredentials } from '../imds-double';

export type { ImdsCredentialsDocument } from '../imds-double';

/**
 * The compile-master role's instance-profile credentials, as EC2 hands them to each instance over
 * IMDS, and what STS knows about them: which instance holds which key. The lab's IMDS serves
 * `credentialsFor`, its SQS endpoint verifies requests with `lookup`, so a message's SenderId is
 * whatever instance the signing key was issued to, never what the message says.
 */

export interface IssuedKey {
  instanceId: string;
  /** SQS's SenderId for requests signed with this key: `<role id>:<instance id>`. */
  senderId: string;
  secret: string;
  token: string;
  expiration: Date;
  /** Set when the instance was terminated: the key no longer authenticates anything. */
  revoked: boolean;
}

export interface InstanceCredentialsOptions {
  /** The role's unique id (AROA…), e.g. MemoryCloud's `compileMasterRoleId`. */
  roleId: string;
  /** The role's name: the last path segment IMDS lists under iam/security-credentials/. */
  roleName?: string;
  /** How long one set of credentials lasts; EC2's last about six hours. */
  lifetimeSeconds?: number;
  /** EC2 has new credentials ready at least five minutes before the old ones expire. */
  renewBeforeSeconds?: number;
  clock?: () => Date;
}

export class InstanceCredentials {
  readonly roleId: string;
  readonly roleName: string;
  private readonly lifetimeMs: number;
  private readonly renewBeforeMs: number;
  private readonly clock: () => Date;
  private readonly keys = new Map<string, IssuedKey>();
  /** Each instance's newest credentials, as its IMDS currently serves them. */
  private readonly current = new Map<string, RoleCredentials>();
  private readonly updatedAt = new Map<string, Date>();
  private readonly terminated = new Set<string>();

  constructor(options: InstanceCredentialsOptions) {
    if (!/^AROA[A-Z0-9]+$/.test(options.roleId)) throw new Error(`${options.roleId} is not an IAM role id (AROA…)`);
    this.roleId = options.roleId;
    this.roleName = options.roleName ?? 'compile-master';
    this.lifetimeMs = (options.lifetimeSeconds ?? 6 * 3600) * 1000;
    this.renewBeforeMs = (options.renewBeforeSeconds ?? 15 * 60) * 1000;
    this.clock = options.clock ?? (() => new Date());
  }

  /**
   * What the instance's IMDS answers now: the credentials it already has while they are not
   * close to expiry, else new ones (the old ones stay valid until they expire, as in EC2).
   * Throws for a terminated instance, which has no IMDS to ask.
   */
  credentialsFor(instanceId: string): ImdsCredentialsDocument {
    return imdsCredentialsDocument(this.roleCredentials(instanceId), this.updatedAt.get(instanceId));
  }

  /** The same, as the IMDS server takes them. */
  roleCredentials(instanceId: string): RoleCredentials {
    if (this.terminated.has(instanceId)) throw new Error(`${instanceId} is terminated: it has no instance credentials`);
    const held = this.current.get(instanceId);
    if (held && held.expiration.getTime() - this.clock().getTime() > this.renewBeforeMs) return held;
    return this.issue(instanceId);
  }

  /** The key's owner and secret, expired and revoked keys included (the endpoint says which). */
  lookup(accessKeyId: string): IssuedKey | undefined {
    return this.keys.get(accessKeyId);
  }

  /** The instance is terminated: every key it was given stops working at once. */
  revoke(instanceId: string): void {
    this.terminated.add(instanceId);
    this.current.delete(instanceId);
    for (const key of this.keys.values()) if (key.instanceId === instanceId) key.revoked = true;
  }

  private issue(instanceId: string): RoleCredentials {
    const now = this.clock();
    // IMDS writes whole seconds.
    const lastUpdated = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const expiration = new Date(lastUpdated.getTime() + this.lifetimeMs);
    const issued: RoleCredentials = {
      accessKeyId: temporaryAccessKeyId(),
      secretAccessKey: randomBytes(30).toString('base64'),
      sessionToken: randomBytes(384).toString('base64'),
      expiration,
    };
    this.keys.set(issued.accessKeyId, {
      instanceId,
      senderId: instanceSenderId(this.roleId, instanceId),
      secret: issued.secretAccessKey,
      token: issued.sessionToken,
      expiration,
      revoked: false,
    });
    this.current.set(instanceId, issued);
    this.updatedAt.set(instanceId, lastUpdated);
    return issued;
  }
}

/** A role session's temporary credentials, as STS gives a Lambda function its role's. */
export interface SessionCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration: Date;
}

/** New session credentials for a role that is not an instance's (the controller's, in the lab). */
export function roleSessionCredentials(lifetimeSeconds = 12 * 3600, now = new Date()): SessionCredentials {
  return {
    accessKeyId: temporaryAccessKeyId(),
    secretAccessKey: randomBytes(30).toString('base64'),
    sessionToken: randomBytes(384).toString('base64'),
    expiration: new Date(now.getTime() + lifetimeSeconds * 1000),
  };
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** STS's temporary keys: ASIA and 16 base-32 characters (long-term keys start with AKIA). */
function temporaryAccessKeyId(): string {
  return `ASIA${[...randomBytes(16)].map((byte) => BASE32[byte % 32]).join('')}`;
}

/** IMDS's timestamps: ISO 8601 in UTC without milliseconds, e.g. 2012-04-26T16:39:16Z. */
