import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CompileMastersError } from '../../lib/errors';
import type { AgentConfig } from './config';
import type { Logger } from './log';

export interface CommandResult {
  /** null when the command was killed (timeout). */
  code: number | null;
  stdout: string;
  stderr: string;
}

export type RunCommand = (file: string, args: readonly string[], options: { timeoutMs: number }) => Promise<CommandResult>;

/** Runs a program without a shell; only a program that cannot be started is an exception. */
export const execCommand: RunCommand = (file, args, { timeoutMs }) =>
  new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (!error) return resolve({ code: 0, stdout, stderr });
      // A string code (ENOENT, maxBuffer) means the program never ran properly.
      if (typeof error.code === 'string') return reject(error);
      resolve({ code: error.code ?? null, stdout, stderr });
    });
  });

export interface PuppetIdentity {
  certname: string;
  instanceId: string;
  region: string;
}

/** The CSR's trusted-fact requests: the instance's own facts first, then the configured role. */
export function extensionRequests(config: Pick<AgentConfig, 'extensions'>, identity: PuppetIdentity): Record<string, string> {
  return { pp_instance_id: identity.instanceId, pp_region: identity.region, ...config.extensions };
}

/**
 * csr_attributes.yaml. Values are written as JSON strings, which YAML reads as double-quoted
 * scalars, so no value can break out of its line whatever it contains.
 */
export function csrAttributesYaml(requests: Record<string, string>): string {
  const lines = Object.entries(requests).map(([name, value]) => `  ${name}: ${JSON.stringify(value)}`);
  return ['---', '# Written by compile-master-agent before each enrollment; changes are overwritten.', 'extension_requests:', ...lines, ''].join('\n');
}

export function dnsAltNames(config: Pick<AgentConfig, 'dnsAltNames'>, certname: string): string[] {
  return [...new Set([certname, ...config.dnsAltNames])];
}

/**
 * Settings persisted in puppet.conf [main], so that later Puppet runs (the puppet service, the
 * compile master's own runs) keep using this identity and this primary.
 */
export function puppetConfSettings(config: AgentConfig, certname: string): [string, string][] {
  return [
    ['certname', certname],
    ['server', config.primaryServer],
    ['ca_port', String(config.caPort)],
    ['dns_alt_names', dnsAltNames(config, certname).join(',')],
  ];
}

export const PUPPET_RUN_UNIT = 'compile-master-agent-puppet-run';

/** Exit codes of `puppet agent --test` (--detailed-exitcodes) that mean the run succeeded. */
const RUN_SUCCESS: Record<number, 'no changes' | 'changes applied'> = { 0: 'no changes', 2: 'changes applied' };

/** The real `puppet` program, with the node's confdir and ssldir on every call. */
export class PuppetCli {
  constructor(
    private readonly config: AgentConfig,
    private readonly run: RunCommand,
    private readonly log: Logger,
  ) {}

  /** Writes csr_attributes.yaml and the puppet.conf settings a CSR is generated from. */
  async configure(identity: PuppetIdentity): Promise<void> {
    await writeFile(join(this.config.confdir, 'csr_attributes.yaml'), csrAttributesYaml(extensionRequests(this.config, identity)), { mode: 0o640 });
    for (const [name, value] of puppetConfSettings(this.config, identity.certname)) {
      await this.puppet(`set ${name} in puppet.conf`, ['config', 'set', '--section', 'main', name, value]);
    }
  }

  /**
   * Makes the CSR (with csr_attributes.yaml and the alt names) from the key the agent put in the
   * privatekeydir, which Puppet loads instead of generating one, and submits it; exit 0 means the
   * CA accepted it. Without `--http_keepalive_timeout 0` this takes ~30 s longer on
   * Puppet 7: its next request reuses the connection of the CSR upload, which Puppet Server only
   * answers after its idle timeout (measured: 33.7 s → 2.8 s). `ssl bootstrap --waitforcert 0`
   * stalls the same way and exits 1 for "not signed yet", which hides real failures.
   */
  async submitCsr(): Promise<void> {
    await this.puppet('submit the CSR', ['ssl', 'submit_request', '--http_keepalive_timeout', '0']);
  }

  /** Installs the signed certificate; Puppet checks it against our key and the pinned CA. */
  async downloadCert(): Promise<void> {
    await this.puppet('download the signed certificate', ['ssl', 'download_cert']);
  }

  async agentRun(): Promise<'no changes' | 'changes applied'> {
    const args = ['agent', '--test', ...this.common()];
    const timeoutMs = this.config.timeouts.puppetRunSeconds * 1000;
    const [file, argv] = this.config.isolatePuppetRun
      ? ['systemd-run', [...systemdRunArgs(this.config.timeouts.puppetRunSeconds), this.config.puppetBin, ...args]]
      : [this.config.puppetBin, args];
    const started = Date.now();
    const result = await this.run(file, argv, { timeoutMs: timeoutMs + 30_000 });
    const outcome = result.code === null ? undefined : RUN_SUCCESS[result.code];
    if (!outcome) throw commandFailed('puppet agent --test', result, 'the run must succeed before this node can serve catalogs; read the output above, fix the cause on the primary (classification, code) and restart compile-master-agent');
    this.log.info('puppet run finished', { outcome, seconds: Math.round((Date.now() - started) / 1000) });
    return outcome;
  }

  private common(): string[] {
    return ['--confdir', this.config.confdir, '--ssldir', this.config.ssldir];
  }

  private async puppet(what: string, args: string[]): Promise<void> {
    const result = await this.run(this.config.puppetBin, [...args, ...this.common()], { timeoutMs: this.config.timeouts.puppetRunSeconds * 1000 });
    if (result.code !== 0) throw commandFailed(`puppet ${args.slice(0, 2).join(' ')} (${what})`, result);
  }
}

/**
 * A transient unit outside this unit's sandbox, bounded by systemd itself: killing systemd-run on
 * our own timeout would not stop the run it started.
 */
export function systemdRunArgs(timeoutSeconds: number): string[] {
  return ['--wait', '--pipe', '--collect', '--quiet', '--service-type=exec', `--unit=${PUPPET_RUN_UNIT}`, `--property=RuntimeMaxSec=${timeoutSeconds}`, '--'];
}

const TAIL = 2_000;

export function commandFailed(what: string, result: CommandResult, hint?: string): CompileMastersError {
  const status = result.code === null ? 'was killed (timeout)' : `exited ${result.code}`;
  const output = `${result.stdout}\n${result.stderr}`.trim();
  const tail = output.length > TAIL ? `…${output.slice(-TAIL)}` : output;
  return new CompileMastersError(`${what} ${status}${tail ? `; output:\n${tail}` : ''}`, { hint });
}
