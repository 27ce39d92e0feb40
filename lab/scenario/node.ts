import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { Ec2Instance } from '../../lambdas/controller/model';
import { instanceSenderId } from '../../lib/node-agent-notice';
import { runCli } from '../../node-agent/src/cli';
import { startImdsDouble, type ImdsDouble } from '../imds-double';
import type { LabDescription } from '../running-lab';
import type { MemoryCloud } from '../memory-cloud';
import { NLB_DNS_NAME, REGION } from './world';

export interface AgentRun {
  code: number;
  /** The node agent's JSON log lines. */
  lines: Array<Record<string, unknown>>;
  seconds: number;
  /**
   * Boot attempts that failed before this one, each restarted by systemd (the unit's
   * Restart=on-failure), as on an instance. Only machines restart; processes run once.
   */
  restarts?: BootAttemptFailure[];
}

export interface BootAttemptFailure {
  code: number;
  /** The node agent's error line, which says what failed. */
  error: string;
  seconds: number;
}

/**
 * A compile master as the scenario drives it, whatever it runs on: a process on this machine
 * (`SimulatedNode`) or a systemd machine (`MachineNode`). Each call resolves when the node agent's
 * step it causes has ended.
 */
export interface TierNode {
  readonly label: string;
  readonly instanceId: string;
  readonly certname: string;
  /** Powers on (first boot, or after `stop`); the node agent's boot step. */
  start(): Promise<AgentRun>;
  /** The operating system reboots: the shutdown step with the instance staying in service, then the boot step. */
  reboot(): Promise<AgentRun[]>;
  /** Powered off, disk kept (an EC2 stop, or a crash): the shutdown step with the instance staying in service. */
  stop(): Promise<AgentRun>;
  /** EC2 terminates it (the group's termination or an API call): the shutdown step sees Terminated. */
  terminate(): Promise<AgentRun>;
  localCertificate(): Promise<string | undefined>;
  /** Frees what it holds (processes, disk with private keys). */
  destroy(): Promise<void>;
}

/**
 * One compile master of the scenario: the real node agent (runCli, as the systemd unit runs it)
 * with its own Puppet confdir, ssldir and vardir, an IMDS double that answers as EC2 would for
 * this instance, and its SQS prompts landing on the cloud's queue.
 *
 * Its Puppet Server is simulated: the lab has one Puppet Server (the primary's, which also
 * answers the node agent's local health check), so the controller's NodeHealthPort reports this
 * node healthy from the moment its node agent says it enrolled or booted — after a real `puppet
 * agent --test` — until it shuts down.
 */
export class SimulatedNode implements TierNode {
  private constructor(
    readonly label: string,
    readonly instance: Ec2Instance & { privateDnsName: string },
    private readonly root: string,
    private readonly imds: ImdsDouble,
    private readonly cloud: MemoryCloud,
  ) {}

  static async create(label: string, instance: Ec2Instance, options: { lab: LabDescription; dir: string; cloud: MemoryCloud }): Promise<SimulatedNode> {
    const certname = instance.privateDnsName;
    if (!certname) throw new Error(`${instance.instanceId} has no private DNS name`);
    const root = join(options.dir, certname);
    const confdir = join(root, 'puppet');
    await mkdir(confdir, { recursive: true });
    await writeFile(join(confdir, 'puppet.conf'), ['[main]', `vardir = ${root}/var`, `logdir = ${root}/log`, `rundir = ${root}/run`, `codedir = ${root}/code`, ''].join('\n'));
    await writeFile(
      join(root, 'agent.json'),
      JSON.stringify({
        primaryServer: 'localhost',
        caCertPath: options.lab.caCertPath,
        queueUrl: `https://sqs.${REGION}.amazonaws.com/123456789012/compile-masters-lifecycle`,
        region: REGION,
        extensions: { pp_role: 'compile_master' },
        dnsAltNames: [NLB_DNS_NAME],
        puppetBin: options.lab.puppetBin,
        confdir,
        ssldir: join(confdir, 'ssl'),
        localServerHost: 'localhost',
        localServerService: null,
        isolatePuppetRun: false,
        backupDir: join(root, 'ssl-backups'),
        // Not the host's /run: several simulated nodes share this machine.
        bootMarkerPath: join(root, 'run', 'boot-complete.json'),
        timeouts: { caUnavailableSeconds: 180, certificateSeconds: 240, puppetRunSeconds: 240, serverHealthySeconds: 60 },
      }),
    );
    const imds = await startImdsDouble({ instanceId: instance.instanceId, region: REGION, localHostname: certname });
    return new SimulatedNode(label, { ...instance, privateDnsName: certname }, root, imds, options.cloud);
  }

  get certname(): string {
    return this.instance.privateDnsName;
  }

  get instanceId(): string {
    return this.instance.instanceId;
  }

  start(): Promise<AgentRun> {
    return this.agent('boot');
  }

  async reboot(): Promise<AgentRun[]> {
    return [await this.stop(), await this.start()];
  }

  stop(): Promise<AgentRun> {
    return this.shutdown('InService');
  }

  terminate(): Promise<AgentRun> {
    return this.shutdown('Terminated');
  }

  /** The node agent's shutdown step, with IMDS saying where the instance is heading. */
  private async shutdown(targetLifecycleState: 'InService' | 'Terminated'): Promise<AgentRun> {
    this.imds.metadata.set('autoscaling/target-lifecycle-state', targetLifecycleState);
    try {
      return await this.agent('shutdown');
    } finally {
      this.imds.metadata.delete('autoscaling/target-lifecycle-state');
      this.cloud.health.set(this.certname, false);
    }
  }

  localCertificate(): Promise<string | undefined> {
    return readFile(join(this.root, 'puppet', 'ssl', 'certs', `${this.certname}.pem`), 'utf8').catch(() => undefined);
  }

  async destroy(): Promise<void> {
    await this.imds.close();
    await rm(this.root, { recursive: true, force: true });
  }

  private async agent(step: 'boot' | 'shutdown'): Promise<AgentRun> {
    const lines: Array<Record<string, unknown>> = [];
    const sink = { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) };
    const started = Date.now();
    const sqs = {
      send: async (command: SendMessageCommand) => {
        const body = command.input.MessageBody ?? '';
        const event = (JSON.parse(body) as { event?: string }).event;
        if (event === 'enrolled' || event === 'booted') this.cloud.health.set(this.certname, true);
        // SQS records the sender: this instance's own instance-profile credentials.
        this.cloud.queue.enqueue(body, 0, instanceSenderId(this.cloud.compileMasterRoleId, this.instanceId));
        return { MessageId: String(lines.length) };
      },
    };
    const code = await runCli([step, '--config', join(this.root, 'agent.json')], { stdout: sink, stderr: sink, imdsEndpoint: this.imds.url, sqs: sqs as never });
    return { code, lines, seconds: (Date.now() - started) / 1000 };
  }
}
