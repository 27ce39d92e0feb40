# @summary Lets the compile-master lifecycle controller work against this primary server.
#
# Applies, on an open-source Puppet Server / OpenVox primary, what `npx compile-masters
# primary-setup` prints: the CA API rule for the lifecycle client certificate, its PuppetDB
# allow-list entry, and `allow-subject-alt-names`. On Puppet Enterprise these files are managed
# by PE itself; use the console parameters primary-setup --pe prints instead.
#
# @param lifecycle_certname
#   The lifecycle client certificate's certname (CDK context `lifecycleClientCertname`).
# @param puppetdb_allowlist
#   The file named by `[puppetdb] certificate-allowlist`. Only an existing allow-list is extended:
#   turning one on where none existed would lock out every other PuppetDB client.
# @param allow_compile_masters
#   Lets the compile masters store facts, catalogs and reports in PuppetDB: the class then owns
#   the whole allow-list file and writes `puppetdb_allowlist_entries`, the lifecycle certname and
#   every active PuppetDB node whose trusted `pp_role` is `compile_master_role`. A compile master
#   is in PuppetDB from its first agent run against this primary, and the lifecycle controller
#   runs this primary after every join and purge (before a new one goes into service): that run
#   adds the newcomer and drops purged ones (deactivated nodes are not returned). PuppetDB reads
#   the allow-list only when its services start: declare `puppetdb_service` with
#   `restart => 'systemctl reload puppetdb'` (a SIGHUP, on which Trapperkeeper restarts
#   PuppetDB's services inside the running JVM and so reads the file again) rather than a full
#   restart.
# @param compile_master_role
#   The `pp_role` the compile masters' certificates carry (CDK context `roleExtension`).
# @param puppetdb_allowlist_entries
#   With `allow_compile_masters`: the other certnames allowed (this primary, other PuppetDB
#   clients). Anything else in the file is replaced.
# @param manage_auth_rule
#   Adds the auth.conf rule. Leave false when the certificate was made with
#   `puppetserver ca generate --ca-client` (it carries pp_cli_auth, which the default rules allow).
# @param manage_alt_names
#   Sets `certificate-authority.allow-subject-alt-names: true` in ca.conf: every compile master
#   asks for the load balancer's DNS name.
# @param auth_conf
#   Puppet Server's auth.conf.
# @param ca_conf
#   Puppet Server's ca.conf.
# @param puppetserver_service
#   A Service declared elsewhere (e.g. by your puppetserver profile) to restart on change; undef
#   leaves the restart to you (`systemctl restart puppetserver`).
# @param puppetdb_service
#   Likewise for PuppetDB, which reads its allow-list only when its services start (see
#   `allow_compile_masters`).
class compile_masters_primary (
  Pattern[/\A[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\z/] $lifecycle_certname,
  Optional[Stdlib::Absolutepath] $puppetdb_allowlist = undef,
  Boolean $allow_compile_masters = false,
  String[1] $compile_master_role = 'compile_master',
  Array[String[1]] $puppetdb_allowlist_entries = [$trusted['certname']],
  Boolean $manage_auth_rule = true,
  Boolean $manage_alt_names = true,
  Stdlib::Absolutepath $auth_conf = '/etc/puppetlabs/puppetserver/conf.d/auth.conf',
  Stdlib::Absolutepath $ca_conf = '/etc/puppetlabs/puppetserver/conf.d/ca.conf',
  Optional[String[1]] $puppetserver_service = undef,
  Optional[String[1]] $puppetdb_service = undef,
) {
  $restart_puppetserver = $puppetserver_service ? {
    undef   => [],
    default => [Service[$puppetserver_service]],
  }
  $restart_puppetdb = $puppetdb_service ? {
    undef   => [],
    default => [Service[$puppetdb_service]],
  }

  if $manage_auth_rule {
    # The first matching rule decides: keeping pp_cli_auth here keeps `puppetserver ca` working.
    puppet_authorization::rule { 'compile-master lifecycle controller':
      match_request_path   => '^/puppet-ca/v1/(certificate_status/|certificate_statuses/|clean$)',
      match_request_type   => 'regex',
      match_request_method => ['get', 'put', 'delete'],
      allow                => [$lifecycle_certname, { 'extensions' => { 'pp_cli_auth' => 'true' } }],
      sort_order           => 400,
      path                 => $auth_conf,
      notify               => $restart_puppetserver,
    }
  }

  if $manage_alt_names {
    hocon_setting { 'compile masters: allow-subject-alt-names':
      ensure  => present,
      path    => $ca_conf,
      setting => 'certificate-authority.allow-subject-alt-names',
      value   => true,
      notify  => $restart_puppetserver,
    }
  }

  if $puppetdb_allowlist and $allow_compile_masters {
    # The AST form needs no quoting of the role value.
    $compile_masters = puppetdb_query(
      ['from', 'inventory', ['extract', ['certname'], ['=', 'trusted.extensions.pp_role', $compile_master_role]]]
    ).map |Hash $node| { $node['certname'] }
    $allowed = sort(unique($puppetdb_allowlist_entries + [$lifecycle_certname] + $compile_masters))
    file { $puppetdb_allowlist:
      ensure  => file,
      content => "${join($allowed, "\n")}\n",
      notify  => $restart_puppetdb,
    }
  } elsif $puppetdb_allowlist {
    file_line { "compile masters: PuppetDB allows ${lifecycle_certname}":
      path    => $puppetdb_allowlist,
      line    => $lifecycle_certname,
      replace => false,
      notify  => $restart_puppetdb,
    }
  }
}
