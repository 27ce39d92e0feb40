import type { Log } from '../execute';
import type { PrimaryRunPort, PrimaryRunState } from '../ports';

/** The run id of a run that never happens; it matches RUN_ID_PATTERN like any runner's. */
export const NO_RUN_ID = 'none';

/**
 * For sites whose PuppetDB allow-list and auth rules admit the tier by role (pp_role), so the
 * primary has nothing to learn when a compile master comes or goes. The planner's flow stays the
 * same: a run "starts" and has finished by the next look.
 */
export class NoPrimaryRun implements PrimaryRunPort {
  constructor(private readonly logger: Pick<Log, 'info'>) {}

  async start(_description: string): Promise<string> {
    // Said where a run would start, so once per pass at most.
    this.logger.info("No run of the primary (PRIMARY_RUN=none): the site's PuppetDB allow-list and auth rules admit the tier by role");
    return NO_RUN_ID;
  }

  async state(_runId: string): Promise<PrimaryRunState> {
    return 'finished';
  }
}
