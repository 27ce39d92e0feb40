import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { PUPPET_BIN, type LabLayout } from './layout';

/**
 * `puppet` for the lab's primary. The lab's primary is this host's Debian Puppet Server with its
 * confdir under the lab directory, so a bare `puppet agent` would run as some other node. This
 * script is the one way the lab runs Puppet on its primary: the orchestrator double runs
 * `<it> agent --test …`, and the SSM endpoint double runs whatever the controller's SSM adapter
 * sends, which names it as its puppetBin (`<it> agent --onetime --no-daemonize …`), as the
 * adapter names /opt/puppetlabs/bin/puppet on a real primary.
 *
 * For `agent` it also waits for the agent lock (up to 10 min) instead of failing at once: the
 * orchestrator double, the SSM double and tests may each start a run of the one primary agent,
 * and Puppet refuses a second concurrent run with exit code 1.
 */
/** Puppet's waitforlock is the retry interval (0, the default, means fail at once). */
const WAIT_FOR_LOCK_RETRY_SECONDS = 2;
const MAX_WAIT_FOR_LOCK_SECONDS = 600;

export function primaryPuppetScript(paths: LabLayout): string {
  const confdir = shellQuote(paths.primaryAgent.confdir);
  return [
    '#!/bin/sh',
    '# Written by the compile-masters lab (lab/primary-puppet.ts): puppet as the lab primary primary.lab.test.',
    'if [ "$1" = agent ]; then',
    '  shift',
    `  exec ${PUPPET_BIN} agent --confdir ${confdir} --color=false --waitforlock ${WAIT_FOR_LOCK_RETRY_SECONDS} --maxwaitforlock ${MAX_WAIT_FOR_LOCK_SECONDS} "$@"`,
    'fi',
    `exec ${PUPPET_BIN} "$@" --confdir ${confdir}`,
    '',
  ].join('\n');
}

/**
 * The script's path, written (by rename, so nobody runs half a file) when missing or different.
 * Every user calls this rather than assuming `up` wrote it: a lab started by older code has none.
 */
export function primaryPuppetBin(paths: LabLayout): string {
  const path = paths.primaryAgent.puppetBin;
  const text = primaryPuppetScript(paths);
  let current: string | undefined;
  try {
    current = readFileSync(path, 'utf8');
  } catch {
    current = undefined;
  }
  if (current !== text) {
    mkdirSync(dirname(path), { recursive: true });
    const staging = `${path}.${randomBytes(4).toString('hex')}`;
    writeFileSync(staging, text, { mode: 0o755 });
    renameSync(staging, path);
  }
  return path;
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}
