// Loopback tunnels for tests: an HTTP CONNECT proxy that sends any host name to 127.0.0.1 (clients keep verifying the name), and plain TCP forwarders, one holding connections until told.

import net, { type AddressInfo, type Socket } from 'node:net';

export interface Tunnel {
  port: number;
  /** host:port pairs clients asked for, in order (CONNECT proxy only). */
  requested: string[];
  close(): Promise<void>;
}

function closer(server: net.Server, sockets: Set<Socket>): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
}

function track(sockets: Set<Socket>, socket: Socket): void {
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
  socket.on('error', () => socket.destroy());
}

/**
 * An HTTP CONNECT proxy on 127.0.0.1: `CONNECT name:port` opens a tunnel to 127.0.0.1:port, so a
 * client given HTTPS_PROXY reaches a server by a name no resolver knows, and still checks that the
 * server's certificate is for that name. No /etc/hosts change, nothing outside loopback.
 */
export async function startConnectProxy(): Promise<Tunnel> {
  const sockets = new Set<Socket>();
  const requested: string[] = [];
  const server = net.createServer((client) => {
    track(sockets, client);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) {
        if (head.length > 8192) client.destroy();
        return;
      }
      client.off('data', onData);
      const match = /^CONNECT ([^\s:]+):(\d+) HTTP\/1\.[01]\r\n/.exec(head.subarray(0, end + 2).toString('latin1'));
      if (!match) {
        client.end('HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\n\r\n');
        return;
      }
      requested.push(`${match[1]}:${match[2]}`);
      const upstream = net.connect(Number(match[2]), '127.0.0.1');
      track(sockets, upstream);
      upstream.once('connect', () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        const rest = head.subarray(end + 4);
        if (rest.length > 0) upstream.write(rest);
        client.pipe(upstream).pipe(client);
      });
      upstream.once('error', () => client.end('HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n'));
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
    };
    client.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, requested, close: closer(server, sockets) };
}

/** Forwards every connection on 127.0.0.1:`listenPort` (0: any free one) to 127.0.0.1:`targetPort`. */
export async function startTcpForwarder(listenPort: number, targetPort: number): Promise<Tunnel> {
  const sockets = new Set<Socket>();
  const server = net.createServer((client) => {
    track(sockets, client);
    const upstream = net.connect(targetPort, '127.0.0.1');
    track(sockets, upstream);
    client.pipe(upstream).pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, '127.0.0.1', () => resolve());
  });
  return { port: (server.address() as AddressInfo).port, requested: [], close: closer(server, sockets) };
}

export interface Gate extends Tunnel {
  /** Connections accepted and held, not yet forwarded. */
  readonly held: number;
  /** Forwards the held connections and every later one. */
  open(): void;
}

/**
 * A forwarder from 127.0.0.1:`listenPort` to 127.0.0.1:`targetPort` that holds every connection
 * (accepted, unread) until open(): a test can keep a validator waiting at a moment it chooses.
 */
export async function startGatedForwarder(listenPort: number, targetPort: number): Promise<Gate> {
  const sockets = new Set<Socket>();
  const waiting: Socket[] = [];
  let opened = false;
  const forward = (client: Socket) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    track(sockets, upstream);
    client.pipe(upstream).pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  };
  const server = net.createServer((client) => {
    track(sockets, client);
    if (opened) return forward(client);
    client.pause();
    waiting.push(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    requested: [],
    get held() {
      return waiting.filter((socket) => !socket.destroyed).length;
    },
    open() {
      opened = true;
      for (const client of waiting.splice(0)) if (!client.destroyed) forward(client);
    },
    close: closer(server, sockets),
  };
}
