import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Ec2Instance } from '../../lambdas/controller/model';
import { DRAIN } from '../../node-agent/src/readiness';
import { DEBIAN_PUPPET } from '../machines/share';
import type { Machine } from '../machines/machine';
import { run } from '../processes';
import type { MachineTier } from './machine-tier';
import type { AgentRun, BootAttemptFailure, TierNode } from './node';

const AGENT_UNIT = 'compile-master-agent.service';
const READINESS_UNIT = 'compile-master-readiness.service';
/** Enrollment, a Puppet run that installs and starts Puppet Server, its start-up: minutes on 2 cores. */
const BOOT_STEP_TIMEOUT_MS = 20 * 60_000;
/**
 * The unit restarts a failed boot step without limit; the lab follows two restarts, so a
 * transient failure (a Puppet run that lost a race on a loaded 2-core machine) is survived and
 * reported, and a broken boot still fails the run.
 */
const MAX_BOOT_RESTARTS = 2;

/**
 * A compile master as a real Debian 12 machine (systemd-nspawn): it boots the way an instance
 * does (user data runs the share's bootstrap.sh, which installs and starts the node agent's units),
 * its node agent runs as `compile-master-agent.service` under the shipped hardening, its Puppet
 * Server is configured by a real `puppet agent -t` against the primary, and what the scenario
 * reads of it (the node agent's lines, its certificate) comes from the machine itself.
 */
export class MachineNode implements TierNode {
  private constructor(
    readonly label: string,
    readonly instance: Ec2Instance & { privateDnsName: string },
    readonly machine: Machine,
    private readonly tier: MachineTier,
  ) {}

  static async create(label: string, instance: Ec2Instance, tier: MachineTier): Promise<MachineNode> {
    const certname = instance.privateDnsName;
    if (!certname) throw new Error(`${instance.instanceId} has no private DNS name`);
    const named = { ...instance, privateDnsName: certname };
    return new MachineNode(label, named, await tier.machine(named), tier);
  }

  get certname(): string {
    return this.instance.privateDnsName;
  }

  get instanceId(): string {
    return this.instance.instanceId;
  }

  async start(): Promise<AgentRun> {
    const started = Date.now();
    this.machine.boot();
    return this.bootStep(started);
  }

  async reboot(): Promise<AgentRun[]> {
    const started = Date.now();
    const boots = this.machine.boots;
    await this.machine.exec(['systemctl', '--no-block', 'reboot']);
    while (this.machine.boots === boots) {
      if (!this.machine.running && this.machine.boots === boots && Date.now() - started > 5_000) throw new Error(`${this.label} halted instead of rebooting`);
      if (Date.now() - started > 120_000) throw new Error(`${this.label} did not reboot within 120 s`);
      await sleep(100);
    }
    const down = (Date.now() - started) / 1000;
    const up = await this.bootStep(Date.now());
    return [await this.shutdownStep(started, down), up];
  }

  async stop(): Promise<AgentRun> {
    const started = Date.now();
    await this.machine.poweroff();
    return this.shutdownStep(started, (Date.now() - started) / 1000);
  }

  async terminate(): Promise<AgentRun> {
    const started = Date.now();
    if (this.machine.running) await this.machine.poweroff();
    this.tier.forget(this.instanceId);
    return this.shutdownStep(started, (Date.now() - started) / 1000);
  }

  localCertificate(): Promise<string | undefined> {
    return readFile(join(this.machine.paths.root, DEBIAN_PUPPET.ssldir, 'certs', `${this.certname}.pem`), 'utf8').catch(() => undefined);
  }

  async destroy(): Promise<void> {
    this.tier.forget(this.instanceId);
    await this.machine.destroy();
  }

  /**
   * Until the unit's boot step has succeeded (active) or failed for good. A failed attempt that
   * systemd restarts (Restart=on-failure, RestartSec) is followed into its next attempt, as an
   * instance would, up to MAX_BOOT_RESTARTS; each is reported with the node agent's error line.
   */
  private async bootStep(started: number): Promise<AgentRun> {
    const deadline = Date.now() + BOOT_STEP_TIMEOUT_MS;
    const restarts: BootAttemptFailure[] = [];
    let attemptStarted = started;
    for (;;) {
      const state = await this.unitState().catch(() => undefined);
      if (state?.ActiveState === 'active') {
        const lines = (await this.agentLines(attemptStarted)).filter((line) => !('verdict' in line));
        return { code: 0, lines, seconds: (Date.now() - started) / 1000, restarts };
      }
      if (state?.ActiveState === 'failed' || state?.SubState === 'auto-restart') {
        const code = Number(state.ExecMainStatus ?? 1) || 1;
        const lines = await this.failedAttemptLines(attemptStarted);
        const error = String(lines.findLast((line) => line.level === 'error')?.message ?? `no error line in the journal (console: ${this.machine.paths.consoleLog})`);
        if (state.SubState !== 'auto-restart' || restarts.length >= MAX_BOOT_RESTARTS) {
          return { code, lines, seconds: (Date.now() - started) / 1000, restarts };
        }
        restarts.push({ code, error, seconds: (Date.now() - attemptStarted) / 1000 });
        await this.untilRestarted(deadline);
        attemptStarted = Date.now();
        continue;
      }
      if (!this.machine.running && this.machine.exits.length > 0 && this.machine.boots > 0 && Date.now() - started > 5_000) {
        throw new Error(`${this.label} is off before its node agent's boot step ended (console: ${this.machine.paths.consoleLog})`);
      }
      if (Date.now() > deadline) throw new Error(`${this.label}: the node agent's boot step did not end within ${BOOT_STEP_TIMEOUT_MS / 60_000} min (${JSON.stringify(state)})`);
      await sleep(1_000);
    }
  }

  /** A failed attempt's lines, once its error line has reached the journal (journald may lag the unit's state). */
  private async failedAttemptLines(since: number): Promise<Array<Record<string, unknown>>> {
    for (let tries = 0; ; tries += 1) {
      const lines = (await this.agentLines(since)).filter((line) => !('verdict' in line));
      if (tries >= 10 || lines.some((line) => line.level === 'error')) return lines;
      await sleep(500);
    }
  }

  private async untilRestarted(deadline: number): Promise<void> {
    while ((await this.unitState().catch(() => undefined))?.SubState === 'auto-restart') {
      if (Date.now() > deadline) throw new Error(`${this.label}: systemd did not restart the node agent's boot step before the deadline`);
      await sleep(1_000);
    }
  }

  private async unitState(): Promise<Record<string, string>> {
    const { stdout } = await this.machine.exec(['systemctl', 'show', AGENT_UNIT, '-p', 'ActiveState', '-p', 'SubState', '-p', 'ExecMainStatus'], { timeoutMs: 10_000 });
    return Object.fromEntries(stdout.trim().split('\n').map((line) => line.split('=', 2) as [string, string]));
  }

  /** The shutdown step (ExecStop) begun after `since`: its lines carry the verdict. */
  private async shutdownStep(since: number, seconds: number): Promise<AgentRun> {
    const all = await this.agentLines(since, true);
    const pid = all.find((line) => 'verdict' in line)?._pid;
    const lines = pid === undefined ? [] : all.filter((line) => line._pid === pid);
    const drain = (await this.agentLines(since, false, READINESS_UNIT)).filter((line) => line.phase === DRAIN.phase).map((line) => String(line.message));
    return { code: pid === undefined ? 1 : 0, lines: lines.map(({ _pid, ...line }) => (void _pid, line)), seconds, drain };
  }

  /**
   * The node agent's JSON lines since `since` (ms), from the machine's own journal: by time, not
   * by boot, since a reboot is read before the new boot has logged anything of its own.
   */
  private async agentLines(since: number, withPid = false, unit = AGENT_UNIT): Promise<Array<Record<string, unknown>>> {
    const args = ['--no-pager', '--quiet', '-o', 'json', `--since=@${Math.floor(since / 1000) - 1}`, '-u', unit];
    const text = this.machine.running ? (await this.machine.exec(['journalctl', ...args], { timeoutMs: 30_000 })).stdout : run('journalctl', [`--root=${this.machine.paths.root}`, ...args], { maxBuffer: 64 * 2 ** 20 });
    const lines: Array<Record<string, unknown>> = [];
    for (const entry of text.split('\n')) {
      if (!entry.trim()) continue;
      const record = JSON.parse(entry) as { MESSAGE?: unknown; _PID?: string };
      if (typeof record.MESSAGE !== 'string' || !record.MESSAGE.startsWith('{')) continue;
      try {
        const line = JSON.parse(record.MESSAGE) as Record<string, unknown>;
        lines.push(withPid ? { ...line, _pid: record._PID } : line);
      } catch {
        // systemd's own lines about the unit
      }
    }
    return lines;
  }
}
