import { z } from 'zod';

/**
 * What `npm run lab:puppet -- up` prints on its last stdout line and writes to `<labdir>/lab.json`:
 * everything a test or benchmark needs to reach the lab. Shared by the lab script and the tests so
 * the two cannot drift apart.
 */
const clientCertificate = z.object({
  certname: z.string(),
  certPath: z.string(),
  keyPath: z.string(),
});

export const labDescriptionSchema = z.object({
  dir: z.string(),
  caCertPath: z.string(),
  crlPath: z.string(),
  ca: z.object({ url: z.string() }),
  puppetdb: z.object({ url: z.string(), plainUrl: z.string() }),
  orchestrator: z.object({ url: z.string(), tokenPath: z.string() }),
  primary: z.object({
    certname: z.string(),
    ssldir: z.string(),
    confdir: z.string(),
    environment: z.string(),
  }),
  lifecycleClient: clientCertificate,
  forbiddenClient: clientCertificate,
  puppetBin: z.string(),
  postgres: z.object({ port: z.number().int() }),
  logsDir: z.string(),
  pids: z.object({
    postgres: z.number().int().nullable(),
    puppetserver: z.number().int().nullable(),
    puppetdb: z.number().int().nullable(),
    orchestrator: z.number().int().nullable(),
  }),
});

export type LabDescription = z.infer<typeof labDescriptionSchema>;
export type ClientCertificate = z.infer<typeof clientCertificate>;

export const DEFAULT_LAB_DIR = '/var/tmp/compile-masters-lab';

/** The lab directory: `PUPPET_LAB_DIR` when set, else a machine-wide throwaway directory. */
export function labDir(): string {
  return process.env.PUPPET_LAB_DIR || DEFAULT_LAB_DIR;
}
