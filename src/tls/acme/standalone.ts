// Challenge answers for `gateway certs --acme`, while no gateway runs: tls-alpn-01 on the HTTPS port, or http-01 on the HTTP port.

import net, { type Socket } from 'node:net';
import type { ListenAddress } from '../../config/config.js';
import { parseClientHello } from '../client-hello.js';
import { startHttpListener } from '../http-listener.js';
import { alpnChallengeServer, helloComplete } from '../server.js';
import { ACME_TLS_PROTOCOL, type AcmeChallenges } from './challenges.js';
import type { ChallengeType } from './order.js';

export interface Responder {
  close(): Promise<void>;
}

const TIMEOUT_MS = 10_000;

/** Listens on `listen` for the validator; a port already taken (a running gateway) fails here with EADDRINUSE. */
export async function startStandaloneResponder(type: ChallengeType, listen: ListenAddress, challenges: AcmeChallenges): Promise<Responder> {
  if (type === 'http-01') return startHttpListener({ listen, challenges, redirectHost: () => undefined });
  const tlsServer = alpnChallengeServer(challenges);
  const sockets = new Set<Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(TIMEOUT_MS, () => socket.destroy());
    let seen: Buffer | undefined;
    const onReadable = () => {
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) seen = seen ? Buffer.concat([seen, chunk]) : chunk;
      if (seen === undefined || !helloComplete(seen)) return;
      socket.off('readable', onReadable);
      socket.unshift(seen);
      const hello = parseClientHello(seen);
      // Only validators are answered; anything else finds nothing here.
      if (hello?.protocols.includes(ACME_TLS_PROTOCOL) && challenges.alpnContext(hello.serverName)) tlsServer.emit('connection', socket);
      else socket.destroy();
    };
    socket.on('readable', onReadable);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
