// One node agent notice, sent as the node agent sends it: `new SQSClient({ region })` with the
// SDK's defaults (credentials from the default chain, the regional endpoint, Node's trust store
// plus NODE_EXTRA_CA_CERTS) and the real notifier. For tests that run it in a process of its own,
// with the environment and /etc/hosts a lab machine gives its node agent.
import { SQSClient } from '@aws-sdk/client-sqs';
import { nodeAgentNotice } from '../../lib/node-agent-notice';
import { jsonLogger } from '../../node-agent/src/log';
import { sqsNotifier } from '../../node-agent/src/notify';

const [region, queueUrl, instanceId] = process.argv.slice(2);
if (!region || !queueUrl || !instanceId) throw new Error('usage: send-notice.ts REGION QUEUE_URL INSTANCE_ID');
const sqs = new SQSClient({ region });
try {
  await sqsNotifier({ client: sqs, queueUrl, log: jsonLogger(process.stdout, process.stderr) }).send(nodeAgentNotice(instanceId, 'booted'));
} finally {
  sqs.destroy();
}
