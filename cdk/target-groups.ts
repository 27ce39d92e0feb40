import { FLAVOR } from '../lib/flavor';
import { READINESS_CHECK } from '../lib/readiness-check';
import type { CompileMasterConfig } from './config';

export const PUPPET_SERVER_PORT = 8140;
export const PCP_BROKER_PORT = 8142;

/** An NLB target group's health check, in the target group's own terms. */
export interface HealthCheckSettings {
  readonly protocol: 'HTTP' | 'HTTPS' | 'TCP';
  /** HTTP and HTTPS checks only. */
  readonly path?: string;
  /** 'traffic-port' checks the port the target receives traffic on. */
  readonly port: 'traffic-port' | number;
  readonly intervalSeconds: number;
  readonly timeoutSeconds: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
  /** HTTP and HTTPS checks only: "200", "200,202" or "200-299". */
  readonly healthyHttpCodes?: string;
}

export interface TargetGroupSettings {
  /** Construct id prefix in the stack (PuppetServerTargets, PcpBrokerListener, ...). */
  readonly id: 'PuppetServer' | 'PcpBroker';
  /** Listener and target port: TCP pass-through keeps them equal. */
  readonly port: number;
  readonly healthCheck: HealthCheckSettings;
  readonly deregistrationDelaySeconds: number;
  /** Close the connections still open when the deregistration delay ends. */
  readonly connectionTermination: boolean;
  /**
   * How long a target that turns unhealthy (a compile master draining before a reboot) keeps its
   * established connections, where an NLB would otherwise reset them at once.
   */
  readonly unhealthyDrainingSeconds: number;
}

/**
 * The NLB's target groups that exist for this flavor, one per listener port, Puppet Server's first:
 * 8142 only where a PCP broker listens (PE); elsewhere its health check would fail every node.
 * The CDK construct builds them from this, and the lab's HAProxy is configured from it too, so
 * the lab drains and health-checks like the stack. No aws-cdk-lib here: the lab imports this module.
 */
export function targetGroupSettings(
  config: Pick<CompileMasterConfig, 'deregistrationDelaySeconds' | 'flavor'>,
): [puppetServer: TargetGroupSettings, ...others: TargetGroupSettings[]] {
  const common = {
    // Agents mid-catalog at the end of the delay get their connection closed and retry through the
    // NLB, instead of hanging on a compile master that is about to be purged.
    connectionTermination: true,
    deregistrationDelaySeconds: config.deregistrationDelaySeconds,
    // As long as a deregistration keeps them: the agents of a draining node finish their catalogs.
    unhealthyDrainingSeconds: config.deregistrationDelaySeconds,
    // Every port asks the node agent's readiness daemon (plain HTTP), which fails the check while
    // the node enrolls, when its Puppet Server does not answer "running" (a wedged JVM still
    // accepts TCP), and for a drain before Puppet Server stops at a reboot
    // (node-agent/src/readiness.ts). Its settings are also what that drain is computed from.
    healthCheck: {
      protocol: 'HTTP',
      port: READINESS_CHECK.port,
      path: READINESS_CHECK.path,
      healthyHttpCodes: '200',
      intervalSeconds: READINESS_CHECK.intervalSeconds,
      timeoutSeconds: READINESS_CHECK.timeoutSeconds,
      healthyThreshold: READINESS_CHECK.healthyThresholdCount,
      unhealthyThreshold: READINESS_CHECK.unhealthyThresholdCount,
    },
  } as const;
  const puppetServer: TargetGroupSettings = { id: 'PuppetServer', port: PUPPET_SERVER_PORT, ...common };
  if (!FLAVOR[config.flavor].pcpBroker) return [puppetServer];
  return [puppetServer, { id: 'PcpBroker', port: PCP_BROKER_PORT, ...common }];
}
