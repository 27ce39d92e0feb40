import { defineConfig } from 'vitest/config';

// Two projects: `unit` needs nothing but Node; `integration` talks to the real Puppet lab
// (Puppet Server, PuppetDB, puppet agents), which its global setup starts when it is not running.
// Integration files share one lab (and some stop its servers), so `npm run test:integration`
// runs them one after another with --no-file-parallelism (a root-only option in vitest).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          globalSetup: ['test/unit/global-setup.ts'],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/integration/global-setup.ts'],
          testTimeout: 300_000,
          hookTimeout: 600_000,
        },
      },
    ],
  },
});
