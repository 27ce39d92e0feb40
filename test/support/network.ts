import { networkInterfaces } from 'node:os';

/**
 * An IPv4 address of this machine that is not loopback: a connection from it is told apart from
 * the node's own checks, as an agent's through the load balancer is.
 */
export function externalIPv4(): string {
  const address = Object.values(networkInterfaces())
    .flat()
    .find((candidate) => candidate && candidate.family === 'IPv4' && !candidate.internal)?.address;
  if (!address) throw new Error('this machine has no IPv4 address but loopback: an agent connection cannot be told from a local one');
  return address;
}
