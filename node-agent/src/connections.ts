import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';

/**
 * Agents still connected to the local Puppet Server, read from the kernel's socket tables. The
 * readiness daemon waits for them to finish their runs before it lets Puppet Server stop: a
 * stopping Puppet Server answers the next request on an open connection with 503, and an agent
 * whose catalog was compiled then fails fetching its files.
 *
 * /proc/self/net rather than /proc/net: the daemon's unit sets ProcSubset=pid, which hides the
 * latter but keeps the process's own directory, whose net/ is the same network namespace's.
 */

const ESTABLISHED = '01';

/** Remote addresses of the ESTABLISHED connections to local `port` in one /proc/net/tcp{,6} table. */
export function establishedPeers(table: string, port: number): string[] {
  const wantedPort = port.toString(16).toUpperCase().padStart(4, '0');
  const peers: string[] = [];
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const [local, remote, state] = [fields[1], fields[2], fields[3]];
    if (!local || !remote || state !== ESTABLISHED) continue;
    const [, localPort] = local.split(':');
    if (localPort?.toUpperCase() !== wantedPort) continue;
    peers.push(decodeAddress(remote.split(':')[0] ?? ''));
  }
  return peers;
}

/**
 * The kernel prints each 32-bit word of an address in host byte order; every EC2 and lab
 * architecture (x86_64, arm64) is little-endian, so each word's bytes are reversed.
 */
function decodeAddress(hex: string): string {
  const bytes: number[] = [];
  for (let word = 0; word < hex.length; word += 8) {
    const chunk = hex.slice(word, word + 8);
    for (let index = 6; index >= 0; index -= 2) bytes.push(Number.parseInt(chunk.slice(index, index + 2), 16));
  }
  if (bytes.length === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let index = 0; index < 16; index += 2) groups.push((((bytes[index] ?? 0) << 8) | (bytes[index + 1] ?? 0)).toString(16));
  const mapped = groups.slice(0, 5).every((group) => group === '0') && groups[5] === 'ffff';
  return mapped ? `::ffff:${bytes.slice(12).join('.')}` : groups.join(':');
}

/**
 * Connections over loopback are this node's own (the node agent's and this daemon's checks of
 * the local Puppet Server); agents and the load balancer come from other addresses.
 */
export function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address.startsWith('::ffff:127.') || address === '0:0:0:0:0:0:0:1';
}

export type ReadTable = (path: string) => Promise<string>;

/** How many agent connections the local Puppet Server on `port` has open. */
export async function openAgentConnections(port: number, read: ReadTable = (path) => readFile(path, 'utf8')): Promise<number> {
  // decodeAddress reads little-endian words; elsewhere loopback would pass for an agent.
  if (endianness() !== 'LE') throw new Error('the kernel socket tables are read as little-endian; this host is big-endian');
  let count = 0;
  for (const path of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
    let table: string;
    try {
      table = await read(path);
    } catch (error) {
      // A kernel without IPv6 has no tcp6 table.
      if (path.endsWith('6') && (error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    count += establishedPeers(table, port).filter((peer) => !isLoopback(peer)).length;
  }
  return count;
}
