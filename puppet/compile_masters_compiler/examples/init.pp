# On the primary, classify compile masters by their trusted role (site.pp, or your ENC):
#   node default {
#     if $trusted['extensions']['pp_role'] == 'compile_master' { include profile::compile_master }
#   }
class { 'compile_masters_compiler':
  primary_server => 'puppet.corp.example.com',
  puppetdb_urls  => ['https://puppet.corp.example.com:8081'],
  heap           => '2g',
}
