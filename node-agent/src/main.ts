import { runCli } from './cli';

// No top-level await: the CDK stack bundles this file itself, possibly as CommonJS.
void runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).then((code) => {
  process.exitCode = code;
  // Exit once the log is written rather than when the event loop empties: the instance metadata
  // client leaves a socket open after an answer other than 200, which would hold a oneshot unit
  // in "activating" and the readiness daemon's exit (Puppet Server's cue to stop) until IMDS
  // closes it. Empty writes call back after everything written before them.
  process.stdout.write('', () => process.stderr.write('', () => process.exit()));
});
