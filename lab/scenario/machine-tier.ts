import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CONTEXT_DEFAULTS } from '../../cdk/config';
import { PUPPET_SERVER_PORT, targetGroupSettings } from '../../cdk/target-groups';
import type { Flavor } from '../../lib/flavor';
import { PuppetServerHealth } from '../../lambdas/controller/puppet';
import type { Ec2Instance } from '../../lambdas/controller/model';
import { labAwsCa, type AwsLabCa } from '../aws/ca';
import { endpoint } from '../clients';
import { InstanceCredentials } from '../aws/credentials';
import { MACHINE_AWS_CA_PATH, sqsHostNames, sqsQueueUrl, sqsTrustDropIn, startSqsEndpoint } from '../aws/sqs-endpoint';
import { MachineImds } from '../machines/imds';
import { Machine } from '../machines/machine';
import { LabNetwork, type NetworkHost } from '../machines/network';
import { startRelay, type Relay } from '../machines/relay';
import { ensureRootfs } from '../machines/rootfs';
import { sweepLeftovers } from '../machines/sweep';
import { DEBIAN_PUPPET, SHARE_MOUNT, USER_DATA, writeShare } from '../machines/share';
import type { TargetBalancer } from '../memory-cloud';
import { startHaproxyNlb, type HaproxyNlb } from '../nlb/haproxy';
import { layout } from '../layout';
import type { LabDescription } from '../running-lab';
import { NLB_DNS_NAME, REGION } from './world';

const QUEUE_NAME = 'compile-masters-lifecycle';
/** The load balancer's address on the lab network (machines are .10 and up). */
const NLB_HOST = 5;

export interface TierEnvironment {
  network: LabNetwork;
  nlb: HaproxyNlb;
  nlbHost: NetworkHost;
  imds: MachineImds;
  credentials: InstanceCredentials;
  rootfs: string;
  share: string;
}

/**
 * Everything around the compile-master machines that AWS and the VPC provide: the subnet (a lab
 * bridge), EFS (the share, filled by the content writer's code), IMDS with role credentials, SQS
 * (an endpoint that speaks its wire protocol and checks SigV4), the NLB (HAProxy, configured from
 * the stack's own target-group settings) and the route to the primary (a relay to the lab's
 * loopback servers). The controller's target group drives HAProxy and each instance's
 * target-lifecycle-state through `balancer`.
 */
export class MachineTier {
  private constructor(
    readonly env: TierEnvironment,
    private readonly lab: LabDescription,
    private readonly dir: string,
    private readonly closers: Array<() => Promise<void> | void>,
    private readonly awsCa: AwsLabCa,
  ) {
    this.health = new PuppetServerHealth(readFileSync(lab.caCertPath, 'utf8'));
  }

  /** `deliver` puts what a machine sent to SQS on the cloud's queue, with its SenderId. */
  static async start(options: {
    lab: LabDescription;
    subnet: string;
    dir: string;
    roleId: string;
    accountId: string;
    flavor: Flavor;
    deliver: (message: { body: string; senderId: string }) => void;
    progress?: (line: string) => void;
  }): Promise<MachineTier> {
    const closers: Array<() => Promise<void> | void> = [];
    const close = async () => {
      for (const closer of closers.reverse()) await Promise.resolve(closer()).catch(() => undefined);
    };
    try {
      sweepLeftovers(join(options.lab.dir, 'scenario'), options.progress);
      const rootfs = await ensureRootfs({ cacheDir: join(options.lab.dir, 'machines'), progress: options.progress });
      const network = LabNetwork.create(options.subnet);
      closers.push(() => network.destroy());
      const relay: Relay = await startRelay({
        listenHost: network.gateway,
        ports: [endpoint(options.lab.ca.url).port, endpoint(options.lab.puppetdb.url).port].map((port) => ({ listen: port, to: port })),
      });
      closers.push(() => relay.close());
      const credentials = new InstanceCredentials({ roleId: options.roleId });
      const imds = await MachineImds.start({ roleName: credentials.roleName, credentials: (id) => credentials.roleCredentials(id) });
      closers.push(() => imds.close());
      const awsCa = await labAwsCa(options.lab.dir);
      const queueUrl = sqsQueueUrl(REGION, options.accountId, QUEUE_NAME);
      const sqs = await startSqsEndpoint({
        host: network.gateway,
        port: 443,
        region: REGION,
        ca: awsCa,
        credentials,
        queueUrls: [queueUrl],
        deliver: ({ body, senderId }) => options.deliver({ body, senderId }),
      });
      closers.push(() => sqs.close());
      const nlbHost = network.addHost('nlb', `${network.subnet.replace(/\.0\/24$/, '')}.${NLB_HOST}`);
      // The lab's machines run open-source Puppet Server whatever the flavor: with no PCP broker
      // on them, the load balancer carries the stack's 8140 target group only.
      const [puppetServer] = targetGroupSettings({ flavor: options.flavor, deregistrationDelaySeconds: CONTEXT_DEFAULTS.deregistrationDelaySeconds });
      const nlb = await startHaproxyNlb({
        settings: [puppetServer],
        bindAddress: nlbHost.ip,
        runDir: join(options.dir, 'nlb'),
        spawnPrefix: ['ip', 'netns', 'exec', nlbHost.netns],
      });
      closers.push(() => nlb.stop());
      const share = join(options.dir, 'share');
      await writeShare(share, {
        agentConfig: {
          // The primary's name as its certificate carries it; machines reach it on the bridge's gateway.
          primaryServer: options.lab.primary.certname,
          caPort: endpoint(options.lab.ca.url).port,
          caCertPath: '/etc/compile-master-agent/ca.pem',
          queueUrl,
          region: REGION,
          extensions: { pp_role: 'compile_master' },
          dnsAltNames: [NLB_DNS_NAME],
          ...DEBIAN_PUPPET,
          localServerPort: PUPPET_SERVER_PORT,
        },
        caCertificate: await readFile(options.lab.caCertPath, 'utf8'),
      });
      return new MachineTier({ network, nlb, nlbHost, imds, credentials, rootfs, share }, options.lab, options.dir, closers, awsCa);
    } catch (error) {
      await close();
      throw error;
    }
  }

  /** Where agents connect: the load balancer's address, port and name. */
  get agentTarget(): { address: string; port: number; servername: string } {
    return { address: this.env.nlbHost.ip, port: PUPPET_SERVER_PORT, servername: NLB_DNS_NAME };
  }

  /** The controller's check of a new node's Puppet Server, for real over the lab network. */
  readonly health: PuppetServerHealth;

  /**
   * The target group's side effects: HAProxy, and the target-lifecycle-state IMDS reports (EC2
   * says InService once the launch completed, Terminated once the termination began).
   */
  balancer(): TargetBalancer {
    return {
      register: (instanceId, privateIp) => {
        this.env.imds.setTargetLifecycleState(instanceId, 'InService');
        void this.env.nlb.register(instanceId, privateIp);
      },
      deregister: async (instanceId) => {
        this.env.imds.setTargetLifecycleState(instanceId, 'Terminated');
        await this.env.nlb.deregister(instanceId);
      },
    };
  }

  /** A new instance's machine, created but not booted: its own address, IMDS identity and root. */
  async machine(instance: Ec2Instance & { privateDnsName: string }): Promise<Machine> {
    const ip = instance.privateIp;
    if (!ip) throw new Error(`${instance.instanceId} has no private address`);
    const host = this.env.network.addHost(instance.instanceId.slice(-8), ip);
    this.env.imds.register({ instanceId: instance.instanceId, region: REGION, localHostname: instance.privateDnsName, localIpv4: ip });
    const stateDir = join(this.dir, 'machines', instance.instanceId);
    await mkdir(stateDir, { recursive: true });
    const dropIn = sqsTrustDropIn(this.awsCa);
    const gateway = this.env.network.gateway;
    return Machine.create({
      hostname: instance.privateDnsName,
      rootfs: this.env.rootfs,
      stateDir,
      network: host,
      hosts: {
        [this.lab.primary.certname]: gateway,
        [NLB_DNS_NAME]: this.env.nlbHost.ip,
        ...Object.fromEntries(sqsHostNames(REGION).map((name) => [name, gateway])),
      },
      files: [
        { path: MACHINE_AWS_CA_PATH, content: dropIn.caPem },
        { path: dropIn.path, content: dropIn.text },
      ],
      binds: [
        { source: this.env.share, target: SHARE_MOUNT },
        // The same code as the primary: its code dir, read-only (production: r10k or a shared mount).
        { source: layout(this.lab.dir).server.codedir, target: '/etc/puppet/code' },
      ],
      userData: USER_DATA,
    });
  }

  /** The instance is gone: its credentials stop working and IMDS forgets it. */
  forget(instanceId: string): void {
    this.env.credentials.revoke(instanceId);
    this.env.imds.unregister(instanceId);
  }

  async close(): Promise<void> {
    for (const closer of this.closers.reverse()) await Promise.resolve(closer()).catch(() => undefined);
    await rm(join(this.dir, 'share'), { recursive: true, force: true });
  }
}

