import type { SSMClient } from '@aws-sdk/client-ssm';
import type { PrimaryRunConfig } from '../config';
import type { Log } from '../execute';
import { TIMING } from '../vocabulary';
import type { PrimaryRunPort, SecretsPort } from '../ports';
import { NoPrimaryRun } from './none';
import { OrchestratorPrimaryRun } from './orchestrator';
import { SsmPrimaryRun } from './ssm';

export interface PrimaryRunDependencies {
  secrets: SecretsPort;
  logger: Pick<Log, 'info' | 'warn'>;
  primaryCertname: string;
  /** Called only for the SSM runner: no other runner needs an SSM client. */
  ssmClient: () => SSMClient;
}

/** The runner the configuration names, with only what it needs. */
export function createPrimaryRun(config: PrimaryRunConfig, deps: PrimaryRunDependencies): PrimaryRunPort {
  switch (config.mode) {
    case 'orchestrator':
      return new OrchestratorPrimaryRun({ secrets: deps.secrets, orchestrator: config.orchestrator, primaryCertname: deps.primaryCertname });
    case 'ssm':
      return new SsmPrimaryRun({
        client: deps.ssmClient(),
        target: config.target,
        puppetBin: config.puppetBin,
        // SSM stops the agent run when the controller stops waiting for it.
        executionTimeoutSeconds: TIMING.runTimeoutMs / 1000,
        logger: deps.logger,
      });
    case 'none':
      return new NoPrimaryRun(deps.logger);
  }
}
