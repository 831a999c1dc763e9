// The plain-HTTP metrics listener: GET /metrics and nothing else, without the app, with small limits on what a client may send or hold.

import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { ListenAddress } from '../config/settings.js';

export interface MetricsListenerOptions {
  listen: ListenAddress;
  /** The exposition text and its content type. */
  render(): Promise<string>;
  contentType: string;
  /** A scrape that could not be answered (the client gets 500). */
  onError?(error: Error): void;
}

export interface RunningMetricsListener {
  address: AddressInfo;
  close(): Promise<void>;
}

/** Connections at once: Prometheus needs one or two; more is someone else. */
const maxConnections = 16;

function answer(res: http.ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(`${text}\n`);
}

/** Starts listening; rejects (with the socket error, e.g. EADDRINUSE) when the address cannot be bound. */
export async function startMetricsListener(options: MetricsListenerOptions): Promise<RunningMetricsListener> {
  const sockets = new Set<Socket>();
  const server = http.createServer(
    { maxHeaderSize: 8 * 1024, headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000, requireHostHeader: false },
    (req, res) => {
      const target = req.url ?? '';
      const queryAt = target.indexOf('?');
      const path = queryAt === -1 ? target : target.slice(0, queryAt);
      // A scrape has no body; one that comes is not read, and the connection ends with the answer.
      if (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') return answer(res, 400, 'a request body is not accepted here', { connection: 'close' });
      if (req.headers['transfer-encoding'] !== undefined) return answer(res, 400, 'a request body is not accepted here', { connection: 'close' });
      if (path !== '/metrics') return answer(res, 404, 'not found: only /metrics is served here');
      if (req.method !== 'GET' && req.method !== 'HEAD') return answer(res, 405, 'method not allowed', { allow: 'GET, HEAD' });
      options.render().then(
        (text) => {
          res.writeHead(200, { 'content-type': options.contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
          res.end(req.method === 'HEAD' ? undefined : text);
        },
        (error: unknown) => {
          options.onError?.(error as Error);
          if (!res.headersSent) answer(res, 500, 'metrics unavailable');
        },
      );
    },
  );
  server.maxConnections = maxConnections;
  server.maxRequestsPerSocket = 1000;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // An idle connection that holds a slot is let go after a minute.
    socket.setTimeout(60_000, () => socket.destroy());
  });
  server.on('clientError', (_error, socket: Socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
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
