import { describe, expect, it } from 'vitest';
import { percentile, summarize, type RequestRecord, type RunRecord } from '../../../lab/fleet/records';
import { transactionUuidOf } from '../../../lab/fleet/real-agent';
import { buildReport, catalogForm, catalogSchema, pluginsyncPaths, simulatedFacts, uriQueryEncode } from '../../../lab/fleet/wire';

interface ReportShape {
  resource_statuses: Record<string, { containment_path: string[]; events: unknown[] }>;
  metrics: Record<string, { values: unknown[] }>;
}

describe('fleet wire formats (Puppet 7.23 agent)', () => {
  it('encodes query values as Puppet::Util.uri_query_encode (CGI.escape, space as %20)', () => {
    // Expected strings from Ruby 3.1: CGI.escape(s).gsub('+', '%20').
    expect(uriQueryEncode('a b+c/d!\'()*~_.-é{"k":1}')).toBe('a%20b%2Bc%2Fd%21%27%28%29%2A~_.-%C3%A9%7B%22k%22%3A1%7D');
  });

  it('sends the facts as JSON encoded twice in the catalog form, as Compiler#post_catalog does', () => {
    const facts = { name: 'n', values: { a: 'x y' }, timestamp: 't', expiration: 'e' };
    const form = catalogForm(facts, 'production', 'uuid-1');
    const fields = form.split('&').map((field) => field.split('='));
    expect(fields.map(([key]) => key)).toEqual([
      'facts_format',
      'facts',
      'environment',
      'configured_environment',
      'check_environment',
      'transaction_uuid',
      'job_uuid',
      'static_catalog',
      'checksum_type',
    ]);
    const value = (key: string) => fields.find(([name]) => name === key)![1]!;
    expect(value('facts_format')).toBe('application%2Fjson');
    expect(value('facts').startsWith('%257B%2522name%2522%253A%2522n%2522')).toBe(true);
    expect(JSON.parse(decodeURIComponent(decodeURIComponent(value('facts'))))).toEqual(facts);
    expect(value('checksum_type')).toBe('sha256.sha384.sha512.sha224.md5');
    expect(value('job_uuid')).toBe('');
  });

  it('asks for pluginsync metadata as the agent does: environment check, then pluginfacts, then plugins', () => {
    expect(pluginsyncPaths('production')).toEqual([
      '/puppet/v3/file_metadatas/plugins?recurse=false&links=manage&checksum_type=sha256&source_permissions=ignore&environment=production',
      '/puppet/v3/file_metadatas/pluginfacts?recurse=true&max_files=-1&ignore=.svn&ignore=CVS&ignore=.git&ignore=.hg&links=follow&checksum_type=sha256&source_permissions=use&environment=production',
      '/puppet/v3/file_metadatas/plugins?recurse=true&max_files=-1&ignore=.svn&ignore=CVS&ignore=.git&ignore=.hg&links=follow&checksum_type=sha256&source_permissions=ignore&environment=production',
    ]);
  });

  it('gives each simulated host its own names and addresses', () => {
    const a = simulatedFacts({ certname: 'agent-1.r1.fleet.lab.test', index: 0 }, 'production').values;
    const b = simulatedFacts({ certname: 'agent-2.r1.fleet.lab.test', index: 1 }, 'production').values;
    expect(a).toMatchObject({ hostname: 'agent-1', domain: 'r1.fleet.lab.test', clientcert: 'agent-1.r1.fleet.lab.test' });
    expect(a.ipaddress).not.toBe(b.ipaddress);
    expect(a.macaddress).not.toBe(b.macaddress);
  });

  it('reports applied resources with their containment path and counts the changes', () => {
    const catalog = catalogSchema.parse({
      name: 'agent-1',
      version: 17,
      environment: 'production',
      catalog_uuid: 'c-1',
      resources: [
        { type: 'Stage', title: 'main', tags: ['stage'], parameters: {} },
        { type: 'Class', title: 'Lab_fleet', tags: ['class'], parameters: {} },
        { type: 'Notify', title: 'lab_fleet', tags: ['notify'], file: '/m/init.pp', line: 6, parameters: { message: 'hi' } },
        { type: 'File', title: '/v/lab_fleet', tags: ['file'], parameters: { ensure: 'directory' } },
      ],
      edges: [
        { source: 'Stage[main]', target: 'Class[Lab_fleet]' },
        { source: 'Class[Lab_fleet]', target: 'Notify[lab_fleet]' },
        { source: 'Class[Lab_fleet]', target: 'File[/v/lab_fleet]' },
      ],
    });
    const [notify, dir] = catalog.resources.slice(2);
    const report = buildReport({
      certname: 'agent-1',
      environment: 'production',
      transactionUuid: 'tx-1',
      startedAt: new Date(0),
      catalog,
      applied: [
        { resource: notify!, evaluationSeconds: 0.001, change: { property: 'message', previous: 'absent', desired: 'hi', message: "defined 'message' as 'hi'", name: 'message_changed' } },
        { resource: dir!, evaluationSeconds: 0.001 },
      ],
      timings: { node_retrieval: 0.1, plugin_sync: 0.2, config_retrieval: 0.3, total: 0.7 },
    }) as ReportShape;
    expect(report).toMatchObject({ host: 'agent-1', report_format: 12, status: 'changed', configuration_version: 17, catalog_uuid: 'c-1', transaction_uuid: 'tx-1' });
    expect(Object.keys(report.resource_statuses)).toEqual(['Notify[lab_fleet]', 'File[/v/lab_fleet]']);
    expect(report.resource_statuses['Notify[lab_fleet]']!.containment_path).toEqual(['Stage[main]', 'Lab_fleet', 'Notify[lab_fleet]']);
    expect(report.resource_statuses['Notify[lab_fleet]']!.events[0]).toMatchObject({ property: 'message', desired_value: 'hi', status: 'success' });
    expect(report.resource_statuses['File[/v/lab_fleet]']).toMatchObject({ changed: false, events: [] });
    expect(report.metrics.resources!.values).toContainEqual(['changed', 'Changed', 1]);
    expect(report.metrics.time!.values).toContainEqual(['config_retrieval', 'Config retrieval', 0.3]);
  });
});

describe('fleet summary', () => {
  const record = (overrides: Partial<RequestRecord>): RequestRecord => ({
    agent: 'a',
    runId: 'r',
    step: 'catalog',
    request: 'POST /puppet/v3/catalog/a',
    status: 200,
    ok: true,
    latencyMs: 100,
    startedAt: 1_000,
    answeredBy: 'cm1',
    ...overrides,
  });

  it('takes nearest-rank percentiles', () => {
    expect(percentile([], 50)).toBeNull();
    expect(percentile([1, 2, 3, 4], 50)).toBe(2);
    expect(percentile([1, 2, 3, 4], 95)).toBe(4);
    expect(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 95)).toBe(95);
  });

  it('counts failures by step and kind, catalog latency of successes, and requests per compile master, inside a window', () => {
    const records = [
      record({ latencyMs: 100 }),
      record({ latencyMs: 300, answeredBy: 'cm2' }),
      record({ latencyMs: 900, status: 503, ok: false, retryAfter: '10' }),
      record({ step: 'node', status: 'connection-error', errorCode: 'ECONNREFUSED', ok: false, answeredBy: undefined }),
      record({ latencyMs: 5_000, startedAt: 9_000 }),
    ];
    const runs: RunRecord[] = [
      { agent: 'a', runId: 'r1', startedAt: 1_000, durationMs: 10, ok: true },
      { agent: 'a', runId: 'r2', startedAt: 1_000, durationMs: 10, ok: false, failedStep: 'node' },
      { agent: 'a', runId: 'r3', startedAt: 9_000, durationMs: 10, ok: true },
    ];
    const summary = summarize(records, runs, { from: 0, to: 5_000 });
    expect(summary).toEqual({
      window: { from: 0, to: 5_000 },
      requests: 4,
      failures: 2,
      failuresByStep: { catalog: 1, node: 1 },
      failuresByKind: { '503': 1, 'connection-error:ECONNREFUSED': 1 },
      runs: { started: 2, succeeded: 1, failed: 1 },
      catalog: { count: 2, p50Ms: 100, p95Ms: 300, maxMs: 300 },
      byCompileMaster: { cm1: 2, cm2: 1 },
    });
    expect(summarize(records, runs).catalog).toEqual({ count: 3, p50Ms: 300, p95Ms: 5_000, maxMs: 5_000 });
  });
});

describe("a real agent's last_run_report.yaml", () => {
  it('gives the transaction_uuid whether Psych quoted it or not', () => {
    const uuid = '0595276a-111b-4536-81c9-16a53df8e735';
    expect(transactionUuidOf(`--- !ruby/object:Puppet::Transaction::Report\nhost: cm1\ntransaction_uuid: '${uuid}'\n`)).toBe(uuid);
    expect(transactionUuidOf(`transaction_uuid: ${uuid.replace('0595276a', 'f595276a')}\n`)).toBe(uuid.replace('0595276a', 'f595276a'));
    expect(transactionUuidOf('transaction_uuid: \n')).toBeUndefined();
  });
});
