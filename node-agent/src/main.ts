import { runCli } from './cli';

// No top-level await: the CDK stack bundles this file itself, possibly as CommonJS.
void runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).then((code) => {
  process.exitCode = code;
  // A socket the SDK keeps alive must not hold a oneshot unit in "activating"; the timer is
  // unref'd, so it only fires if something else still keeps the process up.
  setTimeout(() => process.exit(), 5_000).unref();
});
