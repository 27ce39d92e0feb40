import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { certnameProblem } from '../../lib/certname';
import { ConfigError } from '../../lib/errors';
import { LAUNCH_CEILING_MINUTES, nodeAgentWaits } from '../../lib/launch-budget';
import { configuredExtensionProblem } from '../../lib/puppet';
import { IN_FLIGHT_WAIT_MAX_SECONDS, READINESS_CHECK, drainSeconds } from '../../lib/readiness-check';

export const DEFAULT_CONFIG_PATH = '/etc/compile-master-agent/agent.json';
/** In the boot step's RuntimeDirectory: gone when that unit stops or restarts, and at every boot. */
export const DEFAULT_BOOT_MARKER_PATH = '/run/compile-master-agent/boot-complete.json';

/**
 * DNS names compare case-insensitively, and ELB DNS names keep the load balancer name's capitals
 * ("Stack-Nlb-1A2B…elb.amazonaws.com"); lowercased here so the CSR carries what the controller
 * compares against.
 */
const hostname = z
  .string()
  .transform((value) => value.toLowerCase())
  .refine((value) => certnameProblem(value) === undefined, {
    error: (issue) => `must be a DNS name; ${JSON.stringify(issue.input)} ${certnameProblem(issue.input)}`,
  });
const absolutePath = z.string().refine(isAbsolute, { error: 'must be an absolute path' });
const port = z.number().int().min(1).max(65_535);
const seconds = z.number().int().positive();
/** Without agent.json's own (the stack writes them from launchCeilingMinutes): the default ceiling's. */
const LAUNCH_WAITS = nodeAgentWaits(LAUNCH_CEILING_MINUTES.default * 60);

const packageName = z.string().regex(/^[a-z0-9][a-z0-9+.-]*$/, 'must be a package name such as openvox-agent');
const repositoryUrl = z.url({ protocol: /^https$/, error: 'must be an https:// repository URL' }).refine((url) => !/\s/.test(url), 'must not contain spaces');
const aptWord = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be one apt suite or component name such as jammy or puppet8');

const extensions = z.record(z.string(), z.string()).superRefine((value, context) => {
  for (const [name, text] of Object.entries(value)) {
    const problem = configuredExtensionProblem(name, text);
    if (problem) context.addIssue({ code: 'custom', path: [name], message: `extension ${JSON.stringify(name)} ${problem}` });
  }
});

/**
 * The agent's configuration, written by the CDK stack to EFS (config/agent.json) and copied by the
 * bootstrap to /etc/compile-master-agent/agent.json. Unknown keys are refused so that a typo
 * fails loudly at boot instead of silently falling back to a default.
 */
export const AgentConfigSchema = z.strictObject({
  /** The primary server (CA and catalog server) the node enrolls with. */
  primaryServer: hostname,
  caPort: port.default(8140),
  /** The primary's CA certificate: pinned for every TLS call and handed to Puppet, never fetched. */
  caCertPath: absolutePath.default('/etc/compile-master-agent/ca.pem'),
  /** The controller's queue; the instance profile may only SendMessage to it. */
  queueUrl: z.url({ protocol: /^https$/, error: 'must be an https:// SQS queue URL' }),
  region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'must be an AWS region name such as eu-west-1'),
  /** Puppet short names → values requested in the CSR besides pp_instance_id and pp_region. */
  extensions: extensions.default({}),
  /** Usually the NLB's DNS name; the certname is always added. */
  dnsAltNames: z.array(hostname).default([]),
  puppetBin: absolutePath.default('/opt/puppetlabs/bin/puppet'),
  /**
   * Where bootstrap.sh gets puppet-agent when puppetBin is missing (the agent itself never
   * installs it): PE's primary (install.bash), the vendor's repository (packages checked against
   * the signing key the stack put beside agent.json), or nowhere (baked into the AMI).
   */
  agentInstall: z
    .discriminatedUnion('source', [
      z.strictObject({ source: z.literal('primary') }),
      z.strictObject({ source: z.literal('ami') }),
      // The repository's package manager is the platform's (cdk/platform.ts).
      z.discriminatedUnion('packageManager', [
        z.strictObject({
          source: z.literal('repository'),
          package: packageName,
          packageManager: z.literal('dnf'),
          /** A dnf baseurl; dnf expands $basearch itself. */
          rpmBaseUrl: repositoryUrl,
        }),
        z.strictObject({
          source: z.literal('repository'),
          package: packageName,
          packageManager: z.literal('apt'),
          /** One `deb [signed-by=…] URI SUITE COMPONENT` line; single words, so nothing else fits in it. */
          aptUri: repositoryUrl,
          aptSuite: aptWord,
          aptComponent: aptWord,
        }),
      ]),
    ])
    .default({ source: 'primary' }),
  confdir: absolutePath.default('/etc/puppetlabs/puppet'),
  ssldir: absolutePath.default('/etc/puppetlabs/puppet/ssl'),
  localServerPort: port.default(8140),
  /**
   * Host name used to reach this node's own Puppet Server for the health check. Defaults to the
   * certname because that is a name the server's certificate carries.
   */
  localServerHost: hostname.optional(),
  /**
   * The local Puppet Server's systemd unit, restarted after a re-enrollment so it serves the new
   * certificate instead of the revoked one it loaded at start; null when nothing should be restarted.
   */
  localServerService: z.string().regex(/^[A-Za-z0-9@._-]+$/).nullable().default('pe-puppetserver'),
  /**
   * Run `puppet agent --test` as a transient systemd unit (systemd-run): converging a compile master
   * installs packages and manages services everywhere, which the agent's own sandbox forbids.
   * false runs it in-process (tests, or layouts whose Puppet run stays inside ReadWritePaths).
   */
  isolatePuppetRun: z.boolean().default(true),
  /**
   * How often the CRL refresher asks the CA for its CRL (a 304 when nothing changed). A revoked
   * certificate must be refused within 60 s: the poll, the CA's answer and Puppet Server's reload
   * of the file all fit in that only with an interval well below it.
   */
  crlRefreshSeconds: seconds.max(45).default(15),
  /**
   * Written by the boot step once it has completed for this node's identity, removed when it
   * starts again: the readiness daemon answers "ready" only while it is there.
   */
  bootMarkerPath: absolutePath.default(DEFAULT_BOOT_MARKER_PATH),
  /** Where the readiness daemon answers the load balancer's health check (plain HTTP). */
  readinessPort: port.default(READINESS_CHECK.port),
  /**
   * How long the readiness daemon answers "not ready" at stop before it lets Puppet Server stop.
   * The default is what the NLB's health check needs; a shorter one only suits a faster checker
   * (the lab's HAProxy), and a longer one would outlast the unit's TimeoutStopSec.
   */
  drainSeconds: z.number().int().min(0).max(drainSeconds()).default(drainSeconds()),
  /**
   * After the drain, how long the readiness daemon waits for agents still connected to finish
   * their runs (the stack writes the NLB's draining interval). Bounded by the unit's TimeoutStopSec.
   */
  inFlightWaitSeconds: z.number().int().min(0).max(IN_FLIGHT_WAIT_MAX_SECONDS).default(IN_FLIGHT_WAIT_MAX_SECONDS),
  /** Old SSL directories are moved here (timestamped, 0700) before a re-enrollment. */
  backupDir: absolutePath.default('/var/lib/compile-master-agent/ssl-backups'),
  timeouts: z
    .strictObject({
      /** Per IMDS request; the shutdown step must never hold up a shutdown for long. */
      imdsMs: z.number().int().positive().default(2_000),
      /** How long a CA that cannot be reached is retried before the boot step gives up. */
      caUnavailableSeconds: seconds.default(LAUNCH_WAITS.caUnavailableSeconds),
      /**
       * How long an enrollment waits for its certificate, from the key report on: the report
       * reaching SQS, a foreign pending CSR being removed and the controller signing, together.
       */
      certificateSeconds: seconds.default(LAUNCH_WAITS.certificateSeconds),
      /** Upper bound for each puppet command (the agent run installs the compile master). */
      puppetRunSeconds: seconds.default(LAUNCH_WAITS.puppetRunSeconds),
      /** How long the local Puppet Server may take to answer healthy after the run. */
      serverHealthySeconds: seconds.default(LAUNCH_WAITS.serverHealthySeconds),
    })
    .prefault({}),
});

export type AgentConfig = z.infer<typeof AgentConfigSchema>;

/** Validates a parsed configuration; `source` names where it came from in the error. */
export function parseConfig(value: unknown, source: string): AgentConfig {
  const parsed = AgentConfigSchema.safeParse(value);
  if (!parsed.success) {
    throw new ConfigError(`Invalid node-agent configuration in ${source}:\n${z.prettifyError(parsed.error)}`, {
      cause: parsed.error,
      hint: 'fix config/agent.json on the EFS share (the CDK stack writes it), then rerun the bootstrap or restart compile-master-agent',
    });
  }
  return parsed.data;
}

export async function loadConfig(path: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(`Cannot read the node-agent configuration ${path}`, {
      cause,
      hint: 'the bootstrap copies it from /mnt/compile-masters/config/agent.json; check that EFS is mounted and rerun the bootstrap',
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(`The node-agent configuration ${path} is not valid JSON`, { cause });
  }
  return parseConfig(json, path);
}

export async function loadCaCertificate(config: AgentConfig): Promise<string> {
  try {
    const pem = await readFile(config.caCertPath, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in the file');
    return pem;
  } catch (cause) {
    throw new ConfigError(`Cannot read the pinned CA certificate ${config.caCertPath}`, {
      cause,
      hint: "the bootstrap copies the primary's CA certificate from /mnt/compile-masters/config/ca.pem",
    });
  }
}
