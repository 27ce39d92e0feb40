import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AUTO_SCALING_CALLS } from '../../lambdas/controller/aws/auto-scaling';
import { EC2_CALLS } from '../../lambdas/controller/aws/ec2';
import { LEASE_CALLS } from '../../lambdas/controller/aws/lease';
import { REGISTRY_CALLS } from '../../lambdas/controller/aws/registry';
import { RBAC_TOKEN_CALLS, SECRETS_CALLS } from '../../lambdas/controller/aws/secrets';
import { QUEUE_CALLS } from '../../lambdas/controller/aws/sqs';
import { SSM_CALLS } from '../../lambdas/controller/primary-run/ssm';
import type { AwsCall } from '../../lib/aws-calls';
import { NODE_AGENT_CALLS } from '../../node-agent/src/notify';

/*
 * The lists of AWS calls that the IAM simulation suite proves must not drift from the code: each
 * module that sends SDK commands lists exactly the operations it imports, and no other shipped
 * module of the Lambdas or the node agent sends any.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Every module that sends AWS requests with the component's credentials, with its list. */
const LISTED: Record<string, readonly AwsCall[]> = {
  'lambdas/controller/aws/auto-scaling.ts': AUTO_SCALING_CALLS,
  'lambdas/controller/aws/ec2.ts': EC2_CALLS,
  'lambdas/controller/aws/lease.ts': LEASE_CALLS,
  'lambdas/controller/aws/registry.ts': REGISTRY_CALLS,
  'lambdas/controller/aws/sqs.ts': QUEUE_CALLS,
  'lambdas/controller/aws/secrets.ts': [...SECRETS_CALLS, ...RBAC_TOKEN_CALLS],
  'lambdas/controller/primary-run/ssm.ts': SSM_CALLS,
  'node-agent/src/notify.ts': NODE_AGENT_CALLS,
};

/** The operations a module can send: the SDK commands and paginators it imports as values. */
async function importedOperations(path: string): Promise<string[]> {
  const source = readFileSync(join(ROOT, path), 'utf8');
  const operations: string[] = [];
  for (const [, typeOnly, names, from] of source.matchAll(/import\s+(type\s+)?\{([^}]*)\}\s*from\s*'(@aws-sdk\/[^']+)'/g)) {
    if (typeOnly) continue;
    for (const name of names!.split(',').map((entry) => entry.trim().split(/\s+as\s+/)[0]!)) {
      if (name.startsWith('type ')) continue;
      if (name.startsWith('paginate')) operations.push(name.slice('paginate'.length));
      else if (name.endsWith('Command')) operations.push(await operationOf(from!, name));
    }
  }
  return operations.sort();
}

/** lib-dynamodb's commands wrap DynamoDB's own (GetCommand sends GetItem): name the one sent. */
async function operationOf(from: string, name: string): Promise<string> {
  const module = (await import(from)) as Record<string, new (input: object) => { clientCommand?: object }>;
  const command = new module[name]!({});
  return (command.clientCommand ?? command).constructor.name.replace(/Command$/, '');
}

function sourcesUnder(directory: string): string[] {
  return readdirSync(join(ROOT, directory), { recursive: true, encoding: 'utf8' })
    .filter((path) => path.endsWith('.ts') && !path.endsWith('.d.ts'))
    .map((path) => relative(ROOT, join(ROOT, directory, path)));
}

describe.each(Object.entries(LISTED))('%s', (path, calls) => {
  it('lists exactly the SDK operations it imports', async () => {
    const listed = [...new Set(calls.filter((call) => call.sender === 'sdk').map((call) => call.operation))].sort();
    expect(listed).toEqual([...new Set(await importedOperations(path))]);
  });
});

it('no other module of the Lambdas or the node agent sends an AWS request', async () => {
  const senders: string[] = [];
  for (const path of [...sourcesUnder('lambdas'), ...sourcesUnder('node-agent/src')]) {
    if ((await importedOperations(path)).length > 0) senders.push(path);
  }
  expect(senders.sort()).toEqual(Object.keys(LISTED).sort());
});
