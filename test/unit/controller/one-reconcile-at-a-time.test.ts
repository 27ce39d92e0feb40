import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { SQSEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { QUEUE_VISIBILITY_TIMEOUT } from '../../../cdk/constructs/lifecycle-controller';
import { DLQ_MAX_RECEIVE_COUNT } from '../../../cdk/constructs/lifecycle-queue';
import { handleBatch } from '../../../lambdas/controller/batch';
import type { Ports } from '../../../lambdas/controller/ports';
import { reconcile } from '../../../lambdas/controller/reconcile';
import { CONTROLLER_TIMEOUT_SECONDS, EVENT_SOURCE_MAX_CONCURRENCY, PASS_RESERVE_SECONDS, whileHoldingLease } from '../../../lambdas/controller/reconcile-lease';
import { QueueDriver, type DrainReport } from '../../../lab/memory-cloud';
import { Harness } from './harness';

/**
 * Issue 12: one reconcile at a time without reserved concurrency. A burst of 200 events (lifecycle
 * actions, node-agent notices, EC2 state changes) runs through the queue with the stack's
 * visibility timeout and redrive policy and the event source's maximum concurrency; the two
 * invocations take turns through the lease exactly as the handler composes it.
 */

const STACK_REDRIVE = { visibilityTimeoutSeconds: QUEUE_VISIBILITY_TIMEOUT.toSeconds(), maxReceiveCount: DLQ_MAX_RECEIVE_COUNT };
/** Simulated time each port call takes: a pass of a few dozen calls takes seconds, as against AWS. */
const PORT_CALL_SECONDS = 0.05;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Run {
  report: DrainReport;
  burst: string[];
  /** The most passes that were under way at once. */
  peakPasses: number;
  /** Port calls, in order, each with the invocation that made it. */
  portCalls: Array<{ invocation: string; operation: string }>;
  h: Harness;
}

/** 200 messages: 40 launches, 80 node-agent notices, 5 scale-ins, 2 hand terminations (4 EC2 events) and 71 other instances' EC2 events. */
async function sendBurst(h: Harness, tier: string[]): Promise<string[]> {
  expect(h.cloud.queue.messages).toHaveLength(0);
  const launched = Array.from({ length: 40 }, () => h.cloud.launch().instanceId);
  for (const id of launched) h.nodeSubmitsCsr(id);
  await h.cloud.scaleIn(tier.slice(0, 5));
  for (const id of tier.slice(5, 7)) h.cloud.terminateOutside(id);
  for (let n = 0; n < 71; n++) {
    h.cloud.queue.enqueue(
      JSON.stringify({
        version: '0',
        id: randomUUID(),
        'detail-type': 'EC2 Instance State-change Notification',
        source: 'aws.ec2',
        account: h.cloud.accountId,
        time: h.now.toISOString(),
        region: h.cloud.region,
        resources: [],
        detail: { 'instance-id': `i-0ffe${n.toString(16).padStart(13, '0')}`, state: n % 2 ? 'terminated' : 'shutting-down' },
      }),
    );
  }
  const burst = h.cloud.queue.messages.map((message) => message.messageId);
  expect(burst).toHaveLength(200);
  return burst;
}

/**
 * A tier of 10 in service, then the burst, drained by `pollers` concurrent pollers. `lease`: the
 * invocations take turns through the cloud's lease, as handler.ts has them do.
 */
async function burstRun(options: { pollers: number; functionConcurrency?: number; lease: boolean; maxSeconds?: number }): Promise<Run> {
  const h = new Harness({ redrive: STACK_REDRIVE });
  const tier = await h.tier(10);
  const invocation = new AsyncLocalStorage<string>();
  const portCalls: Run['portCalls'] = [];
  const ports = slowed(h.context.ports, (operation) => {
    portCalls.push({ invocation: invocation.getStore() ?? 'none', operation });
    h.advance(PORT_CALL_SECONDS);
  });
  const context = { ...h.context, ports };
  let passes = 0;
  let peakPasses = 0;
  const pass = async <T>(work: () => Promise<T>): Promise<T> => {
    peakPasses = Math.max(peakPasses, ++passes);
    try {
      return await work();
    } finally {
      passes -= 1;
    }
  };
  let sequence = 0;
  const handle = (event: SQSEvent) => {
    const holder = `invocation-${++sequence}`;
    const deadline = h.now.getTime() + CONTROLLER_TIMEOUT_SECONDS * 1000;
    return invocation.run(holder, () =>
      handleBatch(event, {
        scope: h.cloud,
        logger: h.logger,
        metrics: h.metrics,
        reconcile: (triggers) =>
          options.lease
            ? whileHoldingLease(
                {
                  lease: h.cloud.lease,
                  holder,
                  clock: h.clock.now,
                  sleep: (milliseconds) => sleepInClockTime(h, milliseconds),
                  waitUntil: new Date(deadline - PASS_RESERVE_SECONDS * 1000),
                  logger: h.logger,
                },
                () => pass(() => reconcile(context, triggers)),
              )
            : pass(() => reconcile(context, triggers)),
      }),
    );
  };
  const burst = await sendBurst(h, tier);
  const report = await new QueueDriver(h.cloud, h.clock, handle).drain({ pollers: options.pollers, functionConcurrency: options.functionConcurrency, maxSeconds: options.maxSeconds });
  return { report, burst, peakPasses, portCalls, h };
}

/**
 * A wait in clock time while the other invocation's pass moves the clock with its port calls; once
 * nothing else moves it (no pass under way), the rest of the wait passes at once.
 */
async function sleepInClockTime(h: Harness, milliseconds: number): Promise<void> {
  const until = h.now.getTime() + milliseconds;
  while (h.now.getTime() < until) {
    const before = h.now.getTime();
    await nextTurn();
    if (h.now.getTime() === before) h.clock.advanceTo(new Date(until));
  }
}

/** Every port call takes a turn of the event loop and some clock time, so concurrent passes interleave. */
function slowed(ports: Ports, onCall: (operation: string) => void): Ports {
  const wrapped: Record<string, object> = {};
  for (const [name, port] of Object.entries(ports) as Array<[string, object]>) {
    wrapped[name] = new Proxy(port, {
      get: (target, property, receiver) => {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== 'function' || typeof property !== 'string') return value;
        return async (...args: unknown[]) => {
          await nextTurn();
          onCall(`${name}.${property}`);
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  }
  return wrapped as unknown as Ports;
}

/** How many times the port calls switch from one invocation to another and back again. */
function interleavings(calls: Run['portCalls']): number {
  const blocks = calls.map((call) => call.invocation).filter((invocation, index, all) => index === 0 || all[index - 1] !== invocation);
  return blocks.length - new Set(blocks).size;
}

function receivesOf(run: Run): Map<string, number> {
  const counts = new Map<string, number>();
  for (const receipt of run.h.cloud.queue.receipts) counts.set(receipt.messageId, (counts.get(receipt.messageId) ?? 0) + 1);
  return counts;
}

describe('one reconcile at a time, without reserved concurrency', () => {
  it('a burst of 200 events with two concurrent invocations: passes never overlap, each event is received once and processed, nothing reaches the DLQ', async () => {
    const run = await burstRun({ pollers: EVENT_SOURCE_MAX_CONCURRENCY, lease: true });
    const { queue, group, registry } = run.h.cloud;

    // Two invocations really ran at once, and one waited for the other's pass.
    expect(run.report.peakConcurrency).toBe(2);
    expect(run.h.cloud.callsOf('lease.acquire').length).toBeGreaterThan(run.report.invocations);
    // ...yet passes never overlapped: not by the count, nor in the order of port calls.
    expect(run.peakPasses).toBe(1);
    expect(interleavings(run.portCalls)).toBe(0);

    // A waiter gets the next turn (a later invocation cannot cut in), so it waits about one pass.
    const waits = run.h.logger.lines.filter((line) => line.message === 'Waited for the reconcile lease').map((line) => (line.attributes as { waitedMs: number }).waitedMs);
    expect(waits.length).toBeGreaterThan(0);
    expect(Math.max(...waits)).toBeLessThan(PASS_RESERVE_SECONDS * 1000);

    expect(run.report.throttled).toBe(0);
    const receives = receivesOf(run);
    for (const messageId of run.burst) expect(receives.get(messageId), messageId).toBe(1);
    // Processed: deleted after its one receive, never failed (a failed record stays in flight).
    expect(queue.inFlight.size).toBe(0);
    expect(queue.messages.filter((message) => run.burst.includes(message.messageId))).toEqual([]);
    expect(queue.deadLetters).toEqual([]);
    expect(run.h.logger.lines.filter((line) => line.level === 'error')).toEqual([]);

    // And the work was done: 40 new nodes signed, 5 scaled in and 2 terminated by hand purged.
    const entries = (await registry.list()).entries;
    expect(entries.filter((entry) => entry.state === 'signed')).toHaveLength(40);
    expect(entries.filter((entry) => entry.state === 'purged')).toHaveLength(7);
    expect(group.completions.filter((completion) => completion.hook === 'terminate')).toHaveLength(5);
    expect(run.h.cloud.lease.peek()).toBeUndefined();
  });

  it('without the lease the same two invocations overlap their passes (what the test above would see)', async () => {
    const run = await burstRun({ pollers: EVENT_SOURCE_MAX_CONCURRENCY, lease: false });
    expect(run.peakPasses).toBe(2);
    expect(interleavings(run.portCalls)).toBeGreaterThan(0);
  });

  it('the old stack, reserved concurrency 1 under five pollers, throttles batches whose messages come back with a receive counted', async () => {
    const run = await burstRun({ pollers: 5, functionConcurrency: 1, lease: false, maxSeconds: 3600 });
    expect(run.report.throttled).toBeGreaterThan(0);
    expect([...receivesOf(run).values()].some((count) => count > 1)).toBe(true);
  });
});
