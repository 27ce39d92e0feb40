# @summary The machine lab's compile-master profile: each lab machine classified with
#   `pp_role = compile_master` becomes a CA-less Puppet Server of the lab's primary.
#
# The heaps are small so that three compile masters, the primary and PuppetDB fit in the lab
# machine's memory; C1-only JIT halves the start of Debian's Puppet Server, as for the lab's own
# JVMs. The primary's code dir is bind-mounted read-only at /etc/puppet/code in each machine.
#
# Only a lab machine (a systemd-nspawn container) is turned into a Puppet Server: the lab's
# node-agent tests also enroll nodes with pp_role = compile_master on the lab's host, whose
# /etc/puppet and services this must never touch.
class lab_compile_master {
  if $facts['virtual'] == 'systemd_nspawn' {
    class { 'compile_masters_compiler':
      primary_server     => 'primary.lab.test',
      primary_port       => 8140,
      puppetdb_urls      => ['https://primary.lab.test:8081'],
      heap               => '640m',
      c1_only_jit        => true,
      layout             => 'debian',
      # The lab's primary reloads PuppetDB each time the tier changes (its allow-list): agents
      # served meanwhile must not fail for it.
      soft_write_failure => true,
    }
  } else {
    notice("lab_compile_master: ${trusted['certname']} is not a lab machine (virtual: ${facts['virtual']}); nothing to do")
  }
}
