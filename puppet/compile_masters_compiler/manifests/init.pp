# @summary Makes this node an open-source compile master: a Puppet Server without a CA that
#   compiles catalogs with the primary's code, trusts the primary's CA and stores in the
#   primary's PuppetDB.
#
# Applied on the compile master itself by its agent run against the primary (classify it with
# the trusted fact `pp_role = compile_master`). What it manages:
#
# * no CA: Puppet Server's `services.d/ca.cfg` names the CA's disabled stand-in, and
#   `ca_server`/`ca_port` in puppet.conf send every CA request (agents' and this node's own) to
#   the primary;
# * the PuppetDB terminus: `puppetdb.conf` `server_urls`, `storeconfigs`, `reports = puppetdb`
#   and a `routes.yaml` that stores facts in PuppetDB with a local YAML cache (PuppetDB's
#   "connecting Puppet Server" guide). The primary's PuppetDB must let this certificate in: see
#   `compile_masters_primary`'s `allow_compile_masters`;
# * TLS with this node's own certificate from its enrollment: `webserver.conf` names the
#   agent's hostcert, hostprivkey, localcacert and hostcrl (the CRL the node agent's refresher
#   keeps current, and that Puppet Server reloads when it changes), so nothing points elsewhere;
# * the JVM heap (and optionally C1-only JIT) in the service's defaults file;
# * the puppetserver service, running and enabled, restarted when any of the above changes.
#
# The code is not managed here: Puppet Server compiles from its code dir (`/etc/puppet/code` on
# Debian, `/etc/puppetlabs/code` on AIO), which must hold what the primary's does — r10k or Code
# Manager deploying the same control repository on each compile master, or the primary's code
# dir mounted read-only (NFS/EFS; the machine lab bind-mounts it).
#
# @param primary_server
#   The primary's host name as its certificate names it (the CA, and where this node's own
#   agent keeps running).
# @param primary_port
#   The primary's Puppet Server (CA) port.
# @param puppetdb_urls
#   PuppetDB's HTTPS URLs, in order of preference (`server_urls`).
# @param soft_write_failure
#   The PuppetDB terminus's `soft_write_failure`: when PuppetDB cannot take a write (facts,
#   catalog, report) the agent still gets its catalog, and the write is lost and logged. PuppetDB
#   pauses whenever it re-reads its allow-list (compile_masters_primary's allow_compile_masters
#   reloads it as compile masters come and go): true keeps those pauses from failing agent runs.
#   Queries (puppetdb_query, collected resources) still fail while PuppetDB is away.
# @param start_timeout
#   Seconds systemd gives Puppet Server to start (TimeoutStartSec in the drop-in that also makes a
#   failed start retried).
# @param systemd_dir
#   Where the unit's drop-in goes.
# @param heap
#   JVM heap, for both -Xms and -Xmx (e.g. `2g`; `512m`-`768m` is enough for one JRuby).
# @param c1_only_jit
#   Adds `-XX:TieredStopAtLevel=1`: C1-only JIT starts Puppet Server about twice as fast where
#   its Clojure code is compiled at start-up (Debian's package), at some peak compile speed.
# @param java_args
#   Further JVM arguments after the heap.
# @param layout
#   Which packaging's paths to use: Debian's (`/etc/puppet`) or the AIO packages of Puppet and
#   OpenVox (`/etc/puppetlabs`). Chosen from the `aio_agent_version` fact, which only AIO agents
#   have.
# @param certname
#   This node's certname; its certificate is `<ssldir>/certs/<certname>.pem`.
# @param ssl_port
#   The port Puppet Server listens on (the load balancer's target port).
# @param ssl_host
#   The address Puppet Server listens on.
# @param manage_packages
#   Installs `packages` (Puppet Server and the PuppetDB terminus).
# @param packages
# @param service
#   The Puppet Server service.
# @param confdir
#   Puppet's confdir (puppet.conf, puppetdb.conf, routes.yaml).
# @param ssldir
#   The agent's ssldir, where enrollment put this node's key and certificate.
# @param server_confdir
#   Puppet Server's Trapperkeeper config directory (webserver.conf).
# @param bootstrap_dir
#   Puppet Server's services.d (ca.cfg).
# @param defaults_file
#   The service's environment file (JAVA_ARGS).
class compile_masters_compiler (
  Stdlib::Host $primary_server,
  Array[Stdlib::HTTPSUrl, 1] $puppetdb_urls,
  Stdlib::Port $primary_port = 8140,
  Boolean $soft_write_failure = false,
  Integer[60] $start_timeout = 600,
  Stdlib::Absolutepath $systemd_dir = '/etc/systemd/system',
  Pattern[/\A[1-9][0-9]*[kmgKMG]\z/] $heap = '2g',
  Boolean $c1_only_jit = false,
  Array[String[1]] $java_args = ['-Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger'],
  Enum['debian', 'aio'] $layout = $facts['aio_agent_version'] ? { undef => 'debian', default => 'aio' },
  Stdlib::Host $certname = $trusted['certname'],
  Stdlib::Port $ssl_port = 8140,
  Stdlib::IP::Address::Nosubnet $ssl_host = '0.0.0.0',
  Boolean $manage_packages = true,
  Array[String[1]] $packages = $layout ? {
    'debian' => ['puppetserver', 'puppet-terminus-puppetdb'],
    'aio'    => ['puppetserver', 'puppetdb-termini'],
  },
  String[1] $service = 'puppetserver',
  Stdlib::Absolutepath $confdir = $layout ? { 'debian' => '/etc/puppet', 'aio' => '/etc/puppetlabs/puppet' },
  Stdlib::Absolutepath $ssldir = $layout ? { 'debian' => '/var/lib/puppet/ssl', 'aio' => '/etc/puppetlabs/puppet/ssl' },
  Stdlib::Absolutepath $server_confdir = $layout ? {
    'debian' => '/etc/puppet/puppetserver/conf.d',
    'aio'    => '/etc/puppetlabs/puppetserver/conf.d',
  },
  Stdlib::Absolutepath $bootstrap_dir = $layout ? {
    'debian' => '/etc/puppet/puppetserver/services.d',
    'aio'    => '/etc/puppetlabs/puppetserver/services.d',
  },
  Stdlib::Absolutepath $defaults_file = $layout ? {
    'debian' => '/etc/default/puppetserver',
    'aio'    => $facts['os']['family'] ? { 'RedHat' => '/etc/sysconfig/puppetserver', default => '/etc/default/puppetserver' },
  },
) {
  if $manage_packages {
    package { $packages:
      ensure => installed,
      before => Service[$service],
    }
    $installed = Package[$packages]
  } else {
    $installed = []
  }

  $puppet_conf = "${confdir}/puppet.conf"
  $puppet_settings = {
    'main/ca_server'              => $primary_server,
    'main/ca_port'                => String($primary_port),
    'server/storeconfigs'         => 'true',
    'server/storeconfigs_backend' => 'puppetdb',
    'server/reports'              => 'puppetdb',
  }
  $puppet_settings.each |String $key, String $value| {
    $section_setting = split($key, '/')
    ini_setting { "compile master: puppet.conf ${key}":
      ensure  => present,
      path    => $puppet_conf,
      section => $section_setting[0],
      setting => $section_setting[1],
      value   => $value,
      require => $installed,
      notify  => Service[$service],
    }
  }

  ini_setting { 'compile master: puppetdb.conf server_urls':
    ensure  => present,
    path    => "${confdir}/puppetdb.conf",
    section => 'main',
    setting => 'server_urls',
    value   => join($puppetdb_urls, ','),
    require => $installed,
    notify  => Service[$service],
  }

  ini_setting { 'compile master: puppetdb.conf soft_write_failure':
    ensure  => present,
    path    => "${confdir}/puppetdb.conf",
    section => 'main',
    setting => 'soft_write_failure',
    value   => String($soft_write_failure),
    require => $installed,
    notify  => Service[$service],
  }

  file {
    "${confdir}/routes.yaml":
      ensure  => file,
      mode    => '0644',
      content => "---\nserver:\n  facts:\n    terminus: puppetdb\n    cache: yaml\n",
      require => $installed,
      notify  => Service[$service];

    # The CA's disabled stand-in answers nothing under /puppet-ca; the filesystem watch service
    # stays, since Puppet Server uses it to reload the CRL file when the refresher replaces it.
    "${bootstrap_dir}/ca.cfg":
      ensure  => file,
      mode    => '0644',
      content => epp('compile_masters_compiler/ca.cfg.epp'),
      require => $installed,
      notify  => Service[$service];

    "${server_confdir}/webserver.conf":
      ensure  => file,
      mode    => '0644',
      content => epp('compile_masters_compiler/webserver.conf.epp', {
        'ssl_host'          => $ssl_host,
        'ssl_port'          => $ssl_port,
        'access_log_config' => "${dirname($server_confdir)}/request-logging.xml",
        'cert'              => "${ssldir}/certs/${certname}.pem",
        'key'               => "${ssldir}/private_keys/${certname}.pem",
        'ca_cert'           => "${ssldir}/certs/ca.pem",
        'crl'               => "${ssldir}/crl.pem",
      }),
      require => $installed,
      notify  => Service[$service];
  }

  $jit = $c1_only_jit ? { true => ['-XX:TieredStopAtLevel=1'], false => [] }
  $all_java_args = join(["-Xms${heap}", "-Xmx${heap}"] + $jit + $java_args, ' ')
  file_line { 'compile master: puppetserver JAVA_ARGS':
    path    => $defaults_file,
    line    => "JAVA_ARGS=\"${all_java_args}\"",
    match   => '^JAVA_ARGS=',
    require => $installed,
    notify  => Service[$service],
  }

  # A start that fails is tried again. Debian's unit checks the JVM with `kill -0 $MAINPID` from
  # an ExecStartPost running as `puppet`; on a busy machine it can run before the JVM's process
  # has dropped root, get EPERM and fail the start (seen at boot in the machine lab), and the
  # unit's own Restart=on-abnormal does not retry an exit code. Starting on a small or loaded
  # machine can also outlast the unit's 300 s.
  $drop_in_dir = "${systemd_dir}/${service}.service.d"
  file { $drop_in_dir:
    ensure => directory,
    mode   => '0755',
  }
  file { "${drop_in_dir}/compile-master.conf":
    ensure  => file,
    mode    => '0644',
    content => "# Managed by compile_masters_compiler\n[Unit]\nStartLimitIntervalSec=0\n\n[Service]\nRestart=on-failure\nRestartSec=5\nTimeoutStartSec=${start_timeout}\n",
    notify  => Exec['compile master: systemctl daemon-reload'],
  }
  exec { 'compile master: systemctl daemon-reload':
    command     => 'systemctl daemon-reload',
    path        => ['/usr/bin', '/bin'],
    refreshonly => true,
    before      => Service[$service],
    # Goes with the service: `--skip_tags service` leaves both alone where systemd does not run.
    tag         => ['service'],
  }

  service { $service:
    ensure => running,
    enable => true,
  }
}
