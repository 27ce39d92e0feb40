import type { CompileMasterConfig } from './config';

export const PUPPET_SERVER_PORT = 8140;
export const PCP_BROKER_PORT = 8142;

/** An NLB target group's health check, in the target group's own terms. */
export interface HealthCheckSettings {
  readonly protocol: 'HTTPS' | 'TCP';
  /** HTTPS checks only. */
  readonly path?: string;
  /** 'traffic-port' checks the port the target receives traffic on. */
  readonly port: 'traffic-port' | number;
  readonly intervalSeconds: number;
  readonly timeoutSeconds: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
  /** HTTPS checks only: "200", "200,202" or "200-299". */
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
}

/**
 * The NLB's target groups, one per listener port. The CDK construct builds them from this, and the
 * lab's HAProxy is configured from it too, so the lab drains and health-checks like the stack.
 * No aws-cdk-lib here: the lab imports this module.
 */
export function targetGroupSettings(
  config: Pick<CompileMasterConfig, 'deregistrationDelaySeconds'>,
): [puppetServer: TargetGroupSettings, pcpBroker: TargetGroupSettings] {
  const common = {
    // Agents mid-catalog at the end of the delay get their connection closed and retry through the
    // NLB, instead of hanging on a compile master that is about to be purged.
    connectionTermination: true,
    deregistrationDelaySeconds: config.deregistrationDelaySeconds,
  };
  const timing = { port: 'traffic-port', intervalSeconds: 10, timeoutSeconds: 5, healthyThreshold: 3, unhealthyThreshold: 3 } as const;
  return [
    {
      id: 'PuppetServer',
      port: PUPPET_SERVER_PORT,
      ...common,
      // Puppet Server answers /status/v1/simple without a client certificate (default auth.conf),
      // which catches a wedged JVM that still accepts TCP connections.
      healthCheck: { protocol: 'HTTPS', path: '/status/v1/simple', healthyHttpCodes: '200', ...timing },
    },
    { id: 'PcpBroker', port: PCP_BROKER_PORT, ...common, healthCheck: { protocol: 'TCP', ...timing } },
  ];
}
