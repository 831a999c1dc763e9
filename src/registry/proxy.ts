// Streams authorized /v2/ requests to an upstream registry and back; makes no auth decisions.

import http, { type ClientRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Request, Response } from 'express';
import type { Logger } from 'pino';
import { ClientShare } from './client-share.js';
import { RegistryError } from '../errors.js';
import { upstreamTarget, type OutgoingRequest } from './upstream-request.js';
import { needsJsonErrorBody, relayAsJsonError, unroutedError } from './error-bodies.js';
import type { Upstream, UpstreamPool } from './upstreams.js';
import type { V2Route } from '../access/v2-route.js';

export interface RegistryProxyOptions {
  upstreams: UpstreamPool;
  logger: Logger;
  /** Public host[:port] of this request; the registry builds upload Location URLs from it. */
  publicHost(req: Request): string;
  /** Upstream exchanges one client address (an IPv6 /64) may have in flight at once (setting upstream_per_client). */
  perClient: number;
  /** A request body that sends nothing for this long is cut off, both ways (setting body_idle_timeout). */
  bodyIdleMs: number;
}

/**
 * Work the gateway does once the registry has answered and before the client hears of it (the
 * referrers index after a manifest push or delete): resolves to headers added to the answer, and
 * never rejects. The registry's answer waits meanwhile, and goes out unless the client has left.
 */
export type BeforeAnswer = (status: number, headers: IncomingHttpHeaders) => Promise<Record<string, string>>;

export interface RegistryProxy {
  /**
   * Streams the request on; `body` replaces a request body the gateway already had to read (a small
   * manifest). Errors (no registry answers, over the client's share) go to `fail` for the app's error handler.
   */
  forward(req: Request, res: Response, fail: (error: RegistryError) => void, body?: Buffer, beforeAnswer?: BeforeAnswer): void;
  close(): void;
}

/** What the gate leaves in res.locals that the proxy needs: the parsed route and what the registry is to be sent. */
interface ProxyLocals {
  route?: V2Route;
  outgoing?: OutgoingRequest;
}

/** Response headers about the registry's own connection, which must not reach the client's. */
const hopByHopHeaders = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Errors that mean the registry never got (or never answered) the request: another may. */
const connectionErrors = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN']);

/** The registry's response headers minus hop-by-hop ones; duplicates kept, Location and Content-Length untouched. */
function responseHeaders(upstreamRes: IncomingMessage): OutgoingHttpHeaders {
  const connection = upstreamRes.headers.connection ?? '';
  const named = new Set(connection.split(',').map((name) => name.trim().toLowerCase()));
  const headers: Record<string, string | string[]> = {};
  const caseOf = new Map<string, string>();
  const raw = upstreamRes.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (hopByHopHeaders.has(lower) || named.has(lower)) continue;
    const key = caseOf.get(lower);
    if (key === undefined) {
      caseOf.set(lower, name);
      headers[name] = raw[i + 1]!;
    } else {
      const existing = headers[key]!;
      headers[key] = Array.isArray(existing) ? [...existing, raw[i + 1]!] : [existing, raw[i + 1]!];
    }
  }
  return headers;
}

export function createRegistryProxy(options: RegistryProxyOptions): RegistryProxy {
  const { upstreams, logger } = options;
  const share = new ClientShare(options.perClient);
  const bodyIdleMs = options.bodyIdleMs;

  const unavailable = (streamed: boolean) => {
    const error = new RegistryError('UNAVAILABLE', 'the backend registry is unavailable; try again shortly').withHeader('Retry-After', '5');
    // The rest of a body that could not be sent is not read: the connection ends with this answer.
    return streamed ? error.withHeader('Connection', 'close') : error;
  };

  const forward = (req: Request, res: Response, fail: (error: RegistryError) => void, body: Buffer | undefined, beforeAnswer: BeforeAnswer | undefined): void => {
    const { route, outgoing } = res.locals as ProxyLocals;
    if (route === undefined || outgoing === undefined) return fail(new RegistryError('UNKNOWN', 'request reached the proxy without passing the gate'));
    const streamed = body === undefined && outgoing.framing.kind !== 'none';
    if (route.kind === 'unrouted') {
      // The registry's router answers such a path 404 in plain text; the client gets the same status in the spec's JSON.
      const error = unroutedError(req.path);
      return fail(streamed ? error.withHeader('Connection', 'close') : error);
    }
    const remote = req.socket.remoteAddress;
    // The client already left: no upstream request, and no share taken that a 'close' event would never give back.
    if (remote === undefined || res.destroyed) return void res.destroy();
    let publicHost: string;
    try {
      publicHost = options.publicHost(req);
    } catch (error) {
      return fail(error as RegistryError);
    }
    const slot = share.acquire(remote);
    if (slot === undefined) {
      const error = new RegistryError('TOOMANYREQUESTS', `too many requests in flight from this address (at most ${share.perClient}); try again shortly`).withHeader('Retry-After', '1');
      return fail(streamed ? error.withHeader('Connection', 'close') : error);
    }
    res.once('close', () => slot.release());

    const headers: OutgoingHttpHeaders = { ...outgoing.headers, 'x-forwarded-proto': 'https', 'x-forwarded-host': publicHost, 'x-forwarded-for': remote };
    if (body !== undefined) headers['content-length'] = String(body.length);
    else if (outgoing.framing.kind === 'length') headers['content-length'] = String(outgoing.framing.length);
    else if (outgoing.framing.kind === 'chunked') headers['transfer-encoding'] = 'chunked';
    else if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'DELETE') headers['content-length'] = '0';
    const target = upstreamTarget(req.method, route);
    const tried = new Set<Upstream>();

    const send = (count: number): void => {
      const upstream = upstreams.pick(tried);
      if (upstream === undefined) return fail(unavailable(streamed));
      res.locals.upstream = upstream.url.origin;
      const client = upstream.url.protocol === 'https:' ? https : http;
      const upstreamReq = client.request(new URL(target, upstream.url), { method: req.method, headers, agent: upstream.agent });
      // Cut off by the gateway (client gone, body stalled): no error of the registry's.
      let cutOff = false;
      const cut = () => {
        cutOff = true;
        upstreamReq.destroy();
      };

      upstreamReq.on('response', (upstreamRes) => {
        if (beforeAnswer === undefined) return relay(req, res, upstreamReq, upstreamRes, cut);
        upstreamRes.pause();
        // The registry's connection may fail while the answer waits; the relay below, or nobody, reads what is left.
        upstreamRes.on('error', () => {});
        void beforeAnswer(upstreamRes.statusCode ?? 502, upstreamRes.headers).then((extra) => {
          // Answered meanwhile (the registry's connection failed) or the client left: nothing more to send.
          if (res.headersSent || res.destroyed) return void upstreamRes.destroy();
          relay(req, res, upstreamReq, upstreamRes, cut, extra);
        });
      });
      upstreamReq.on('error', (error: NodeJS.ErrnoException) => {
        if (cutOff || res.destroyed) return;
        const code = error.code ?? '';
        const unreachable = connectionErrors.has(code);
        // A kept-alive socket the registry closed while idle fails with ECONNRESET: not a sign it is down.
        const stale = (code === 'ECONNRESET' || code === 'EPIPE') && count === 0;
        if (unreachable && !stale) upstreams.markDown(upstream, code);
        if (unreachable && !streamed && !res.headersSent && count < upstreams.upstreams.length) {
          if (!stale) tried.add(upstream);
          send(count + 1);
          return;
        }
        if (res.headersSent) {
          logger.warn({ err: error.message, upstream: upstream.url.origin, path: req.path }, 'upstream connection failed mid-response');
          res.destroy();
          return;
        }
        logger.warn({ err: error.message, upstream: upstream.url.origin }, 'upstream registry unreachable');
        if (streamed) req.unpipe(upstreamReq);
        fail(unavailable(streamed));
      });
      // The client hung up: its request, and whatever the registry still sends, end here.
      res.once('close', () => {
        if (!upstreamReq.writableFinished || !res.writableFinished) cut();
      });

      if (body !== undefined) upstreamReq.end(body);
      else if (!streamed) upstreamReq.end();
      else streamBody(req, res, upstreamReq, cut);
    };
    send(0);
  };

  /**
   * Streams the client's body to the registry with backpressure. A client that stops sending for
   * bodyIdleMs (while the registry is ready for more) is cut off. A body that ends early is never
   * ended upstream: the registry sees a broken connection, not a shorter chunk to commit.
   */
  const streamBody = (req: Request, res: Response, upstreamReq: ClientRequest, cut: () => void): void => {
    const idle = setTimeout(() => {
      // Paused by backpressure: waiting for the registry, not the client.
      if (req.readableFlowing === false && !req.readableEnded) return void idle.refresh();
      logger.warn({ remote: req.socket.remoteAddress, method: req.method, path: req.path, idle_ms: bodyIdleMs }, 'request body stalled; connection closed');
      cut();
      res.destroy();
    }, bodyIdleMs);
    idle.unref();
    // TLS hands the body over one record (16 KiB) at a time: what arrives in one turn of the event
    // loop goes to the registry in one write, not one system call per record.
    let corked = false;
    const uncork = () => {
      corked = false;
      upstreamReq.uncork();
    };
    req.on('data', () => {
      idle.refresh();
      if (corked) return;
      corked = true;
      upstreamReq.cork();
      setImmediate(uncork);
    });
    upstreamReq.on('drain', () => idle.refresh());
    req.once('end', () => clearTimeout(idle));
    req.once('close', () => {
      clearTimeout(idle);
      if (!req.complete) cut();
    });
    upstreamReq.once('close', () => clearTimeout(idle));
    // The head goes out now, not with the first body bytes: the registry starts on the request at once.
    upstreamReq.flushHeaders();
    req.pipe(upstreamReq);
  };

  /** Sends the registry's answer on as it comes, with backpressure, no buffering and no deadline. */
  const relay = (req: Request, res: Response, upstreamReq: ClientRequest, upstreamRes: IncomingMessage, cut: () => void, extra: Record<string, string> = {}): void => {
    if (res.destroyed) return void upstreamRes.destroy();
    const headers = { ...responseHeaders(upstreamRes), ...extra };
    // The registry answered before the whole body arrived: the rest is not read, so this connection ends here.
    if (!req.complete) headers.connection = 'close';
    if (needsJsonErrorBody(upstreamRes.statusCode ?? 502, upstreamRes.headers['content-type'])) {
      return relayAsJsonError(req, res, upstreamRes, headers, () => {
        if (!upstreamReq.writableFinished) cut();
      });
    }
    let bytes = 0;
    upstreamRes.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    upstreamRes.once('end', () => {
      res.locals.bytesOut = bytes;
    });
    res.writeHead(upstreamRes.statusCode ?? 502, headers);
    // pipe() and three listeners rather than pipeline(), which makes an AbortController and, at the
    // end of every answer, an AbortError with its stack: a measurable share of a small request's CPU.
    let settled = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      if (error) logger.debug({ err: error.message, path: req.path }, 'response relay ended early');
      if (!upstreamReq.writableFinished) cut();
    };
    // The registry's connection failed mid-answer: the client's ends too, so it sees a cut, not a shorter blob.
    upstreamRes.once('error', (error) => {
      res.destroy();
      settle(error);
    });
    res.once('finish', () => settle());
    // The client left first: what the registry still sends is not read.
    res.once('close', () => {
      if (res.writableFinished) return;
      upstreamRes.destroy();
      settle(new Error('the client connection closed'));
    });
    upstreamRes.pipe(res);
  };

  return {
    forward(req, res, fail, body, beforeAnswer) {
      forward(req, res, fail, body, beforeAnswer);
    },
    // Nothing of its own to release: the pool's agents hold the registry connections.
    close() {},
  };
}
