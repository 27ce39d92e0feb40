import type { ClientBundle } from '../lambdas/controller/ports';
import { CaClient } from '../lib/puppet/ca';
import { probeDuplicateCerts } from '../lib/puppet/ca-probe';
import { OrchestratorClient } from '../lib/puppet/orchestrator';
import { PuppetDbClient } from '../lib/puppet/puppetdb';
import type { EndpointOptions } from '../lib/puppet/http';
import { probeAltNames } from './alt-names-probe';
import { failed, isUnreachable, renderChecks, type Check } from './checks';
import { verifyBundle, verifyToken } from './credentials';
import { checkControllerMayRun, checkSsmManaged, CONTROLLER_MAY_RUN, primaryRunCheck, PRIMARY_RUN, SSM_MANAGED } from './primary-run-checks';
import type { CliDeps } from './deps';
import type { Target } from './target';

/** An operator is waiting: one quick retry, not the controller's patient backoff. */
const QUICK: Pick<EndpointOptions, 'timeoutMs' | 'retry'> = { timeoutMs: 10_000, retry: { attempts: 2, baseDelayMs: 200, maxDelayMs: 1_000 } };

/**
 * Checks a tier end to end as the controller will use it: its secrets, then each Puppet service
 * with the pinned CA and the lifecycle certificate, then what runs the primary: the orchestrator
 * with the token, or SSM's view of the primary's instance(s), or nothing. Every check runs that
 * can; each failure carries its fix.
 */
export async function doctor(target: Target, deps: Pick<CliDeps, 'now'>): Promise<Check[]> {
  const withOrchestrator = target.primaryRun.mode === 'orchestrator';
  const checks: Check[] = [];
  // SSM needs no Puppet credentials: asked alongside, reported after the Puppet services.
  const ssmChecked = target.primaryRun.mode === 'ssm' ? ssmChecks(target) : undefined;
  const primaryRunChecks = async () => [primaryRunCheck(target.primaryRun), ...(ssmChecked ? await ssmChecked : [])];
  const bundle = await checkBundle(target, deps.now(), checks);
  // Only the orchestrator takes a token: without it there is none to read or check.
  const token = withOrchestrator ? await checkToken(target, checks) : undefined;
  if (!bundle) {
    checks.push(...['CA', 'PuppetDB', 'alt names', ...(withOrchestrator ? ['orchestrator'] : [])].map((name): Check => ({ name, status: 'skipped', detail: 'needs a readable client certificate bundle' })));
    return [...checks, ...(await primaryRunChecks())];
  }
  const { endpoints } = target;
  const tls = { ca: bundle.ca, cert: bundle.cert, key: bundle.key };
  const ca = new CaClient({ ...QUICK, baseUrl: endpoints.ca, tls });
  const puppetdb = new PuppetDbClient({ ...QUICK, baseUrl: endpoints.puppetdb, tls });
  const orchestrator = token === undefined || endpoints.orchestrator === undefined ? undefined : new OrchestratorClient({ ...QUICK, baseUrl: endpoints.orchestrator, tls: { ca: bundle.ca }, token });
  try {
    const [caAllowed] = await Promise.all([
      checkCa(ca, endpoints.ca, checks),
      checkPuppetDb(puppetdb, endpoints.puppetdb, checks),
      withOrchestrator ? checkOrchestrator(orchestrator, endpoints.orchestrator, checks) : undefined,
    ]);
    // Both probes delete their CSR, which takes the lifecycle certificate's access.
    checks.push(
      ...(caAllowed
        ? await Promise.all([checkAltNames(ca), checkDuplicateCerts(ca)])
        : ['CA signs alt names', DUPLICATES].map((name): Check => ({ name, status: 'skipped', detail: 'needs the CA to allow the lifecycle certificate' }))),
    );
  } finally {
    await Promise.all([ca.close(), puppetdb.close(), orchestrator?.close()]);
  }
  return order([...checks, ...(await primaryRunChecks())]);
}

export function reportDoctor(checks: readonly Check[], deps: Pick<CliDeps, 'write' | 'color'>): number {
  deps.write(renderChecks(checks, deps.color));
  return checks.some((check) => check.status === 'failed') ? 1 : 0;
}

async function checkBundle(target: Target, now: Date, checks: Check[]): Promise<ClientBundle | undefined> {
  const name = 'client certificate';
  let bundle: ClientBundle;
  try {
    bundle = await target.secrets.clientBundle();
  } catch (error) {
    checks.push(failed(name, error, target.secretsFix));
    return undefined;
  }
  try {
    const summary = await verifyBundle(bundle, `the bundle from ${target.secretsSource}`, now);
    checks.push({ name, status: 'ok', detail: `CN=${summary.certname ?? '?'} chains to the CA, key matches, valid until ${summary.notAfter.toISOString()}` });
  } catch (error) {
    checks.push(failed(name, error));
  }
  // The servers are asked even with a bundle that failed here: one run shows every problem.
  return bundle;
}

async function checkToken(target: Target, checks: Check[]): Promise<string | undefined> {
  const name = 'RBAC token';
  try {
    const token = verifyToken(await target.secrets.rbacToken(), `the token from ${target.secretsSource}`);
    checks.push({ name, status: 'ok', detail: 'present, one word' });
    return token;
  } catch (error) {
    checks.push(failed(name, error, target.secretsFix));
    return undefined;
  }
}

/** Reachability first (the CRL needs no permission), then the lifecycle certificate's access. */
async function checkCa(ca: CaClient, url: string, checks: Check[]): Promise<boolean> {
  try {
    await ca.getCrl();
    checks.push({ name: 'CA reachable', status: 'ok', detail: `${url}, TLS verified with the pinned CA` });
  } catch (error) {
    checks.push(failed('CA reachable', error));
    return false;
  }
  try {
    const pending = await ca.listStatuses('requested');
    checks.push({ name: 'CA allows the lifecycle certificate', status: 'ok', detail: `certificate_statuses answered (${pending.length} pending request(s))` });
    return true;
  } catch (error) {
    checks.push(failed('CA allows the lifecycle certificate', error));
    return false;
  }
}

async function checkPuppetDb(puppetdb: PuppetDbClient, url: string, checks: Check[]): Promise<void> {
  try {
    await puppetdb.queryNodes(['=', 'certname', 'compile-masters-doctor.invalid']);
    checks.push({ name: 'PuppetDB reachable', status: 'ok', detail: `${url}, TLS verified with the pinned CA` });
    checks.push({ name: 'PuppetDB allows the lifecycle certificate', status: 'ok', detail: 'a node query answered' });
  } catch (error) {
    if (isUnreachable(error)) {
      checks.push(failed('PuppetDB reachable', error));
      return;
    }
    checks.push({ name: 'PuppetDB reachable', status: 'ok', detail: `${url}, TLS verified with the pinned CA` });
    checks.push(failed('PuppetDB allows the lifecycle certificate', error));
  }
}

/** GET of a job that does not exist: harmless, and only a valid token gets past authentication to the 404. */
async function checkOrchestrator(orchestrator: OrchestratorClient | undefined, url: string | undefined, checks: Check[]): Promise<void> {
  const name = 'orchestrator accepts the token';
  if (!orchestrator) {
    checks.push({ name, status: 'skipped', detail: 'needs a valid RBAC token' });
    return;
  }
  try {
    await orchestrator.getJob('0');
  } catch (error) {
    checks.push(isUnreachable(error) ? failed('orchestrator reachable', error) : failed(name, error));
    return;
  }
  checks.push({ name, status: 'ok', detail: `${url ?? '?'} accepted it (jobs API)` });
}

async function checkAltNames(ca: CaClient): Promise<Check> {
  const name = 'CA signs alt names';
  try {
    const verdict = await probeAltNames(ca);
    if (verdict.allowed) return { name, status: 'ok', detail: 'allow-subject-alt-names is on (probed with a CSR the CA cannot sign, then deleted)' };
    return {
      name,
      status: 'failed',
      detail: verdict.detail,
      fix: "set 'allow-subject-alt-names: true' in the certificate-authority section of ca.conf on the primary and restart puppetserver (npx compile-masters primary-setup shows how)",
    };
  } catch (error) {
    return failed(name, error);
  }
}

const DUPLICATES = 'CA refuses duplicate CSRs';

/**
 * With allow-duplicate-certs on, anyone who reaches port 8140 can queue a CSR for a compile
 * master's certname next to its signed certificate (or replace its pending one), and the
 * controller refuses to sign anything. Puppet Server reads the setting from puppet.conf
 * (allow_duplicate_certs) and from ca.conf, whose value wins.
 */
async function checkDuplicateCerts(ca: CaClient): Promise<Check> {
  try {
    if (!(await probeDuplicateCerts(ca, 'doctor-probe'))) {
      return { name: DUPLICATES, status: 'ok', detail: 'allow-duplicate-certs is off (a second CSR for a throwaway certname was refused; the CSR was deleted)' };
    }
    return {
      name: DUPLICATES,
      status: 'failed',
      detail: "allow-duplicate-certs is on: the CA accepted a second CSR for the same certname, so anyone who reaches port 8140 can queue one for a compile master's certname; the controller signs nothing while it is on",
      fix: "set 'allow_duplicate_certs = false' in the [server] section of puppet.conf and 'allow-duplicate-certs: false' in the certificate-authority section of ca.conf (it wins over puppet.conf) on the primary, then restart puppetserver",
    };
  } catch (error) {
    return failed(DUPLICATES, error);
  }
}

const ORDER = [
  'client certificate',
  'RBAC token',
  'CA reachable',
  'CA allows the lifecycle certificate',
  'CA signs alt names',
  DUPLICATES,
  'PuppetDB reachable',
  'PuppetDB allows the lifecycle certificate',
  PRIMARY_RUN,
  'orchestrator reachable',
  'orchestrator accepts the token',
  SSM_MANAGED,
  CONTROLLER_MAY_RUN,
];

/** Checks finish in any order; the report reads top-down like the setup steps. */
function order(checks: Check[]): Check[] {
  return [...checks].sort((a, b) => ORDER.indexOf(a.name) - ORDER.indexOf(b.name));
}

/** The primary online in SSM, then whether the controller's role may send it the command. */
async function ssmChecks(target: Target): Promise<Check[]> {
  const { online, ...managed } = await checkSsmManaged(target.aws?.ssm, target.primaryRun.instances);
  const region = target.aws ? await target.aws.ssm.config.region() : undefined;
  return [managed, await checkControllerMayRun(target.aws?.iam, target.stack?.outputs.ControllerRoleArn, target.primaryRun.instances, online, region)];
}
