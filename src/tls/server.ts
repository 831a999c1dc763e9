// The HTTPS server: TLS, timeouts fit for multi-GB transfers, plain HTTP on the same port answered apart, and a graceful close. No routes.

import { constants } from 'node:crypto';
import type { RequestListener } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import type { ListenAddress } from '../config/config.js';
import { ACME_TLS_PROTOCOL, type AcmeChallenges } from './acme/challenges.js';
import { firstRecordLength, MAX_RECORD, parseClientHello } from './client-hello.js';
import { answerPlainHttp, type PlainHttpAnswer } from './plain-http.js';

/**
 * Mozilla's "intermediate" profile: TLS 1.2 only with forward-secret (ECDHE) AEAD suites, TLS 1.3
 * with its three suites. The DHE suites of that profile are left out: they need DH parameters the
 * server does not configure. The server's order decides, AES-128-GCM first (the cheapest per byte
 * on CPUs with AES instructions, which every server-class x86 and arm64 CPU has), except that a
 * client listing ChaCha20 first (one without AES instructions) gets ChaCha20. Used for the first
 * certificate and for every reload alike.
 */
export const TLS_OPTIONS = {
  minVersion: 'TLSv1.2',
  ciphers: [
    'TLS_AES_128_GCM_SHA256',
    'TLS_AES_256_GCM_SHA384',
    'TLS_CHACHA20_POLY1305_SHA256',
    'ECDHE-ECDSA-AES128-GCM-SHA256',
    'ECDHE-RSA-AES128-GCM-SHA256',
    'ECDHE-ECDSA-AES256-GCM-SHA384',
    'ECDHE-RSA-AES256-GCM-SHA384',
    'ECDHE-ECDSA-CHACHA20-POLY1305',
    'ECDHE-RSA-CHACHA20-POLY1305',
  ].join(':'),
  honorCipherOrder: true,
  secureOptions: constants.SSL_OP_PRIORITIZE_CHACHA,
} as const;

const DEFAULT_HEADERS_TIMEOUT_MS = 30_000;

export interface HttpsServerOptions {
  cert: string | Buffer;
  key: string | Buffer;
  listen: ListenAddress;
  /** How long a request head may take to arrive, over TLS or plain HTTP (default 30 s). */
  headersTimeoutMs?: number;
  /** The https host[:port] a plain-HTTP GET/HEAD is redirected to, from its Host header; undefined answers 400. */
  redirectHost?(hostHeader: string | undefined): string | undefined;
  /** Told about each plain-HTTP request answered on the TLS port. */
  onPlainHttp?(answer: PlainHttpAnswer): void;
  /** ACME tls-alpn-01 validations to answer on this port while they are pending. */
  acme?: AcmeChallenges;
}

export interface RunningServer {
  server: https.Server;
  address: AddressInfo;
  /** Serves another certificate to new connections; connections already open keep theirs. */
  setCertificate(cert: string | Buffer, key: string | Buffer): void;
  /** Stops accepting, lets requests in flight finish for up to graceMs, then cuts what is left. */
  close(graceMs: number): Promise<void>;
}

export async function startHttpsServer(listener: RequestListener, options: HttpsServerOptions): Promise<RunningServer> {
  const headersTimeoutMs = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
  const server = https.createServer(
    {
      cert: options.cert,
      key: options.key,
      ...TLS_OPTIONS,
      // Blob transfers may run for many minutes: no whole-request deadline (Node's default is 300 s)...
      requestTimeout: 0,
      // ...but headers must arrive promptly, so idle or slow-header connections cannot pile up.
      headersTimeout: headersTimeoutMs,
      keepAliveTimeout: 75_000,
      // Node's 16 KiB header limit stays: oversized headers get 431.
    },
    listener,
  );
  server.timeout = 0;
  server.on('clientError', answerClientError);
  const undecided = routeByFirstByte(server, headersTimeoutMs, {
    plain: (socket) => answerPlainHttp(socket, { redirectHost: options.redirectHost ?? (() => undefined), onAnswer: options.onPlainHttp }),
    acme: options.acme && { challenges: options.acme, server: alpnChallengeServer(options.acme) },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  const close = (graceMs: number) => {
    closing ??= new Promise<void>((resolve) => {
      const deadline = setTimeout(() => server.closeAllConnections(), graceMs);
      deadline.unref();
      server.close(() => {
        clearTimeout(deadline);
        resolve();
      });
      // Connections still being told apart, or plain HTTP being answered, carry no request to finish.
      for (const socket of undecided) socket.destroy();
      server.closeIdleConnections();
    });
    return closing;
  };
  const setCertificate = (cert: string | Buffer, key: string | Buffer) => server.setSecureContext({ ...TLS_OPTIONS, cert, key });
  return { server, address, setCertificate, close };
}

/**
 * A TLS server that only completes tls-alpn-01 handshakes: the validator checks the certificate it
 * is shown and hangs up. It has no certificate but the challenge ones, so nothing else succeeds.
 */
export function alpnChallengeServer(challenges: AcmeChallenges): tls.Server {
  const server = tls.createServer({
    minVersion: 'TLSv1.2',
    ALPNProtocols: [ACME_TLS_PROTOCOL],
    SNICallback: (name, callback) => {
      const context = challenges.alpnContext(name);
      if (context) callback(null, context);
      else callback(new Error(`no tls-alpn-01 challenge for ${name}`), undefined);
    },
  });
  server.on('secureConnection', (socket) => socket.end());
  server.on('tlsClientError', (_error, socket) => socket.destroy());
  return server;
}

const clientErrorStatus: Record<string, string> = {
  HPE_HEADER_OVERFLOW: '431 Request Header Fields Too Large',
  ERR_HTTP_REQUEST_TIMEOUT: '408 Request Timeout',
  HPE_HEADERS_TIMEOUT: '408 Request Timeout',
};

/**
 * A request Node's parser refused: answered and then closed gently (end, not destroy, which can
 * drop the answer before TLS has sent it and leave the client with a bare reset).
 */
const answered = new WeakSet<object>();

function answerClientError(error: NodeJS.ErrnoException, socket: import('node:stream').Duplex): void {
  // The parser may report the same bad head again with the next chunk: the answer is on its way.
  if (answered.has(socket)) return;
  answered.add(socket);
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status = clientErrorStatus[error.code ?? ''] ?? '400 Bad Request';
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  setTimeout(() => socket.destroy(), 2000).unref();
}

interface Routes {
  plain(socket: Socket): void;
  acme?: { challenges: AcmeChallenges; server: tls.Server } | undefined;
}

/**
 * Looks at the first byte of each connection before TLS does: a TLS handshake (or anything else that
 * is not an HTTP method's first letter) goes to the https server's own connection handling, unchanged,
 * so its timeouts, keep-alive and close work as before; plain HTTP goes to `plain` and never reaches
 * the app. While a tls-alpn-01 validation is pending, the whole ClientHello is read first, and one
 * offering `acme-tls/1` goes to the challenge server instead. Returns the sockets not yet handed
 * on, for close() to cut.
 */
function routeByFirstByte(server: https.Server, timeoutMs: number, routes: Routes): Set<Socket> {
  const tlsListeners = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  const undecided = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    undecided.add(socket);
    const destroy = () => socket.destroy();
    // Stays for the socket's life: an error on the raw socket ends it, it never reaches the process.
    socket.on('error', destroy);
    socket.on('timeout', destroy);
    socket.setTimeout(timeoutMs);
    socket.once('close', () => undecided.delete(socket));
    let seen: Buffer | undefined;
    const onReadable = () => {
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
        seen = seen ? Buffer.concat([seen, chunk]) : chunk;
      }
      if (seen === undefined) return;
      const acme = routes.acme?.challenges.alpnPending ? routes.acme : undefined;
      // HTTP methods start with a capital letter; a TLS record with 0x16.
      const isPlain = seen[0]! >= 0x41 && seen[0]! <= 0x5a;
      if (!isPlain && acme && !helloComplete(seen)) return;
      socket.off('readable', onReadable);
      socket.unshift(seen);
      if (isPlain) {
        routes.plain(socket);
        return;
      }
      const hello = acme && parseClientHello(seen);
      if (acme && hello && hello.protocols.includes(ACME_TLS_PROTOCOL)) {
        // A validator: the challenge server answers within the socket's own timeout, or nothing does.
        if (acme.challenges.alpnContext(hello.serverName)) acme.server.emit('connection', socket);
        else socket.destroy();
        return;
      }
      // From here TLS and the https server own the socket and its timers.
      socket.setTimeout(0);
      socket.off('timeout', destroy);
      undecided.delete(socket);
      for (const tlsListener of tlsListeners) tlsListener.call(server, socket);
    };
    socket.on('readable', onReadable);
  });
  return undecided;
}

/** Whether `data` holds the whole first TLS record (or is no handshake record, or more than one may hold). */
export function helloComplete(data: Buffer): boolean {
  if (data.length < 5) return data[0] !== 0x16;
  const length = firstRecordLength(data);
  return length === undefined || data.length >= Math.min(length, MAX_RECORD);
}
