import { join } from 'node:path';
import type { ManagedProcess } from './processes';

// Debian ships Clojure as sources compiled at load time: C1-only JIT halves the start-up on two
// cores (measured ~80 s -> ~44 s) for a throughput cost a lab does not notice.
export const FAST_START = '-XX:TieredStopAtLevel=1';

export interface PuppetServerJvm {
  /** Process name: its pid file and its log file are called after it. */
  name: string;
  /** Trapperkeeper config directory (conf.d) and bootstrap directory (services.d). */
  tkConfig: string;
  tkBootstrap: string;
  logsDir: string;
  heap: string;
}

/**
 * What /usr/share/puppetserver/cli/apps/foreground runs, minus /etc: the caller's own config dirs,
 * and as root rather than the puppet user since every file is in the lab directory. Shared by the
 * lab's CA and by compile-master servers, so both run the very same JVM.
 */
export function puppetServerProcess(jvm: PuppetServerJvm): ManagedProcess {
  return {
    name: jvm.name,
    command: '/usr/bin/java',
    args: [
      jvm.heap,
      FAST_START,
      '-Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger',
      '-Djruby.lib=/usr/share/jruby/lib',
      // As the distro's CLI wrapper does, so JRuby can manage subprocesses natively.
      '--add-opens=java.base/sun.nio.ch=ALL-UNNAMED',
      '--add-opens=java.base/java.io=ALL-UNNAMED',
      '-XX:+CrashOnOutOfMemoryError',
      `-XX:ErrorFile=${join(jvm.logsDir, `${jvm.name}_err_pid%p.log`)}`,
      '-jar',
      '/usr/share/puppetserver/puppetserver.jar',
      '--config',
      jvm.tkConfig,
      '--bootstrap-config',
      jvm.tkBootstrap,
    ],
    cwd: '/usr/share/puppetserver',
  };
}
