// Streams authorized /v2/ requests to the upstream registry and back; makes no auth decisions.

import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import type { Request, Response } from 'express';
import httpProxy from 'http-proxy';
import type { Logger } from 'pino';
import { RegistryError } from './errors.js';

export interface RegistryProxyOptions {
  upstream: URL;
  logger: Logger;
  /** Public origin for this request; the registry builds upload Location URLs from it. */
  publicOrigin(req: Request): string;
}

export interface RegistryProxy {
  forward(req: Request, res: Response): void;
  close(): void;
}

/** Headers a client might send to steer the registry's idea of where it lives, or that it must not see. */
const strippedRequestHeaders = ['authorization', 'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-real-ip', 'proxy-authorization'];

const idempotentMethods = new Set(['GET', 'HEAD']);

export function createRegistryProxy(options: RegistryProxyOptions): RegistryProxy {
  const secure = options.upstream.protocol === 'https:';
  // Keep-alive to the upstream: a pull is many small requests, and a fresh TCP handshake each adds up.
  const agentOptions = { keepAlive: true, keepAliveMsecs: 30_000, maxSockets: 512, maxFreeSockets: 64, scheduling: 'lifo' as const };
  const agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
  const proxy = httpProxy.createProxyServer({
    target: options.upstream.origin,
    agent,
    xfwd: false,
    changeOrigin: false,
    // No proxyTimeout: a multi-GB layer on a slow link may take many minutes.
  });

  proxy.on('proxyReq', (proxyReq, req, res) => {
    for (const name of strippedRequestHeaders) proxyReq.removeHeader(name);
    const origin = new URL(options.publicOrigin(req as Request));
    proxyReq.setHeader('X-Forwarded-Proto', 'https');
    proxyReq.setHeader('X-Forwarded-Host', origin.host);
    if (req.socket.remoteAddress) proxyReq.setHeader('X-Forwarded-For', req.socket.remoteAddress);
    // A client that goes away mid-transfer must not leave the upstream request hanging.
    res.once('close', () => {
      if (!res.writableFinished) proxyReq.destroy();
    });
  });

  proxy.on('proxyRes', (proxyRes, _req, res) => {
    const locals = (res as Response).locals;
    locals.upstreamStatus = proxyRes.statusCode;
    let bytes = 0;
    proxyRes.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    proxyRes.once('end', () => {
      locals.bytesOut = bytes;
    });
  });

  proxy.on('error', (error, req, res) => {
    const request = req as Request;
    const response = res as Response;
    const retryable = idempotentMethods.has(request.method) && !request.readableLength && !response.locals.retried;
    if (!response.headersSent && retryable && isStaleConnection(error)) {
      // A kept-alive socket the upstream closed (e.g. it restarted): once more on a fresh one.
      response.locals.retried = true;
      proxy.web(request, response, { buffer: Readable.from([]) });
      return;
    }
    if (response.headersSent || response.destroyed) {
      options.logger.warn({ err: error.message, path: request.path }, 'upstream connection failed mid-response');
      response.destroy();
      return;
    }
    options.logger.warn({ err: error.message, upstream: options.upstream.origin }, 'upstream registry unreachable');
    const unavailable = new RegistryError('UNAVAILABLE', 'the backend registry is unavailable; try again shortly');
    response.status(unavailable.status).set('Docker-Distribution-Api-Version', 'registry/2.0').set('Retry-After', '5').json(unavailable.toBody());
  });

  return {
    forward(req, res) {
      proxy.web(req, res);
    },
    close() {
      proxy.close();
      agent.destroy();
    },
  };
}

function isStaleConnection(error: Error): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ECONNRESET' || code === 'EPIPE';
}
