# @summary The lab primary's own profile: lets the lab's compile masters use PuppetDB.
#
# A compile master's Puppet Server stores facts, catalogs and reports with its own certificate,
# which the lab PuppetDB's certificate-allowlist refuses (403) unless listed. As on a real
# open-source primary, the primary's own run keeps the list: compile_masters_primary writes the
# lab's fixed clients plus every active node whose trusted pp_role is compile_master, and the
# lab's PuppetDB (a plain JVM the lab started, not a systemd service) gets a SIGHUP, on which
# Trapperkeeper restarts PuppetDB's services in place and reads the list again (~2 s). The
# lifecycle controller runs the primary after every join and purge, before a new compile master
# goes into service.
#
# @param lab_dir
#   The lab directory; the primary compiles this with its code dir `<lab dir>/puppetserver/code`.
class lab_primary (
  Stdlib::Absolutepath $lab_dir = dirname(dirname($settings::codedir)),
) {
  exec { 'reload the lab PuppetDB':
    command     => "/bin/sh -c 'kill -HUP \"$(cat ${lab_dir}/run/puppetdb.pid)\"'",
    refreshonly => true,
  }

  class { 'compile_masters_primary':
    lifecycle_certname         => 'lifecycle-controller.lab.test',
    # The lab writes the CA rule and ca.conf itself (lab/configs.ts).
    manage_auth_rule           => false,
    manage_alt_names           => false,
    puppetdb_allowlist         => "${lab_dir}/puppetdb/certificate-allowlist",
    allow_compile_masters      => true,
    puppetdb_allowlist_entries => ['primary.lab.test'],
    puppetdb_service           => undef,
    notify                     => Exec['reload the lab PuppetDB'],
  }
}
