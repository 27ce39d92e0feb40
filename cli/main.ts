import { Command, CommanderError, Option } from 'commander';
import { CompileMastersError } from '../lib/errors';
import { processDeps, type CliDeps } from './deps';
import { doctor, reportDoctor } from './doctor';
import { FLAVORS, PRIMARY_RUN_MODES, type Flavor } from '../lib/flavor';
import { primarySettings, renderPrimarySetup, writePrimarySetup } from './primary-setup';
import { secretsPut, type SecretsPutOptions } from './secrets-put';
import { loadContext } from './stack';
import { reportStatus, status } from './status';
import { resolveTarget, type TargetOptions } from './target';

/** Exit codes: 0 fine, 1 doctor found problems, 2 bad input or a failed call. */
const EXIT_ERROR = 2;

const stackOption = () => new Option('--stack <name>', 'the deployed CloudFormation stack (e.g. CompileMasters)');
const regionOption = () => new Option('--region <region>', 'AWS region (default: from your AWS profile/environment)');
const cdkJsonOption = () => new Option('--cdk-json <file>', "the project's cdk.json, for the primary's settings").default('cdk.json');
const fileOptions = (command: Command) =>
  command
    .option('--cert <file>', 'lifecycle client certificate (PEM file, or - for stdin)')
    .option('--key <file>', 'its private key (PEM file, or - for stdin)')
    .option('--ca <file>', "the primary's CA certificate(s) (PEM file, or - for stdin)")
    .option('--token-file <file>', 'RBAC token (file, or - for stdin); only where the orchestrator runs the primary');

export function buildProgram(deps: CliDeps, exit: (code: number) => void): Command {
  const program = new Command('compile-masters')
    .description('Operate an elastic Puppet compile-master tier: prepare the primary, load the secrets, look at the tier, diagnose it.')
    .configureOutput({ writeOut: deps.write, writeErr: deps.warn })
    .exitOverride()
    .showHelpAfterError();

  program
    .command('primary-setup')
    .description("print (or write to --out) exactly what the primary server needs, from the stack's context")
    .addOption(new Option('--flavor <name>', "pe, oss (open-source Puppet) or openvox (default: cdk.json's flavor)").choices(FLAVORS).conflicts(['pe', 'oss']))
    .addOption(new Option('--pe', 'short for --flavor pe').conflicts('oss'))
    .addOption(new Option('--oss', 'short for --flavor oss'))
    .option('--out <dir>', 'write the steps, config fragments (and for open source and OpenVox the Puppet module) here')
    .addOption(cdkJsonOption())
    .option('--lifecycle-certname <name>', 'override the context key lifecycleClientCertname')
    .action((options: { flavor?: Flavor; pe?: boolean; oss?: boolean; out?: string; cdkJson: string; lifecycleCertname?: string }) => {
      const config = loadContext(options.cdkJson);
      const flavor = options.flavor ?? (options.oss ? 'oss' : options.pe ? 'pe' : undefined);
      const settings = primarySettings({ ...config, lifecycleClientCertname: options.lifecycleCertname ?? config.lifecycleClientCertname }, flavor);
      const setup = renderPrimarySetup(settings);
      if (options.out) deps.write(`Wrote:\n${writePrimarySetup(setup, options.out, settings.flavor).map((file) => `  ${file}`).join('\n')}\n`);
      else deps.write(setup.text);
      exit(0);
    });

  const secrets = program.command('secrets').description("the stack's Secrets Manager secrets");
  fileOptions(
    secrets
      .command('put')
      .description('validate the lifecycle certificate bundle and/or the RBAC token, then store them (values are read from files or stdin, never printed)')
      .addOption(stackOption())
      .option('--cert-secret <arn>', 'the client certificate secret (instead of --stack)')
      .option('--token-secret <arn>', 'the RBAC token secret (instead of --stack)')
      .addOption(regionOption()),
  ).action(async (options: SecretsPutOptions) => exit(await secretsPut(options, deps)));

  program
    .command('status')
    .description('one table of the tier: instance, lifecycle state, certname, CA, PuppetDB, target health, registry; drift marked with !')
    .addOption(stackOption().conflicts('lab'))
    .option('--lab', 'the Puppet lab on this machine')
    .option('--json', 'machine-readable output')
    .addOption(regionOption())
    .addOption(cdkJsonOption())
    .action(async (options: TargetOptions & { json?: boolean }) => {
      const result = await status(await resolveTarget(options, deps), deps);
      exit(reportStatus(result, { json: options.json === true }, deps));
    });

  fileOptions(
    program
      .command('doctor')
      .description('check the tier end to end: secrets, the primary reachable, the lifecycle certificate allowed at the CA and PuppetDB, alt names, and what runs the primary (the orchestrator and its token, or SSM); each failure with its fix')
      .addOption(stackOption().conflicts('lab'))
      .option('--lab', 'the Puppet lab on this machine')
      .option('--cert-secret <arn>', 'the client certificate secret (instead of --stack)')
      .option('--token-secret <arn>', 'the RBAC token secret (instead of --stack)')
      .option('--ca-url <url>', 'Puppet CA, e.g. https://puppet.corp.example.com:8140 (default: from cdk.json or the lab)')
      .option('--puppetdb-url <url>', 'PuppetDB, e.g. https://puppet.corp.example.com:8081')
      .option('--orchestrator-url <url>', 'PE orchestrator, e.g. https://puppet.corp.example.com:8143')
      .addOption(new Option('--flavor <name>', "without --stack: the site's flavor (default: cdk.json's, else pe)").choices(FLAVORS).conflicts('stack'))
      .addOption(new Option('--primary-run <mode>', "without --stack: what runs the primary (default: cdk.json's, else the flavor's default)").choices(PRIMARY_RUN_MODES).conflicts('stack'))
      .addOption(regionOption())
      .addOption(cdkJsonOption()),
  ).action(async (options: TargetOptions) => exit(reportDoctor(await doctor(await resolveTarget(options, deps), deps), deps)));

  return program;
}

/** Runs one command line; answers the exit code. Errors end here, printed once with their fix. */
export async function run(argv: readonly string[], deps: CliDeps = processDeps()): Promise<number> {
  let code = 0;
  const program = buildProgram(deps, (exitCode) => (code = exitCode));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT_ERROR;
    if (error instanceof CompileMastersError) {
      deps.warn(`error: ${error.message}\n`);
      return EXIT_ERROR;
    }
    throw error;
  }
}
