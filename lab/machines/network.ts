import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { run } from '../processes';
import { execFile, type ExecOptions, type ExecResult } from './exec';
import { IMDS_ADDRESS } from './imds';

/** A host on the lab network: a network namespace with one veth end on the bridge. */
export interface NetworkHost {
  readonly name: string;
  readonly ip: string;
  /** The namespace's name (`ip netns`), and its path for systemd-nspawn --network-namespace-path. */
  readonly netns: string;
  readonly netnsPath: string;
}

/**
 * A private /24 on a Linux bridge: the host side holds the gateway (.1) and EC2's metadata address
 * (169.254.169.254/32, for the lab IMDS), each lab host gets its own network namespace. Nothing is
 * routed off the machine: no forwarding, no NAT, so lab hosts reach only what listens on the
 * host's addresses (the Puppet lab, IMDS, the stand-ins for AWS endpoints).
 */
export class LabNetwork {
  readonly gateway: string;
  private readonly hosts = new Map<string, NetworkHost>();
  private readonly prefix: string;

  private constructor(
    readonly bridge: string,
    /** The subnet's first three octets, "10.x.y". */
    private readonly net: string,
    private readonly id: string,
  ) {
    this.gateway = `${net}.1`;
    this.prefix = `cm${id}`;
  }

  /** `subnet` is a private 10.x.y.0/24 the scenario picked for this run. */
  static create(subnet: string): LabNetwork {
    const match = /^(10\.\d{1,3}\.\d{1,3})\.0\/24$/.exec(subnet);
    if (!match?.[1] || match[1].split('.').some((octet) => Number(octet) > 255)) throw new Error(`lab subnet ${subnet} must be a 10.x.y.0/24`);
    const id = randomBytes(3).toString('hex');
    // Interface names are at most 15 characters: "cmlab" + 6 hex digits.
    const network = new LabNetwork(`cmlab${id}`, match[1], id);
    try {
      ip('link', 'add', network.bridge, 'type', 'bridge');
      ip('addr', 'add', `${network.gateway}/24`, 'dev', network.bridge);
      ip('addr', 'add', `${IMDS_ADDRESS}/32`, 'dev', network.bridge);
      ip('link', 'set', network.bridge, 'up');
    } catch (error) {
      network.destroy();
      throw error;
    }
    return network;
  }

  get subnet(): string {
    return `${this.net}.0/24`;
  }

  /** Creates `name`'s namespace at `ip` (in the subnet, not .0, .1 or .255), up, routed via the gateway. */
  addHost(name: string, address: string): NetworkHost {
    if (!/^[a-z0-9-]{1,20}$/.test(name)) throw new Error(`lab host name ${JSON.stringify(name)}: lowercase letters, digits and '-' only`);
    if (this.hosts.has(name)) throw new Error(`lab host ${name} exists already`);
    const last = Number(address.startsWith(`${this.net}.`) ? address.slice(this.net.length + 1) : NaN);
    if (!Number.isInteger(last) || last < 2 || last > 254) throw new Error(`${address} is not a host address of ${this.subnet} (the gateway is .1)`);
    const netns = `${this.prefix}-${name}`;
    const index = this.hosts.size;
    // Both veth ends need names unique on the host: the bridge's id and a counter.
    const outside = `${this.prefix}h${index}`;
    const inside = `${this.prefix}n${index}`;
    const host: NetworkHost = { name, ip: address, netns, netnsPath: `/run/netns/${netns}` };
    this.hosts.set(name, host);
    ip('netns', 'add', netns);
    ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
    ip('link', 'set', outside, 'master', this.bridge);
    ip('link', 'set', outside, 'up');
    ip('link', 'set', inside, 'netns', netns);
    const inNs = (...args: string[]) => ip('-n', netns, ...args);
    // The machine sees a conventional eth0.
    inNs('link', 'set', inside, 'name', 'eth0');
    inNs('addr', 'add', `${address}/24`, 'dev', 'eth0');
    inNs('link', 'set', 'lo', 'up');
    inNs('link', 'set', 'eth0', 'up');
    inNs('route', 'add', 'default', 'via', this.gateway);
    return host;
  }

  host(name: string): NetworkHost {
    const host = this.hosts.get(name);
    if (!host) throw new Error(`no lab host ${name}`);
    return host;
  }

  /** Runs a host program inside `host`'s namespace (HAProxy, test clients) and waits for it. */
  exec(host: NetworkHost, argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    return execFile('ip', ['netns', 'exec', host.netns, ...argv], options);
  }

  /** Starts a long-running host program inside `host`'s namespace. */
  spawn(host: NetworkHost, argv: string[], options: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', host.netns, ...argv], options);
  }

  /** Removes the namespaces (their veth pairs go with them) and the bridge; safe to call twice. */
  destroy(): void {
    for (const host of this.hosts.values()) if (existsSync(host.netnsPath)) ip('netns', 'delete', host.netns);
    this.hosts.clear();
    if (existsSync(`/sys/class/net/${this.bridge}`)) ip('link', 'delete', this.bridge);
  }
}

function ip(...args: string[]): void {
  run('ip', args);
}
