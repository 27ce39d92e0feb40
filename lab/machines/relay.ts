import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * The lab's servers listen on loopback only; the machines reach them on the bridge's gateway
 * address through this TCP relay, as compile masters reach the primary across a VPC. TLS passes
 * through untouched: the machines verify the primary's certificate by its name.
 */
export interface Relay {
  close(): Promise<void>;
}

export async function startRelay(options: { listenHost: string; ports: ReadonlyArray<{ listen: number; to: number }>; toHost?: string }): Promise<Relay> {
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  };
  try {
    for (const { listen, to } of options.ports) {
      const server = createServer((inbound) => {
        track(inbound);
        const outbound = createConnection({ host: options.toHost ?? '127.0.0.1', port: to });
        track(outbound);
        // Either side failing ends both, as a dropped route would.
        inbound.on('error', () => outbound.destroy());
        outbound.on('error', () => inbound.destroy());
        inbound.pipe(outbound);
        outbound.pipe(inbound);
      });
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(listen, options.listenHost, () => resolve());
      });
    }
  } catch (error) {
    for (const server of servers) server.close();
    throw new Error(`cannot relay the lab's servers to ${options.listenHost}: ${(error as Error).message}`, { cause: error });
  }
  return {
    async close() {
      for (const socket of sockets) socket.destroy();
      await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    },
  };
}
