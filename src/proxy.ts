// Streams authorized /v2/ requests to an upstream registry and back; makes no auth decisions.

import { Readable } from 'node:stream';
import type { Request, Response } from 'express';
import httpProxy from 'http-proxy';
import type { Logger } from 'pino';
import { RegistryError } from './errors.js';
import type { Upstream, UpstreamPool } from './upstreams.js';

export interface RegistryProxyOptions {
  upstreams: UpstreamPool;
  logger: Logger;
  /** Public host[:port] of this request; the registry builds upload Location URLs from it. */
  publicHost(req: Request): string;
}

export interface RegistryProxy {
  /**
   * Streams the request on; `body` replaces a request body the gateway already had to read (a small
   * manifest). When no registry answers, `fail` gets the error for the app's error handler.
   */
  forward(req: Request, res: Response, fail: (error: RegistryError) => void, body?: Buffer): void;
  close(): void;
}

/**
 * Headers a client might send to steer the registry's idea of where it lives, or that it must not
 * see; Expect, which this server already answered (and which makes http-proxy skip its proxyReq
 * event, so nothing here may rely on that event); and the hop-by-hop headers of the client's own
 * connection, which http-proxy passes on when it uses an agent, so that a client (or a load
 * balancer) sending `Connection: close` would close the kept-alive registry socket every time.
 */
const strippedRequestHeaders = [
  'authorization',
  'proxy-authorization',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-real-ip',
  'expect',
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
];

/** Rewrites the client's headers in place: http-proxy copies req.headers into the upstream request. */
function prepareUpstreamHeaders(req: Request, publicHost: string): void {
  for (const name of strippedRequestHeaders) delete req.headers[name];
  req.headers['x-forwarded-proto'] = 'https';
  req.headers['x-forwarded-host'] = publicHost;
  if (req.socket.remoteAddress) req.headers['x-forwarded-for'] = req.socket.remoteAddress;
}

/** Errors that mean the registry never got (or never answered) the request: another may. */
const connectionErrors = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN']);

/** Only a request without a body can be sent again: a body already streamed out cannot be replayed. */
function canResend(req: Request): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return false;
  const length = req.headers['content-length'];
  return length === undefined || length === '0';
}

interface Attempt {
  tried: Set<Upstream>;
  count: number;
  body: Buffer | undefined;
}

export function createRegistryProxy(options: RegistryProxyOptions): RegistryProxy {
  const { upstreams, logger } = options;
  // No proxyTimeout: a multi-GB layer on a slow link may take many minutes.
  const proxy = httpProxy.createProxyServer({ xfwd: false, changeOrigin: false });

  proxy.on('proxyRes', (proxyRes, _req, res) => {
    // A client that goes away mid-download must not leave the upstream response paused on a kept socket.
    res.once('close', () => {
      if (!res.writableFinished) proxyRes.destroy();
    });
    const locals = (res as Response).locals;
    let bytes = 0;
    proxyRes.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    proxyRes.once('end', () => {
      locals.bytesOut = bytes;
    });
  });

  const unavailable = () => new RegistryError('UNAVAILABLE', 'the backend registry is unavailable; try again shortly').withHeader('Retry-After', '5');

  const send = (req: Request, res: Response, fail: (error: RegistryError) => void, attempt: Attempt) => {
    const upstream = upstreams.pick(attempt.tried);
    if (!upstream) return fail(unavailable());
    res.locals.upstream = upstream.url.origin;
    const replay = attempt.body !== undefined ? Readable.from([attempt.body]) : attempt.count > 0 ? Readable.from([]) : undefined;
    const options = { target: upstream.url.origin, agent: upstream.agent, ...(replay ? { buffer: replay } : {}) };
    proxy.web(req, res, options, (error: NodeJS.ErrnoException) => {
      const code = error.code ?? '';
      const unreachable = connectionErrors.has(code);
      // A kept-alive socket the registry closed while idle fails with ECONNRESET: not a sign it is down.
      const stale = (code === 'ECONNRESET' || code === 'EPIPE') && attempt.count === 0;
      if (unreachable && !stale) upstreams.markDown(upstream, code);
      if (unreachable && !res.headersSent && (attempt.body !== undefined || canResend(req)) && attempt.count < upstreams.upstreams.length) {
        if (!stale) attempt.tried.add(upstream);
        attempt.count += 1;
        send(req, res, fail, attempt);
        return;
      }
      if (res.headersSent || res.destroyed) {
        logger.warn({ err: error.message, upstream: upstream.url.origin, path: req.path }, 'upstream connection failed mid-response');
        res.destroy();
        return;
      }
      logger.warn({ err: error.message, upstream: upstream.url.origin }, 'upstream registry unreachable');
      fail(unavailable());
    });
  };

  return {
    forward(req, res, fail, body) {
      prepareUpstreamHeaders(req, options.publicHost(req));
      send(req, res, fail, { tried: new Set(), count: 0, body });
    },
    close() {
      proxy.close();
    },
  };
}
