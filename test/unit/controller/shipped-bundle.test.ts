import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROLLER_CODE } from '../../../cdk/constructs/lifecycle-controller';
import { ENVIRONMENT_EXAMPLES } from '../../../lambdas/controller/config';
import { toSqsEvent } from '../../../lab/memory-cloud';
import { PROJECT_ROOT } from '../../../cdk/lambda-defaults';
import { bundleLikeStack } from '../../support/stack-bundle';

/**
 * The controller as it ships, rather than its sources under vitest: the bundle carries the AWS
 * SDK's ESM build with its schema files rewritten at install (scripts/aws-sdk-literal-keys.mjs)
 * and the environment credential provider in place of the default chain
 * (lambdas/environment-credentials.ts), neither of which the other tests load. A local HTTP
 * server stands in for the AWS endpoints (AWS_ENDPOINT_URL); nothing here reaches AWS.
 */

interface Recorded {
  method: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** An AWS endpoint double: records each request and answers with what `answer` returns. */
async function endpoint(answer: (request: Recorded) => { status: number; type: string; body: string }) {
  const requests: Recorded[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request = { method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(request);
      const { status, type, body } = answer(request);
      res.writeHead(status, { 'content-type': type }).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    requests,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** DescribeInstances as EC2's query protocol answers it (element names from the EC2 API reference). */
function describeInstancesXml(instances: Array<{ id: string; state: string; dns: string; ip: string }>, nextToken?: string): string {
  const items = instances
    .map(
      (instance) => `<item><instanceId>${instance.id}</instanceId><imageId>ami-0abcdef1234567890</imageId>
        <instanceState><code>16</code><name>${instance.state}</name></instanceState>
        <privateDnsName>${instance.dns}</privateDnsName><dnsName/><instanceType>m7g.xlarge</instanceType>
        <launchTime>2026-11-21T10:00:00.000Z</launchTime><privateIpAddress>${instance.ip}</privateIpAddress></item>`,
    )
    .join('');
  return `<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
  <reservationSet><item><reservationId>r-0123456789abcdef0</reservationId><ownerId>123456789012</ownerId>
    <groupSet/><instancesSet>${items}</instancesSet></item></reservationSet>
  ${nextToken ? `<nextToken>${nextToken}</nextToken>` : ''}
</DescribeInstancesResponse>`;
}

interface Ec2Bundle {
  EC2Client: typeof import('@aws-sdk/client-ec2').EC2Client;
  Ec2Instances: typeof import('../../../lambdas/controller/aws/ec2').Ec2Instances;
}

describe('the shipped controller bundle', () => {
  let outdir: string;

  beforeAll(() => {
    // Under the project, so the EC2 test's own entry resolves the project's node_modules.
    outdir = mkdtempSync(join(PROJECT_ROOT, 'node_modules', '.shipped-bundle-'));
  });
  afterAll(() => rmSync(outdir, { recursive: true, force: true }));

  it('reads DescribeInstances, paginated, through its rewritten EC2 schemas', async () => {
    const aws = await endpoint((request) =>
      request.body.includes('NextToken=page-2')
        ? { status: 200, type: 'text/xml', body: describeInstancesXml([{ id: 'i-0bbbbbbbbbbbbbbbb', state: 'shutting-down', dns: 'ip-10-0-2-7.us-west-2.compute.internal', ip: '10.0.2.7' }]) }
        : { status: 200, type: 'text/xml', body: describeInstancesXml([{ id: 'i-0aaaaaaaaaaaaaaaa', state: 'running', dns: 'ip-10-0-1-23.us-west-2.compute.internal', ip: '10.0.1.23' }], 'page-2') },
    );
    try {
      const entry = join(outdir, 'ec2-entry.ts');
      writeFileSync(entry, `export { EC2Client } from '@aws-sdk/client-ec2';\nexport { Ec2Instances } from ${JSON.stringify(join(PROJECT_ROOT, 'lambdas/controller/aws/ec2.ts'))};\n`);
      const { file } = await bundleLikeStack(CONTROLLER_CODE, join(outdir, 'ec2'), { entry });
      const { EC2Client, Ec2Instances } = (await import(pathToFileURL(file).href)) as Ec2Bundle;
      const client = new EC2Client({ region: 'us-west-2', endpoint: aws.url, credentials: { accessKeyId: 'AKIDEC2TEST', secretAccessKey: 'secret' } });
      const found = await new Ec2Instances(client).describe(['i-0aaaaaaaaaaaaaaaa', 'i-0bbbbbbbbbbbbbbbb']);

      expect([...found.values()]).toEqual([
        { instanceId: 'i-0aaaaaaaaaaaaaaaa', state: 'running', privateDnsName: 'ip-10-0-1-23.us-west-2.compute.internal', privateIp: '10.0.1.23', launchTime: new Date('2026-11-21T10:00:00.000Z') },
        { instanceId: 'i-0bbbbbbbbbbbbbbbb', state: 'shutting-down', privateDnsName: 'ip-10-0-2-7.us-west-2.compute.internal', privateIp: '10.0.2.7', launchTime: new Date('2026-11-21T10:00:00.000Z') },
      ]);
      const forms = aws.requests.map((request) => Object.fromEntries(new URLSearchParams(request.body)));
      expect(forms).toHaveLength(2);
      expect(forms[0]).toMatchObject({ Action: 'DescribeInstances', 'Filter.1.Name': 'instance-id', 'Filter.1.Value.1': 'i-0aaaaaaaaaaaaaaaa', 'Filter.1.Value.2': 'i-0bbbbbbbbbbbbbbbb' });
      expect(forms[1]).toMatchObject({ Action: 'DescribeInstances', NextToken: 'page-2' });
    } finally {
      await aws.close();
    }
  });

  /** Runs the shipped handler on one scheduled reconcile in a fresh process; returns its response and output. */
  async function runShipped(file: string, env: Record<string, string>): Promise<{ response: unknown; output: string }> {
    const event = toSqsEvent([{ messageId: 'schedule-1', body: JSON.stringify({ source: 'aws.events', 'detail-type': 'Scheduled Event' }) }]);
    const script = `const { handler } = await import(${JSON.stringify(pathToFileURL(file).href)});
      const response = await handler(${JSON.stringify(event)}, { functionName: 'controller', awsRequestId: 'req-1', getRemainingTimeInMillis: () => 119000 });
      process.stdout.write('RESPONSE ' + JSON.stringify(response) + '\\n');`;
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--enable-source-maps', '--input-type=module', '-e', script], {
      env: { PATH: process.env.PATH ?? '', ...ENVIRONMENT_EXAMPLES, AWS_REGION: 'us-west-2', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env },
    });
    return { response: JSON.parse(/^RESPONSE (.*)$/m.exec(stdout)?.[1] ?? 'null'), output: stdout + stderr };
  }

  /** Every call is refused, as AWS refuses a role without the permission. */
  const refuseEverything = () => ({
    status: 400,
    type: 'application/x-amz-json-1.1',
    body: JSON.stringify({ __type: 'AccessDeniedException', message: 'not authorized to perform this action' }),
  });

  it('signs its AWS calls (reading its secrets) with the credentials Lambda puts in the environment, and hands back the record it could not process', async () => {
    const aws = await endpoint(refuseEverything);
    const home = mkdtempSync(join(tmpdir(), 'shipped-bundle-home-'));
    try {
      const { file } = await bundleLikeStack(CONTROLLER_CODE, join(outdir, 'controller'));
      const { response, output } = await runShipped(file, {
        HOME: home,
        AWS_ENDPOINT_URL: aws.url,
        AWS_ACCESS_KEY_ID: 'AKIDLAMBDAROLE',
        AWS_SECRET_ACCESS_KEY: 'lambda-role-secret',
        AWS_SESSION_TOKEN: 'lambda-role-session-token',
      });
      expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'schedule-1' }] });
      expect(aws.requests.map((request) => request.headers['x-amz-target'])).toEqual(expect.arrayContaining(['secretsmanager.GetSecretValue']));
      for (const request of aws.requests) {
        expect(request.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDLAMBDAROLE\/\d{8}\/us-west-2\//);
        expect(request.headers['x-amz-security-token']).toBe('lambda-role-session-token');
      }
      expect(output).not.toContain('lambda-role-secret');
    } finally {
      rmSync(home, { recursive: true, force: true });
      await aws.close();
    }
  });

  it('takes credentials from nowhere but the environment: a shared credentials file is not read', async () => {
    const aws = await endpoint(refuseEverything);
    const home = mkdtempSync(join(tmpdir(), 'shipped-bundle-home-'));
    try {
      mkdirSync(join(home, '.aws'));
      writeFileSync(join(home, '.aws', 'credentials'), '[default]\naws_access_key_id = AKIDFROMFILE\naws_secret_access_key = file-secret\n');
      const { file } = await bundleLikeStack(CONTROLLER_CODE, join(outdir, 'controller-file'));
      const { response, output } = await runShipped(file, { HOME: home, AWS_ENDPOINT_URL: aws.url });
      // With the SDK's default chain, the file's keys would sign a request to the endpoint.
      expect(aws.requests).toEqual([]);
      expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'schedule-1' }] });
      expect(output).toMatch(/Unable to find environment variable credentials/);
    } finally {
      rmSync(home, { recursive: true, force: true });
      await aws.close();
    }
  });
});
