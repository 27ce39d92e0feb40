class { 'compile_masters_primary':
  lifecycle_certname   => 'compile-master-lifecycle.corp.example.com',
  puppetdb_allowlist   => '/etc/puppetlabs/puppetdb/certificate-allowlist',
  puppetserver_service => 'puppetserver',
  puppetdb_service     => 'puppetdb',
}
