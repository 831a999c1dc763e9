// CORS for a UI hosted on another origin: its preflights on /v2/ and /token answered before authentication, its answers readable; every other origin gets no CORS header.

import type { NextFunction, Request, RequestHandler, Response } from 'express';

const corsAllowMethods = 'GET, HEAD, PUT, POST, PATCH, DELETE';
/** What a registry client sends besides the CORS-safelisted headers. */
const corsAllowHeaders = 'Authorization, Accept, Content-Type, Content-Range, Range';
/** What a registry UI reads from answers: digests, the auth challenge, paging, upload locations. */
const corsExposeHeaders = 'Docker-Content-Digest, WWW-Authenticate, Link, Location, Range, Docker-Upload-UUID, Docker-Distribution-Api-Version, OCI-Subject, OCI-Filters-Applied';
/** Seconds a browser may reuse a preflight's answer. */
const corsMaxAgeSeconds = 600;

const apiPattern = /^\/(?:v2|token)(?:[/?]|$)/;

/**
 * The CORS step for the configured origins (exact matches of the Origin header), or undefined when
 * none is configured. No Access-Control-Allow-Credentials: a UI elsewhere sends its Authorization
 * header itself, and the browser's own credentials for this site (a cached Basic login) never ride
 * along on another site's requests. The answers of /v2/ and /token to an allowed origin may be read
 * there (Cross-Origin-Resource-Policy relaxed for it alone).
 */
export function corsFor(origins: readonly string[] | undefined): RequestHandler | undefined {
  if (origins === undefined || origins.length === 0) return undefined;
  const allowed = new Set(origins);
  return function cors(req: Request, res: Response, next: NextFunction): void {
    if (!apiPattern.test(req.url)) return next();
    // Answers differ by Origin: shared caches must keep them apart.
    res.vary('Origin');
    const origin = req.headers.origin;
    if (origin === undefined || !allowed.has(origin)) return next();
    res.set('Access-Control-Allow-Origin', origin);
    res.set('Cross-Origin-Resource-Policy', 'cross-origin');
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
      res.set('Access-Control-Allow-Methods', corsAllowMethods);
      res.set('Access-Control-Allow-Headers', corsAllowHeaders);
      res.set('Access-Control-Max-Age', String(corsMaxAgeSeconds));
      res.set('Cache-Control', 'no-store');
      res.status(204).end();
      return;
    }
    res.set('Access-Control-Expose-Headers', corsExposeHeaders);
    next();
  };
}
