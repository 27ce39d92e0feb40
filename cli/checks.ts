import { CompileMastersError, PuppetTlsError, PuppetUnavailableError } from '../lib/errors';

/** One line of a doctor report: what was checked, what was seen, and how to fix a failure. */
export interface Check {
  name: string;
  status: 'ok' | 'failed' | 'skipped';
  detail: string;
  fix?: string;
}

/** Splits a project error into what happened and the hint it carries (the fix). */
export function explain(error: unknown): { detail: string; fix?: string } {
  if (error instanceof CompileMastersError && error.hint) {
    return { detail: error.summary, fix: error.hint };
  }
  return { detail: error instanceof Error ? error.message : String(error) };
}

export function failed(name: string, error: unknown, fix?: string): Check {
  const explained = explain(error);
  return { name, status: 'failed', detail: explained.detail, fix: fix ?? explained.fix };
}

export function isUnreachable(error: unknown): boolean {
  return error instanceof PuppetUnavailableError || error instanceof PuppetTlsError;
}

const MARK = { ok: 'ok  ', failed: 'FAIL', skipped: 'skip' } as const;

export function renderChecks(checks: readonly Check[], color: boolean): string {
  const paint = (status: Check['status'], text: string) => {
    if (!color || status === 'skipped') return text;
    return `\u001b[${status === 'ok' ? 32 : 31}m${text}\u001b[0m`;
  };
  const lines = checks.flatMap((check) => [
    `${paint(check.status, MARK[check.status])}  ${check.name}: ${check.detail}`,
    ...(check.fix ? [`      fix: ${check.fix}`] : []),
  ]);
  const failures = checks.filter((check) => check.status === 'failed').length;
  lines.push('', failures === 0 ? 'All checks passed.' : `${failures} check(s) failed.`);
  return `${lines.join('\n')}\n`;
}
