import { SSMClient } from '@aws-sdk/client-ssm';
import type { Log } from '../../lambdas/controller/execute';
import { SsmPrimaryRun } from '../../lambdas/controller/primary-run/ssm';
import type { PrimaryRunPort } from '../../lambdas/controller/ports';
import { TIMING } from '../../lambdas/controller/vocabulary';
import { startLabSsm, type LabSsm } from '../aws/lab-ssm';
import { labOrchestratorRun } from '../clients';
import { setOrchestratorFaults, type LabDescription } from '../running-lab';
import type { LabFlavor } from './flavor';

/**
 * How the lab's primary is converged, by flavor, with the real adapter the stack would deploy: PE
 * through the orchestrator double, open source through SSM Run Command against the SSM endpoint
 * double (which runs the adapter's script, and so a real `puppet agent`, for the lab's primary).
 * The faults scenario breaks the start of a run or the run itself through `fault`.
 */
export interface LabPrimaryRunner {
  /** What starts the runs, for the timeline and the fault log. */
  readonly what: string;
  /** The controller's port, built with the controller's logger. */
  port(logger: Log): PrimaryRunPort;
  /**
   * 'start-error': starting a run answers 500; 'stuck': the start (orchestrator) or the run (SSM)
   * hangs until repaired; 'normal' repairs both.
   */
  fault(fault: 'start-error' | 'stuck' | 'normal'): Promise<void>;
  close(): Promise<void>;
}

export async function labPrimaryRunner(flavor: LabFlavor, lab: LabDescription, region: string, accountId: string): Promise<LabPrimaryRunner> {
  switch (flavor) {
    case 'pe':
      return {
        what: 'the orchestrator double',
        port: () => labOrchestratorRun(lab),
        fault: async (fault) => {
          await setOrchestratorFaults({ deploy: fault === 'start-error' ? 'error' : fault === 'stuck' ? 'hang' : 'normal' }, lab);
        },
        close: async () => undefined,
      };
    case 'oss':
      return ssmRunner(await startLabSsm({ lab, region, accountId }));
  }
}

function ssmRunner(ssm: LabSsm): LabPrimaryRunner {
  const client = new SSMClient(ssm.clientConfig());
  return {
    what: 'SSM Run Command (the SSM endpoint double)',
    port: (logger) =>
      new SsmPrimaryRun({
        client,
        // By tag, as a site whose primary may be rebuilt would name it.
        target: { tag: ssm.primary.tag },
        puppetBin: ssm.puppetBin,
        executionTimeoutSeconds: TIMING.runTimeoutMs / 1000,
        logger,
      }),
    fault: async (fault) => {
      ssm.double.setFaults(fault === 'start-error' ? { sendCommand: 'error' } : fault === 'stuck' ? { runs: 'hang' } : { sendCommand: 'normal', runs: 'real' });
    },
    close: async () => {
      client.destroy();
      await ssm.close();
    },
  };
}
