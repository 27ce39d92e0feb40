import { createServer, type IncomingMessage } from 'node:http';
import { imdsHandler, imdsInstance, type ImdsInstance, type RoleCredentials } from '../imds-double';

/** Where EC2 serves instance metadata; the lab network puts this address on its bridge. */
export const IMDS_ADDRESS = '169.254.169.254';

export interface MachineIdentity {
  instanceId: string;
  region: string;
  /** The private DNS name: the certname the controller expects. */
  localHostname: string;
  /** The machine's address on the lab network: how the server tells machines apart. */
  localIpv4: string;
  availabilityZone?: string;
}

export interface MachineImdsOptions {
  /** The instance profile's role name, listed under iam/security-credentials/. */
  roleName: string;
  /** Issues the instance's role credentials, each time the machine asks. */
  credentials: (instanceId: string) => RoleCredentials | Promise<RoleCredentials>;
  host?: string;
  port?: number;
}

/**
 * One IMDSv2 for every lab machine, on 169.254.169.254:80 on the host side of the lab bridge, as
 * EC2's is on the instance's link: it knows which machine asks by the request's source address.
 */
export class MachineImds {
  /** Every request seen, "<source> METHOD /path". */
  readonly requests: string[] = [];
  private readonly byAddress = new Map<string, ImdsInstance>();
  private readonly byInstanceId = new Map<string, ImdsInstance>();

  private constructor(
    private readonly options: MachineImdsOptions,
    private readonly server: ReturnType<typeof createServer>,
  ) {}

  static async start(options: MachineImdsOptions): Promise<MachineImds> {
    const server = createServer();
    const imds = new MachineImds(options, server);
    server.on(
      'request',
      imdsHandler(
        (request) => imds.byAddress.get(sourceAddress(request)),
        (line, request) => imds.requests.push(`${sourceAddress(request)} ${line}`),
      ),
    );
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 80, options.host ?? IMDS_ADDRESS, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return imds;
  }

  /** Starts answering for a machine; its metadata is the map returned, settable at run time. */
  register(identity: MachineIdentity): Map<string, string> {
    if (this.byAddress.has(identity.localIpv4)) throw new Error(`${identity.localIpv4} is already registered with the lab IMDS`);
    const instance = imdsInstance(identity);
    instance.metadata.set('local-ipv4', identity.localIpv4);
    instance.metadata.set('placement/availability-zone', identity.availabilityZone ?? `${identity.region}a`);
    instance.role = { name: this.options.roleName, credentials: async () => this.options.credentials(identity.instanceId) };
    this.byAddress.set(identity.localIpv4, instance);
    this.byInstanceId.set(identity.instanceId, instance);
    return instance.metadata;
  }

  unregister(instanceId: string): void {
    const instance = this.byInstanceId.get(instanceId);
    if (!instance) return;
    this.byInstanceId.delete(instanceId);
    for (const [address, known] of this.byAddress) if (known === instance) this.byAddress.delete(address);
  }

  /** What `autoscaling/target-lifecycle-state` says; undefined makes it 404, as before any transition. */
  setTargetLifecycleState(instanceId: string, state: string | undefined): void {
    const metadata = this.instance(instanceId).metadata;
    if (state === undefined) metadata.delete('autoscaling/target-lifecycle-state');
    else metadata.set('autoscaling/target-lifecycle-state', state);
  }

  metadata(instanceId: string): Map<string, string> {
    return this.instance(instanceId).metadata;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }

  private instance(instanceId: string): ImdsInstance {
    const instance = this.byInstanceId.get(instanceId);
    if (!instance) throw new Error(`${instanceId} is not registered with the lab IMDS`);
    return instance;
  }
}

function sourceAddress(request: IncomingMessage): string {
  return (request.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
}
