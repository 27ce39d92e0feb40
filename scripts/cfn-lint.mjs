#!/usr/bin/env node
// Lints every synthesized CloudFormation template with cfn-lint, for each context below, and fails
// on any error (issue 12: the template has 0 cfn-lint errors). Warnings and informational findings
// are printed, not fatal. No rule is ignored: today's only findings are four W3005 warnings on the
// DependsOn that CDK itself adds from each Lambda function to its service role, kept in sight.
//
//   node scripts/cfn-lint.mjs                  synthesizes every context itself
//   node scripts/cfn-lint.mjs --reuse-cdk-out  takes the default context's templates from cdk.out,
//                                              as `npm run synth` just left them (what CI does)
//
// cfn-lint is a Python tool (pip install cfn-lint): without it on PATH this says so in one line
// and exits 0, so a machine without it still runs the rest of CI.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Every context whose template CI lints: the defaults, and each flavor that changes the template. */
const CONTEXTS = [
  { name: 'default', args: [] },
  { name: 'flavor=oss', args: ['-c', 'flavor=oss'] },
  // The primary by tag: SendCommand on instance/* under an ssm:resourceTag condition.
  { name: 'flavor=openvox, primary by tag', args: ['-c', 'flavor=openvox', '-c', 'primaryInstanceTag={"key":"puppet-role","value":"primary"}'] },
  // A private primary through a Transit Gateway: the attachment, its routes, DNS to custom resolvers.
  {
    name: 'primary through a Transit Gateway, custom resolvers',
    args: ['-c', 'primaryCidr=10.20.0.15/32', '-c', 'primaryRoute={"transitGatewayId":"tgw-0123456789abcdef0"}', '-c', 'dnsResolverCidrs=10.30.0.2/32,10.31.0.2/32'],
  },
  { name: 'primary through peering', args: ['-c', 'primaryCidr=10.20.0.15/32', '-c', 'primaryRoute={"vpcPeeringConnectionId":"pcx-0123456789abcdef0"}'] },
  // Another image (Canonical's SSM parameter), root device and user data, on Graviton.
  { name: 'platform=ubuntu2404 on arm64', args: ['-c', 'platform=ubuntu2404', '-c', 'instanceType=m7g.xlarge'] },
];

const reuseCdkOut = process.argv.includes('--reuse-cdk-out');

const version = spawnSync('cfn-lint', ['--version'], { encoding: 'utf8' });
if (version.error) {
  console.log('cfn-lint: not installed (pip install cfn-lint), so the CloudFormation templates were NOT linted');
  process.exit(0);
}
console.log(`cfn-lint: ${version.stdout.trim()}`);

let errors = 0;
try {
  for (const context of CONTEXTS) errors += lintContext(context);
} catch (error) {
  console.error(`cfn-lint: ${error.message}`);
  process.exit(1);
}
if (errors > 0) {
  console.error(`cfn-lint: ${errors} error(s): fix them in the stack`);
  process.exit(1);
}

/** Synthesizes one context (unless cdk.out is reused) and lints every template; answers the errors. */
function lintContext(context) {
  const reuse = reuseCdkOut && context.args.length === 0;
  const outdir = reuse ? 'cdk.out' : mkdtempSync(join(tmpdir(), 'cfn-lint-'));
  try {
    if (!reuse) {
      // Its output (bundling, the example-config warning) repeats `npm run synth`'s: shown only on failure.
      const synth = spawnSync('npx', ['cdk', 'synth', '-q', '-o', outdir, ...context.args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
      if (synth.status !== 0) throw new Error(`synth failed for context ${context.name}:\n${synth.stdout}${synth.stderr}`);
    }
    const templates = readdirSync(outdir).filter((file) => file.endsWith('.template.json'));
    if (templates.length === 0) throw new Error(`no template in ${outdir} for context ${context.name}`);
    return templates.reduce((sum, template) => sum + lint(join(outdir, template), `${template} (${context.name})`), 0);
  } finally {
    if (!reuse) rmSync(outdir, { recursive: true, force: true });
  }
}

/** Lints one template, prints its findings, answers its number of errors. */
function lint(path, label) {
  const run = spawnSync('cfn-lint', ['--format', 'json', '--non-zero-exit-code', 'error', path], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  let findings;
  try {
    findings = JSON.parse(run.stdout);
  } catch {
    // Not a list of findings: cfn-lint itself failed (a crash, a template it cannot read).
    console.error(`cfn-lint failed on ${label} (exit ${run.status}):\n${run.stdout}${run.stderr}`);
    return 1;
  }
  const count = (level) => findings.filter((finding) => finding.Level === level).length;
  for (const finding of findings) {
    // A template it cannot parse (E0000) has a line but no path.
    const where = [finding.Location?.Start?.LineNumber, finding.Location?.Path?.join('/')].filter((part) => part !== undefined && part !== null);
    console.log(`  ${finding.Level} ${finding.Rule?.Id} ${label}:${where.join(' ')}: ${finding.Message}`);
  }
  console.log(`cfn-lint: ${label}: ${count('Error')} errors, ${count('Warning')} warnings, ${count('Informational')} informational`);
  // The exit code counts too: it is non-zero for errors only, so it also catches an error level
  // this script does not know by name.
  return Math.max(count('Error'), run.status === 0 ? 0 : 1);
}
