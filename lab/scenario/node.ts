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
  /** At a shutdown: what the readiness daemon said about its drain and the agents still connected. */
  drain?: string[];
}

export interface BootAttemptFailure {
  code: number;
  /** The node agent's error line, which says what failed. */
  error: string;
  seconds: number;
}

/**
 * A compile master as the scenario drives it (`MachineNode`: a systemd machine). Each call
 * resolves when the node agent's step it causes has ended.
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
