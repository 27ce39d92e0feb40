export { CaClient, CertStatusSchema, parseMissing, type CertStatus, type CertState, type CrlResult } from './ca';
export { probeCertname, probeCsr, probeDuplicateCerts } from './ca-probe';
export { publicKeySha256, readCsr, readCertificate, type CertificateContents, type CsrFacts, type NamesAndExtensions } from './csr';
export { PUPPET_EXTENSION_OIDS, configuredExtensionProblem, extensionName, isPuppetExtensionName, type PuppetExtensionName } from './extensions';
export { PuppetEndpoint, backoffDelay, createAgent, DEFAULT_RETRY, DEFAULT_TIMEOUT_MS, type TlsIdentity, type RetryPolicy, type EndpointOptions } from './http';
export { OrchestratorClient, TERMINAL_JOB_STATES, type DeployRequest, type Job, type JobState } from './orchestrator';
export { PuppetDbClient, type PdbNode } from './puppetdb';
export { PuppetServerStatusClient } from './status';
export { crlSerials, isSerialRevoked, certificateFacts, serialToBigInt, type CertificateFacts } from './x509';
