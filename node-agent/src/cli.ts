import { parseArgs } from 'node:util';
import { MetadataService } from '@aws-sdk/ec2-metadata-service';
import { SQSClient } from '@aws-sdk/client-sqs';
import { CompileMastersError, ConfigError, PuppetApiError, RefusedInputError } from '../../lib/errors';
import { CaClient, PuppetServerStatusClient } from '../../lib/puppet';
import { READINESS_CHECK } from '../../lib/readiness-check';
import { boot } from './boot';
import { clearBootMarker, readBootMarker, writeBootMarker } from './boot-marker';
import { hostCrlPath, runCrlRefresher } from './crl-refresh';
import { DEFAULT_CONFIG_PATH, loadCaCertificate, loadConfig, type AgentConfig } from './config';
import { instanceMetadata } from './imds';
import { newPrivateKeyPem } from './key';
import { jsonLogger, type Logger } from './log';
import { sqsNotifier } from './notify';
import { systemClock } from './poll';
import { PuppetCli, execCommand, type RunCommand } from './puppet';
import { openAgentConnections } from './connections';
import { runReadinessDaemon } from './readiness';
import { shutdown } from './shutdown';

const STEPS = ['boot', 'shutdown', 'crl-refresh', 'health'] as const;
export type Step = (typeof STEPS)[number];
const isStep = (value: string | undefined): value is Step => (STEPS as readonly (string | undefined)[]).includes(value);

const USAGE = 'usage: node-agent.mjs boot|shutdown|crl-refresh|health [--config /etc/compile-master-agent/agent.json]';

export function parseCommandLine(argv: readonly string[]): { step: Step; configPath: string } {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: { config: { type: 'string' } } });
  } catch (cause) {
    throw new ConfigError(`${(cause as Error).message}; ${USAGE}`, { cause });
  }
  const [step, ...extra] = parsed.positionals;
  if (!isStep(step) || extra.length > 0) throw new ConfigError(USAGE);
  return { step, configPath: parsed.values.config ?? DEFAULT_CONFIG_PATH };
}

/**
 * Exit codes from sysexits.h, so the unit can tell what a restart may fix: the unit's
 * RestartPreventExitStatus lists the codes that need a person (bad configuration, hostile
 * metadata) and systemd restarts the boot step for the rest.
 */
export const EXIT = { ok: 0, dataError: 65, unavailable: 69, software: 70, tempFail: 75, config: 78 } as const;

export function exitCodeFor(error: unknown): number {
  if (error instanceof ConfigError) return EXIT.config;
  if (error instanceof RefusedInputError) return EXIT.dataError;
  if (error instanceof PuppetApiError) return EXIT.unavailable;
  if (error instanceof CompileMastersError) return EXIT.tempFail;
  return EXIT.software;
}

export interface CliIo {
  stdout: { write(line: string): unknown };
  stderr: { write(line: string): unknown };
  /** Only tests and the benchmark change these; the instance uses the SDK defaults. */
  imdsEndpoint?: string;
  sqs?: Pick<SQSClient, 'send'>;
  run?: RunCommand;
  /** Ends the long-running crl-refresh and health steps; on an instance SIGTERM or SIGINT does. */
  signal?: AbortSignal;
}

/** The whole program: parse, wire the clients once, run one step, map the outcome to an exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const log = jsonLogger(io.stdout, io.stderr);
  const closers: (() => unknown)[] = [];
  try {
    const { step, configPath } = parseCommandLine(argv);
    const config = await loadConfig(configPath);
    if (step === 'crl-refresh') {
      const caPem = await loadCaCertificate(config);
      // One attempt per poll, bounded well inside the poll interval: the loop itself is the retry.
      const ca = new CaClient({ baseUrl: `https://${config.primaryServer}:${config.caPort}`, tls: { ca: caPem }, timeoutMs: 10_000, retry: { attempts: 1, baseDelayMs: 0, maxDelayMs: 0 } });
      closers.push(() => ca.close());
      const signal = io.signal ?? terminationSignal();
      await runCrlRefresher({ ca, pinnedCaPem: caPem, crlPath: hostCrlPath(config.ssldir), intervalMs: config.crlRefreshSeconds * 1000, signal, log });
      return EXIT.ok;
    }
    if (step === 'health') {
      const caPem = await loadCaCertificate(config);
      const local = localServerStatus(config, caPem);
      closers.push(() => local.close());
      await runReadinessDaemon({
        port: config.readinessPort,
        drainMs: config.drainSeconds * 1000,
        inFlightMs: config.inFlightWaitSeconds * 1000,
        openAgentConnections: () => openAgentConnections(config.localServerPort),
        readBoot: () => readBootMarker(config.bootMarkerPath),
        serverRunning: local.running,
        // At stop, like the shutdown step: one quick retry, since every answer but Terminated drains.
        lifecycle: () => metadata(config, io, 1).targetLifecycleState(),
        signal: io.signal ?? terminationSignal(),
        log,
      });
      return EXIT.ok;
    }
    // At shutdown one quick retry: systemd's stop timeout is short and every answer but
    // Terminated keeps the identity anyway.
    const imds = metadata(config, io, step === 'shutdown' ? 1 : 3);
    if (step === 'shutdown') {
      await shutdown({ imds, log });
      return EXIT.ok;
    }
    // First: a boot step that starts again has not completed for the identity it will end with.
    await clearBootMarker(config.bootMarkerPath);
    const identity = await imds.identity();
    const caPem = await loadCaCertificate(config);
    // One attempt per call: boot's own polling retries an unreachable CA with its backoff and
    // its deadline (timeouts.caUnavailableSeconds), which the client's retries would overrun.
    const ca = new CaClient({ baseUrl: `https://${config.primaryServer}:${config.caPort}`, tls: { ca: caPem }, retry: { attempts: 1, baseDelayMs: 0, maxDelayMs: 0 } });
    const localServer = new PuppetServerStatusClient({ baseUrl: `https://${config.localServerHost ?? identity.certname}:${config.localServerPort}`, tls: { ca: caPem } });
    const sqs = io.sqs ?? new SQSClient({ region: config.region });
    closers.push(() => ca.close(), () => localServer.close(), () => (io.sqs ? undefined : (sqs as SQSClient).destroy()));
    const run = io.run ?? execCommand;
    await boot({
      config,
      caPem,
      identity,
      ca,
      puppet: new PuppetCli(config, run, log),
      localServer,
      restartLocalServer: () => restartLocalServer(config, run, log),
      notifier: sqsNotifier({ client: sqs, queueUrl: config.queueUrl, log }),
      newPrivateKey: newPrivateKeyPem,
      clock: systemClock,
      log,
    });
    await writeBootMarker(config.bootMarkerPath, { certname: identity.certname, instanceId: identity.instanceId, completedAt: new Date().toISOString() });
    return EXIT.ok;
  } catch (error) {
    const code = exitCodeFor(error);
    log.error(error instanceof Error ? error.message : String(error), { exitCode: code, error });
    return code;
  } finally {
    await Promise.allSettled(closers.map((close) => close()));
  }
}

function metadata(config: AgentConfig, io: CliIo, retries: number) {
  return instanceMetadata(
    new MetadataService({
      endpoint: io.imdsEndpoint,
      ec2MetadataV1Disabled: true,
      httpOptions: { timeout: config.timeouts.imdsMs },
      retries,
      backoff: (failures) => 0.2 * 2 ** failures,
    }),
  );
}

/**
 * The readiness daemon's view of the local Puppet Server: over loopback, so the check does not
 * depend on name resolution, verified as the name the boot step enrolled (or localServerHost), and
 * answered within the NLB's timeout. One client per name, which only changes with a new identity.
 */
function localServerStatus(config: AgentConfig, caPem: string) {
  const clients = new Map<string, PuppetServerStatusClient>();
  const timeoutMs = (READINESS_CHECK.timeoutSeconds - 1) * 1000;
  return {
    running(certname: string): Promise<boolean> {
      const servername = config.localServerHost ?? certname;
      let client = clients.get(servername);
      if (!client) {
        client = new PuppetServerStatusClient({ baseUrl: `https://127.0.0.1:${config.localServerPort}`, servername, tls: { ca: caPem }, timeoutMs });
        clients.set(servername, client);
      }
      return client.isHealthy();
    },
    close: () => Promise.all([...clients.values()].map((client) => client.close())),
  };
}

/** Aborts at systemd's stop (SIGTERM) or Ctrl-C, so the poll in progress finishes its write first. */
function terminationSignal(): AbortSignal {
  const controller = new AbortController();
  for (const name of ['SIGTERM', 'SIGINT'] as const) process.once(name, () => controller.abort());
  return controller.signal;
}

/**
 * `try-restart` leaves a stopped or absent server alone (first enrollment: the Puppet run installs
 * and starts it). A failure is only logged: the health check that follows catches a dead server.
 */
async function restartLocalServer(config: AgentConfig, run: RunCommand, log: Logger): Promise<void> {
  if (config.localServerService === null) return;
  const result = await run('systemctl', ['try-restart', config.localServerService], { timeoutMs: 300_000 });
  if (result.code === 0) log.info('restarted the local Puppet Server if it was running, so it serves the new certificate', { service: config.localServerService });
  else log.warn('did not restart the local Puppet Server (expected on first enrollment, before the Puppet run installs it)', { service: config.localServerService, code: result.code, stderr: result.stderr.trim() });
}
