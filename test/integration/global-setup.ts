// Vitest's global setup for the integration project: the Puppet lab, started unless healthy.
export { default } from '../../lab/ensure-lab';
