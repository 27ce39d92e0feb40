/**
 * The bodies a Puppet 7.23 agent sends and the parts of the answers it reads, as Debian's
 * puppet-agent does it (/usr/lib/ruby/vendor_ruby/puppet/http/service/compiler.rb, file_server.rb,
 * report.rb, configurer.rb, configurer/plugin_handler.rb), checked against a captured
 * `puppet agent --test --http_debug` run on the lab primary.
 */
import { z } from 'zod';

export const PUPPET_VERSION = '7.23.0';

/** Headers every agent request carries (Puppet::HTTP::Client#default_headers); the token after the
 *  real user agent tells the server's access log a simulated agent from a real one. */
export const AGENT_HEADERS = {
  'x-puppet-version': PUPPET_VERSION,
  'user-agent': `Puppet/${PUPPET_VERSION} Ruby/3.1.2-p20 (x86_64-linux-gnu) lab-fleet`,
  'accept-encoding': 'gzip;q=1.0,deflate;q=0.6,identity;q=0.3',
};
export const ACCEPT_JSON = 'application/json, text/pson';
export const ACCEPT_CATALOG = 'application/vnd.puppet.rich+json, application/json, text/pson';
export const ACCEPT_BINARY = 'application/octet-stream';

/** Puppet[:supported_checksum_types], joined as the agent sends it. */
const CHECKSUM_TYPES = 'sha256.sha384.sha512.sha224.md5';
/** Puppet[:pluginsignore]. */
const PLUGINS_IGNORE = ['.svn', 'CVS', '.git', '.hg'];

/**
 * Puppet::Util.uri_query_encode: CGI.escape with %20 for a space. CGI.escape leaves only
 * `A-Za-z0-9_.-~` unescaped, so encodeURIComponent's `!'()*` are escaped too.
 */
export function uriQueryEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`);
}

function query(params: [string, string][]): string {
  return params.map(([key, value]) => `${key}=${uriQueryEncode(value)}`).join('&');
}

export function nodePath(certname: string, environment: string, transactionUuid: string): string {
  return `/puppet/v3/node/${certname}?${query([
    ['environment', environment],
    ['configured_environment', environment],
    ['transaction_uuid', transactionUuid],
  ])}`;
}

/**
 * The three file_metadatas requests of pluginsync, in the agent's order: the environment check
 * (Configurer#valid_server_environment?, plugins without recursion), then pluginfacts and plugins
 * (Downloader: recurse, follow links; pluginfacts keep their permissions).
 */
export function pluginsyncPaths(environment: string): string[] {
  const recursive = (mount: string, sourcePermissions: string) =>
    `/puppet/v3/file_metadatas/${mount}?${query([
      ['recurse', 'true'],
      ['max_files', '-1'],
      ...PLUGINS_IGNORE.map((pattern): [string, string] => ['ignore', pattern]),
      ['links', 'follow'],
      ['checksum_type', 'sha256'],
      ['source_permissions', sourcePermissions],
      ['environment', environment],
    ])}`;
  return [
    `/puppet/v3/file_metadatas/plugins?${query([
      ['recurse', 'false'],
      ['links', 'manage'],
      ['checksum_type', 'sha256'],
      ['source_permissions', 'ignore'],
      ['environment', environment],
    ])}`,
    recursive('pluginfacts', 'use'),
    recursive('plugins', 'ignore'),
  ];
}

/** `/modules/lab_fleet/motd.txt` for `puppet:///modules/lab_fleet/motd.txt` (a server name in the URL is ignored, as the agent routes to its own server). */
export function fileServerPath(source: string): string {
  return new URL(source).pathname;
}

export function fileMetadataPath(mountPath: string, environment: string): string {
  return `/puppet/v3/file_metadata${mountPath}?${query([
    ['links', 'manage'],
    ['checksum_type', 'sha256'],
    ['source_permissions', 'ignore'],
    ['environment', environment],
  ])}`;
}

export function fileContentPath(mountPath: string, environment: string): string {
  return `/puppet/v3/file_content${mountPath}?${query([['environment', environment]])}`;
}

export const catalogPath = (certname: string, environment: string) => `/puppet/v3/catalog/${certname}?${query([['environment', environment]])}`;
export const reportPath = (certname: string, environment: string) => `/puppet/v3/report/${certname}?${query([['environment', environment]])}`;

export interface Facts {
  name: string;
  values: Record<string, unknown>;
  timestamp: string;
  expiration: string;
}

/**
 * Compiler#post_catalog's form body. The facts are JSON, uri_query_encoded once as the value and
 * once more with every other field: the server decodes twice.
 */
export function catalogForm(facts: Facts, environment: string, transactionUuid: string): string {
  return query([
    ['facts_format', 'application/json'],
    ['facts', uriQueryEncode(JSON.stringify(facts))],
    ['environment', environment],
    ['configured_environment', environment],
    ['check_environment', 'true'],
    ['transaction_uuid', transactionUuid],
    ['job_uuid', ''],
    ['static_catalog', 'true'],
    ['checksum_type', CHECKSUM_TYPES],
  ]);
}

export interface SimulatedHost {
  certname: string;
  /** 0-based position in the fleet: makes the host's address, MAC and serial. */
  index: number;
}

/**
 * The facts of a Debian 12 VM with 2 vCPUs and 4 GiB, shaped as Facter 4.3 gives them to Puppet
 * 7.23 (the same keys as a real run here), with the host's own names and addresses. Puppet adds
 * clientcert, clientversion, clientnoop and agent_specified_environment; lab_fleet_vardir is the
 * custom fact the lab_fleet module syncs (Debian's agent vardir).
 */
export function simulatedFacts(host: SimulatedHost, environment: string, now = new Date()): Facts {
  const [shortName, ...domainParts] = host.certname.split('.');
  const domain = domainParts.join('.');
  const octet3 = Math.floor(host.index / 250) % 250;
  const octet4 = (host.index % 250) + 2;
  const ip = `10.200.${octet3}.${octet4}`;
  const mac = `02:42:0a:c8:${octet3.toString(16).padStart(2, '0')}:${octet4.toString(16).padStart(2, '0')}`;
  const release = { full: '12.11', major: '12', minor: '11' };
  const memory = { system: { total: '3.83 GiB', total_bytes: 4_112_302_080, used: '1.02 GiB', used_bytes: 1_095_204_864, available: '2.81 GiB', available_bytes: 3_017_097_216, capacity: '26.63%' } };
  const bindings = { address: ip, netmask: '255.255.255.0', network: `10.200.${octet3}.0` };
  const values: Record<string, unknown> = {
    os: { name: 'Debian', family: 'Debian', release, architecture: 'amd64', hardware: 'x86_64', selinux: { enabled: false }, distro: { codename: 'bookworm', description: 'Debian GNU/Linux 12 (bookworm)', id: 'Debian', release } },
    kernel: 'Linux',
    kernelrelease: '6.1.0-31-amd64',
    kernelversion: '6.1.0',
    kernelmajversion: '6.1',
    architecture: 'amd64',
    hardwaremodel: 'x86_64',
    hardwareisa: 'unknown',
    osfamily: 'Debian',
    operatingsystem: 'Debian',
    operatingsystemrelease: release.full,
    operatingsystemmajrelease: release.major,
    lsbdistid: 'Debian',
    lsbdistcodename: 'bookworm',
    lsbdistrelease: release.full,
    lsbmajdistrelease: release.major,
    lsbminordistrelease: release.minor,
    lsbdistdescription: 'Debian GNU/Linux 12 (bookworm)',
    networking: {
      hostname: shortName,
      domain,
      fqdn: host.certname,
      ip,
      mac,
      mtu: 9001,
      netmask: bindings.netmask,
      network: bindings.network,
      primary: 'ens5',
      interfaces: {
        ens5: { bindings: [bindings], ip, mac, mtu: 9001, netmask: bindings.netmask, network: bindings.network },
        lo: { bindings: [{ address: '127.0.0.1', netmask: '255.0.0.0', network: '127.0.0.0' }], ip: '127.0.0.1', mtu: 65536 },
      },
    },
    hostname: shortName,
    domain,
    fqdn: host.certname,
    ipaddress: ip,
    ipaddress_ens5: ip,
    ipaddress_lo: '127.0.0.1',
    macaddress: mac,
    macaddress_ens5: mac,
    netmask: bindings.netmask,
    network: bindings.network,
    interfaces: 'ens5,lo',
    mtu_ens5: 9001,
    mtu_lo: 65536,
    processors: { count: 2, physicalcount: 1, models: ['Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz', 'Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz'], isa: 'x86_64' },
    processorcount: 2,
    physicalprocessorcount: 1,
    memory,
    memorysize: memory.system.total,
    memoryfree: memory.system.available,
    memorysize_mb: 3921.77,
    memoryfree_mb: 2877.32,
    disks: { nvme0n1: { size: '20.00 GiB', size_bytes: 21_474_836_480, model: 'Amazon Elastic Block Store', serial: `vol0${(1_000_000 + host.index).toString(16)}` } },
    blockdevices: 'nvme0n1',
    mountpoints: { '/': { device: '/dev/nvme0n1p1', filesystem: 'ext4', size: '19.52 GiB', available: '16.80 GiB', capacity: '13.94%', options: ['rw', 'relatime'] } },
    filesystems: 'ext2,ext3,ext4',
    identity: { uid: 0, user: 'root', gid: 0, group: 'root', privileged: true },
    id: 'root',
    gid: 'root',
    path: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    timezone: 'UTC',
    fips_enabled: false,
    selinux: false,
    is_virtual: true,
    virtual: 'kvm',
    dmi: { manufacturer: 'Amazon EC2', product: { name: 't3.medium', uuid: `ec2${host.index.toString(16).padStart(5, '0')}-0000-4000-8000-000000000000` } },
    load_averages: { '1m': 0.08, '5m': 0.05, '15m': 0.01 },
    system_uptime: { seconds: 86_400 + host.index, hours: 24, days: 1, uptime: '1 day' },
    ruby: { platform: 'x86_64-linux-gnu', sitedir: '/usr/local/lib/site_ruby/3.1.0', version: '3.1.2' },
    rubyplatform: 'x86_64-linux-gnu',
    rubysitedir: '/usr/local/lib/site_ruby/3.1.0',
    rubyversion: '3.1.2',
    facterversion: '4.3.0',
    puppetversion: PUPPET_VERSION,
    augeas: { version: '1.14.0' },
    augeasversion: '1.14.0',
    lab_fleet_vardir: '/var/lib/puppet',
    clientcert: host.certname,
    clientversion: PUPPET_VERSION,
    clientnoop: false,
    agent_specified_environment: environment,
  };
  // Puppet::Node::Facts: expiration = now + runinterval (30 min).
  return { name: host.certname, values, timestamp: now.toISOString(), expiration: new Date(now.getTime() + 30 * 60_000).toISOString() };
}

export const fileMetadataSchema = z.looseObject({
  path: z.string(),
  relative_path: z.string().nullable().optional(),
  type: z.string(),
  checksum: z.looseObject({ type: z.string(), value: z.string().nullable() }),
});
export type FileMetadata = z.infer<typeof fileMetadataSchema>;

const catalogResourceSchema = z.looseObject({
  type: z.string(),
  title: z.union([z.string(), z.number()]).transform(String),
  tags: z.array(z.string()).default([]),
  file: z.string().nullable().optional(),
  line: z.number().nullable().optional(),
  parameters: z.record(z.string(), z.unknown()).default({}),
});
export type CatalogResource = z.infer<typeof catalogResourceSchema>;

export const catalogSchema = z.looseObject({
  name: z.string(),
  version: z.union([z.string(), z.number()]),
  environment: z.string(),
  catalog_uuid: z.string().optional(),
  resources: z.array(catalogResourceSchema),
  edges: z.array(z.looseObject({ source: z.string(), target: z.string() })).default([]),
});
export type Catalog = z.infer<typeof catalogSchema>;

export const resourceRef = (resource: { type: string; title: string }) => `${resource.type}[${resource.title}]`;

/** The puppet:/// source of a file resource the agent would ask the file server about. */
export function puppetSource(resource: CatalogResource): string | undefined {
  if (resource.type !== 'File') return undefined;
  const source = resource.parameters.source;
  const first = Array.isArray(source) ? source[0] : source;
  return typeof first === 'string' && first.startsWith('puppet:') ? first : undefined;
}

/** Containers (classes, stages, the node) are not resources the agent applies or reports. */
const CONTAINERS = new Set(['Class', 'Stage', 'Node']);

/** How a containment path names a class: `Lab_fleet` for Class[Lab_fleet]. */
function containmentName(ref: string): string {
  const match = /^Class\[(.+)\]$/.exec(ref);
  return match ? match[1]! : ref;
}

export interface AppliedResource {
  resource: CatalogResource;
  /** What applying it changed (a notify always; a file when its content had to be fetched). */
  change?: { property: string; previous: string; desired: string; message: string; name: string };
  evaluationSeconds: number;
}

export interface ReportTimings {
  /** Seconds, as the agent reports them in metrics.time. */
  node_retrieval: number;
  plugin_sync: number;
  config_retrieval: number;
  total: number;
}

/**
 * A report_format 12 report (Puppet::Transaction::Report#to_data_hash) for a run that applied
 * `applied` from `catalog`: what Puppet Server deserializes and its puppetdb report processor
 * turns into a store report command.
 */
export function buildReport(input: {
  certname: string;
  environment: string;
  transactionUuid: string;
  startedAt: Date;
  catalog: Catalog;
  applied: AppliedResource[];
  timings: ReportTimings;
}): object {
  const { certname, catalog, applied, timings } = input;
  const parentOf = new Map(catalog.edges.map((edge) => [edge.target, edge.source]));
  const containmentPath = (ref: string): string[] => {
    const path = [ref];
    for (let parent = parentOf.get(ref); parent !== undefined && path.length < 50; parent = parentOf.get(parent)) path.unshift(containmentName(parent));
    return path;
  };
  const iso = (date: Date) => date.toISOString();
  const now = new Date();
  const resourceStatuses: Record<string, object> = {};
  const logs: object[] = [
    { level: 'info', message: `Using environment '${input.environment}'`, source: 'Puppet', tags: ['info'], time: iso(input.startedAt), file: null, line: null },
    { level: 'info', message: 'Retrieving pluginfacts', source: 'Puppet', tags: ['info'], time: iso(input.startedAt), file: null, line: null },
    { level: 'info', message: 'Retrieving plugin', source: 'Puppet', tags: ['info'], time: iso(input.startedAt), file: null, line: null },
    { level: 'info', message: `Caching catalog for ${certname}`, source: 'Puppet', tags: ['info'], time: iso(now), file: null, line: null },
    { level: 'info', message: `Applying configuration version '${catalog.version}'`, source: 'Puppet', tags: ['info'], time: iso(now), file: null, line: null },
  ];
  const timeByType: Record<string, number> = {};
  let changed = 0;
  for (const { resource, change, evaluationSeconds } of applied) {
    const ref = resourceRef(resource);
    const path = containmentPath(ref);
    const typeKey = resource.type.toLowerCase();
    timeByType[typeKey] = (timeByType[typeKey] ?? 0) + evaluationSeconds;
    const events = change
      ? [
          {
            audited: false,
            property: change.property,
            previous_value: change.previous,
            desired_value: change.desired,
            historical_value: null,
            message: change.message,
            name: change.name,
            status: 'success',
            time: iso(now),
            redacted: null,
            corrective_change: false,
          },
        ]
      : [];
    if (change) {
      changed += 1;
      logs.push({ level: 'notice', message: change.message, source: `/${path.join('/')}/${change.property}`, tags: ['notice', ...resource.tags], time: iso(now), file: resource.file ?? null, line: resource.line ?? null });
    }
    resourceStatuses[ref] = {
      title: resource.title,
      file: resource.file ?? null,
      line: resource.line ?? null,
      resource: ref,
      resource_type: resource.type,
      provider_used: resource.type === 'File' ? 'posix' : null,
      containment_path: path,
      evaluation_time: evaluationSeconds,
      tags: resource.tags,
      time: iso(now),
      failed: false,
      failed_to_restart: false,
      changed: change !== undefined,
      out_of_sync: change !== undefined,
      skipped: false,
      change_count: change ? 1 : 0,
      out_of_sync_count: change ? 1 : 0,
      events,
      corrective_change: false,
    };
  }
  const applySeconds = Object.values(timeByType).reduce((sum, seconds) => sum + seconds, 0);
  logs.push({ level: 'notice', message: `Applied catalog in ${applySeconds.toFixed(2)} seconds`, source: 'Puppet', tags: ['notice'], time: iso(now), file: null, line: null });
  const label = (key: string) => key.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
  const metric = (name: string, entries: [string, number][]) => ({ name, label: label(name), values: entries.map(([key, value]) => [key, label(key), value]) });
  return {
    host: certname,
    time: iso(input.startedAt),
    configuration_version: catalog.version,
    transaction_uuid: input.transactionUuid,
    report_format: 12,
    puppet_version: PUPPET_VERSION,
    status: changed > 0 ? 'changed' : 'unchanged',
    transaction_completed: true,
    noop: false,
    noop_pending: false,
    environment: input.environment,
    logs,
    metrics: {
      resources: metric('resources', [
        ['total', applied.length],
        ['skipped', 0],
        ['failed', 0],
        ['failed_to_restart', 0],
        ['restarted', 0],
        ['changed', changed],
        ['out_of_sync', changed],
        ['scheduled', 0],
        ['corrective_change', 0],
      ]),
      time: metric('time', [
        ...Object.entries(timeByType),
        ['node_retrieval', timings.node_retrieval],
        ['plugin_sync', timings.plugin_sync],
        ['config_retrieval', timings.config_retrieval],
        ['catalog_application', applySeconds],
        ['total', timings.total],
      ]),
      changes: metric('changes', [['total', changed]]),
      events: metric('events', [
        ['total', changed],
        ['failure', 0],
        ['success', changed],
      ]),
    },
    resource_statuses: resourceStatuses,
    corrective_change: false,
    catalog_uuid: catalog.catalog_uuid ?? input.transactionUuid,
    cached_catalog_status: 'not_used',
  };
}

/** The resources an agent applies from a catalog: everything but containers. */
export function appliedResources(catalog: Catalog): CatalogResource[] {
  return catalog.resources.filter((resource) => !CONTAINERS.has(resource.type));
}
