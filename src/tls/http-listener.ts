// The optional plain-HTTP listener (e.g. port 80): ACME http-01 answers, and a redirect to https for everything else.

import net, { type AddressInfo, type Socket } from 'node:net';
import type { ListenAddress } from '../config/config.js';
import type { AcmeChallenges } from './acme/challenges.js';
import { answerPlainHttp, type PlainHttpAnswer } from './plain-http.js';

export interface HttpListenerOptions {
  listen: ListenAddress;
  challenges: AcmeChallenges;
  /** The https host[:port] to redirect to, from the Host header; undefined answers 400. */
  redirectHost(hostHeader: string | undefined): string | undefined;
  onAnswer?(answer: PlainHttpAnswer): void;
  /** How long a request head may take (default 30 s). */
  headersTimeoutMs?: number;
}

export interface RunningHttpListener {
  address: AddressInfo;
  close(): Promise<void>;
}

/** One request per connection, answered without the app: nothing on this port reaches the registry. */
export async function startHttpListener(options: HttpListenerOptions): Promise<RunningHttpListener> {
  const sockets = new Set<Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(options.headersTimeoutMs ?? 30_000, () => socket.destroy());
    answerPlainHttp(socket, {
      redirectHost: options.redirectHost,
      onAnswer: options.onAnswer,
      acmeHttp: (token) => options.challenges.httpAnswer(token),
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
