export { newAgentState, runAgent, type AgentIdentity, type AgentState, type FleetTarget, type RunOptions, type Trust } from './agent-run';
export { startFleet, labTrust, type FleetHandle, type FleetOptions, type FleetRate } from './fleet';
export { agentCertname, enrollAgents, fleetRunPrefix, retireAgents, FLEET_DOMAIN, type EnrollOptions } from './identities';
export { realAgentRun, type RealAgentOptions, type RealAgentResult } from './real-agent';
export { STEPS, failureKind, percentile, summarize, type FleetSummary, type RequestRecord, type RunRecord, type Step, type Window } from './records';
