import type { JobState } from '../../../lib/puppet/orchestrator';
import { OrchestratorClient } from '../../../lib/puppet/orchestrator';
import type { ClientBundle, PrimaryRunPort, PrimaryRunState, SecretsPort } from '../ports';

export interface OrchestratorSettings {
  hostname: string;
  port: number;
  /** The Puppet environment the primary's run deploys. */
  environment: string;
}

/** Every orchestrator job state, as the planner sees it: a job stopped by hand will not converge anything either. */
const RUN_STATE: Readonly<Record<JobState, PrimaryRunState>> = {
  new: 'running',
  ready: 'running',
  running: 'running',
  stopping: 'running',
  stopped: 'failed',
  finished: 'finished',
  failed: 'failed',
};

/** Orchestrator jobs are named by their number; any other id was never one of its jobs. */
const JOB_NUMBER = /^\d+$/;

/**
 * PE's orchestrator runs Puppet on the primary (command/deploy to the primary's certname), with
 * the RBAC token from Secrets Manager. Only this runner reads the token; the client is rebuilt
 * when the token or the pinned CA is rotated (the secrets port answers the same objects until then).
 */
export class OrchestratorPrimaryRun implements PrimaryRunPort {
  private current: { bundle: ClientBundle; token: string; client: OrchestratorClient } | undefined;

  constructor(
    private readonly options: {
      secrets: Pick<SecretsPort, 'clientBundle' | 'rbacToken'>;
      orchestrator: OrchestratorSettings;
      primaryCertname: string;
    },
  ) {}

  async start(description: string): Promise<string> {
    const { orchestrator, primaryCertname } = this.options;
    const job = await (await this.client()).deploy({ environment: orchestrator.environment, nodes: [primaryCertname], description });
    return job.name;
  }

  async state(runId: string): Promise<PrimaryRunState | undefined> {
    if (!JOB_NUMBER.test(runId)) return undefined;
    const job = await (await this.client()).getJob(runId);
    return job && RUN_STATE[job.state];
  }

  private async client(): Promise<OrchestratorClient> {
    const [bundle, token] = await Promise.all([this.options.secrets.clientBundle(), this.options.secrets.rbacToken()]);
    const current = this.current;
    if (current?.bundle === bundle && current.token === token) return current.client;
    const { hostname, port } = this.options.orchestrator;
    const client = new OrchestratorClient({ baseUrl: `https://${hostname}:${port}`, tls: { ca: bundle.ca }, token });
    this.current = { bundle, token, client };
    // The old connections are idle between passes (one pass at a time).
    if (current) await current.client.close();
    return client;
  }
}
