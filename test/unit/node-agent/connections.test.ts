import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { establishedPeers, isLoopback, openAgentConnections } from '../../../node-agent/src/connections';
import { externalIPv4 } from '../../support/network';

const HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
const row = (local: string, remote: string, state: string) => `   0: ${local} ${remote} ${state} 00000000:00000000 00:00000000 00000000   999        0 4242 1 0000000000000000 20 4 30 10 -1`;

describe('establishedPeers: a /proc/net/tcp{,6} table read as the kernel writes it', () => {
  it('lists the remote address of each ESTABLISHED connection to the port, and nothing else', () => {
    const table = [
      HEADER,
      row('00000000:1FCC', '00000000:0000', '0A'), // the listener
      row('0A00010A:1FCC', '0502000A:C350', '01'), // 10.0.2.5 -> 10.1.0.10:8140, established
      row('0100007F:1FCC', '0100007F:D431', '01'), // loopback
      row('0A00010A:1FCC', '0602000A:C351', '06'), // TIME_WAIT
      row('0A00010A:1FCD', '0702000A:C352', '01'), // another port (8141)
      '',
    ].join('\n');
    expect(establishedPeers(table, 8140)).toEqual(['10.0.2.5', '127.0.0.1']);
  });

  it('decodes IPv6 and IPv4-mapped addresses', () => {
    const table = [
      HEADER,
      row('00000000000000000000000000000000:1FCC', '0000000000000000FFFF00000502000A:C350', '01'),
      row('00000000000000000000000001000000:1FCC', '00000000000000000000000001000000:C351', '01'),
    ].join('\n');
    expect(establishedPeers(table, 8140)).toEqual(['::ffff:10.0.2.5', '0:0:0:0:0:0:0:1']);
    // 2001:db8::1, each 32-bit word in little-endian order.
    expect(establishedPeers([HEADER, row('00000000000000000000000000000000:1FCC', 'B80D0120000000000000000001000000:C352', '01')].join('\n'), 8140)).toEqual(['2001:db8:0:0:0:0:0:1']);
  });

  it('tells loopback peers (this node\'s own checks) from agents', () => {
    expect(['127.0.0.1', '127.1.2.3', '::ffff:127.0.0.1', '0:0:0:0:0:0:0:1'].map(isLoopback)).toEqual([true, true, true, true]);
    expect(['10.0.2.5', '::ffff:10.0.2.5', '2001:db8:0:0:0:0:0:1'].map(isLoopback)).toEqual([false, false, false]);
  });
});

describe('openAgentConnections, reading this machine\'s own socket tables', () => {
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    for (const close of cleanup.splice(0)) close();
  });

  async function listen(): Promise<{ server: Server; port: number; accepted: Socket[] }> {
    const accepted: Socket[] = [];
    const server = createServer((socket) => accepted.push(socket)).listen(0, '0.0.0.0');
    await once(server, 'listening');
    cleanup.push(() => {
      for (const socket of accepted) socket.destroy();
      server.close();
    });
    return { server, port: (server.address() as AddressInfo).port, accepted };
  }

  async function connectFrom(host: string, port: number): Promise<Socket> {
    const socket = connect({ host, port, localAddress: host });
    await once(socket, 'connect');
    cleanup.push(() => socket.destroy());
    return socket;
  }

  it('counts a connection from another address, not one over loopback, and forgets it once closed', async () => {
    const external = externalIPv4();
    const { port } = await listen();
    expect(await openAgentConnections(port)).toBe(0);
    await connectFrom('127.0.0.1', port);
    expect(await openAgentConnections(port)).toBe(0);
    const agent = await connectFrom(external, port);
    expect(await openAgentConnections(port)).toBe(1);
    agent.destroy();
    let open = 1;
    for (let tries = 0; tries < 50 && open > 0; tries += 1) {
      await sleep(20);
      open = await openAgentConnections(port);
    }
    expect(open).toBe(0);
  });

  it('needs no tcp6 table (a kernel without IPv6), but fails when tcp cannot be read', async () => {
    const missing = Object.assign(new Error('no such file'), { code: 'ENOENT' });
    const tables: Record<string, string> = { '/proc/self/net/tcp': [HEADER, row('0A00010A:1FCC', '0502000A:C350', '01')].join('\n') };
    const read = async (path: string) => {
      const table = tables[path];
      if (table === undefined) throw missing;
      return table;
    };
    expect(await openAgentConnections(8140, read)).toBe(1);
    await expect(openAgentConnections(8140, async () => Promise.reject(missing))).rejects.toThrow('no such file');
  });
});
