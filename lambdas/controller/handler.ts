import { Metrics } from '@aws-lambda-powertools/metrics';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { readCertificate } from '../../lib/puppet/csr';
import { AutoScalingGroup } from './aws/auto-scaling';
import { SDK_MAX_ATTEMPTS } from './aws/call';
import { Ec2Instances } from './aws/ec2';
import { DynamoLease } from './aws/lease';
import { DynamoRegistry } from './aws/registry';
import { SecretsManagerSecrets } from './aws/secrets';
import { SqsQueue } from './aws/sqs';
import { handleBatch } from './batch';
import { loadConfig } from './config';
import { createLogger } from './logging';
import { createPrimaryRun } from './primary-run';
import { PuppetApis, PuppetServerHealth } from './puppet';
import type { ClientBundle } from './ports';
import { reconcile, reconcileWithoutSecrets, withClientCertificate, type ControllerContext, type SecretlessContext } from './reconcile';
import { PASS_RESERVE_SECONDS, whileHoldingLease } from './reconcile-lease';

// Cold start: configuration fails fast, clients are built once and reused by every invocation.
const config = loadConfig(process.env);
const logger = createLogger();
const metrics = new Metrics();
const sdk = { maxAttempts: SDK_MAX_ATTEMPTS };
const secrets = new SecretsManagerSecrets(
  new SecretsManagerClient(sdk),
  { clientCert: config.clientCertSecretArn, ...(config.primaryRun.mode === 'orchestrator' ? { rbacToken: config.primaryRun.rbacTokenSecretArn } : {}) },
  { onStale: (what, error) => logger.warn(`Could not read the ${what} secret again; still using the value read before`, { error }) },
);
const dynamo = DynamoDBDocumentClient.from(new DynamoDBClient(sdk));
const lease = new DynamoLease(dynamo, config.registryTable);
const aws = {
  group: new AutoScalingGroup(new AutoScalingClient(sdk), config),
  instances: new Ec2Instances(new EC2Client(sdk)),
  registry: new DynamoRegistry(dynamo, config.registryTable, (detail) =>
    logger.error('Damaged registry item left alone', detail),
  ),
  queue: new SqsQueue(new SQSClient(sdk), config.queueUrl),
  // The runner reads its own secret (the RBAC token) when it needs it, and follows its rotation.
  primaryRun: createPrimaryRun(config.primaryRun, { secrets, logger, primaryCertname: config.primaryCertname, ssmClient: () => new SSMClient(sdk) }),
};

/**
 * The Puppet side is built from the client certificate bundle on first use and kept while it stays
 * the same; a rotated bundle (re-read every few minutes, aws/secrets.ts) rebuilds it.
 */
let controller: { bundle: ClientBundle; context: ControllerContext } | undefined;

/** Until the client certificate secret is put, passes heartbeat waiting launches and nothing else. */
const secretless: SecretlessContext = { ports: aws, ceiling: config, logger, metrics, clock: () => new Date() };

function connect(bundle: ClientBundle): ControllerContext {
  // The controller's own certificate is as untouchable as the primary.
  const ownCertname = readCertificate(bundle.cert).commonName;
  return {
    ports: { ...aws, puppet: PuppetApis.create(config, bundle), health: new PuppetServerHealth(bundle.ca) },
    policy: { ...config, protectedCertnames: new Set([...config.protectedCertnames, ...(ownCertname ? [ownCertname] : [])]) },
    logger,
    metrics,
    clock: () => new Date(),
  };
}

async function getController(): Promise<ControllerContext> {
  const bundle = await secrets.clientBundle();
  if (controller?.bundle !== bundle) {
    if (controller) logger.info('The client certificate bundle changed: the Puppet API clients now use the new one');
    controller = { bundle, context: connect(bundle) };
  }
  return controller.context;
}

export async function handler(event: SQSEvent, context: Context): Promise<SQSBatchResponse> {
  logger.addContext(context);
  try {
    return await handleBatch(event, {
      scope: config,
      logger,
      metrics,
      // Secrets first: an invocation that cannot read them has no business holding the lease (its
      // heartbeats are safe to repeat alongside another pass).
      reconcile: (triggers) =>
        withClientCertificate(getController, {
          missing: (error) => reconcileWithoutSecrets(secretless, triggers, error),
          // Another invocation may be mid-pass (the event source runs two): take turns.
          ready: (controller) =>
            whileHoldingLease(
              {
                lease,
                holder: context.awsRequestId,
                clock: () => new Date(),
                sleep: (milliseconds) => sleep(milliseconds),
                waitUntil: new Date(Date.now() + context.getRemainingTimeInMillis() - PASS_RESERVE_SECONDS * 1000),
                logger,
              },
              () => reconcile(controller, triggers),
            ),
        }),
    });
  } finally {
    // A batch of other instances' EC2 events runs no pass and has nothing to count.
    if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
  }
}
