// One JSON line per request: who, what, outcome, size, time, and why a login failed or access was denied. Never credentials or query strings.

import type { NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';
import { anonymousName } from '../auth/login.js';
import type { EventBus } from './events.js';
import { requestEvents } from './request-events.js';

/** User names are the caller's choice: a log line never carries more of one than any real name needs. */
const maxLoggedUserLength = 256;

/**
 * The user the request ran as, or the name tried by a failed login; `anonymous` for a caller who
 * presented no credentials. Undefined when credentials came but were never read (the request
 * failed before authentication; a route that takes them from the body sets `user` to null until
 * it knows), so a log line never calls that caller anonymous.
 */
function userOf(req: Request, locals: Record<string, unknown>): string | undefined {
  if (typeof locals.user === 'string') return locals.user.slice(0, maxLoggedUserLength);
  if (locals.user === null) return undefined;
  return req.headers.authorization === undefined ? anonymousName : undefined;
}

/** Logs each request when it ends and tells `events` what it did (metrics, audit, webhooks listen there). */
export function accessLog(logger: Logger, events?: EventBus) {
  return function logRequest(req: Request, res: Response, next: NextFunction): void {
    const started = process.hrtime.bigint();
    // Read now: once the client hangs up, the socket no longer knows its peer.
    const remote = req.socket.remoteAddress;
    const target = req.url;
    const queryAt = target.indexOf('?');
    // Only the path: query strings carry upload state and token-request parameters.
    const path = (queryAt === -1 ? target : target.slice(0, queryAt)).slice(0, 512);
    res.once('close', () => {
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      const declaredLength = Number(res.getHeader('content-length'));
      const bytes = typeof res.locals.bytesOut === 'number' ? res.locals.bytesOut : Number.isFinite(declaredLength) && req.method !== 'HEAD' ? declaredLength : 0;
      const requestLength = Number(req.headers['content-length']);
      const user = userOf(req, res.locals);
      const authenticator = typeof res.locals.authenticator === 'string' ? res.locals.authenticator : undefined;
      if (events) {
        const bytesIn = typeof res.locals.bytesIn === 'number' ? res.locals.bytesIn : Number.isFinite(requestLength) ? requestLength : 0;
        for (const event of requestEvents(req, res, { user, remote, bytesIn, bytesOut: bytes, durationMs, completed: res.writableFinished, authenticator, throttled: res.locals.throttled === true })) {
          events.emit(event);
        }
      }
      // Above info (GATEWAY_LOG_LEVEL=warn), the line is never written: nor is it built.
      if (!logger.isLevelEnabled('info')) return;
      logger.info(
        {
          user,
          remote,
          method: req.method,
          path,
          status: res.statusCode,
          bytes,
          bytes_in: Number.isFinite(requestLength) ? requestLength : undefined,
          duration_ms: Math.round(durationMs * 10) / 10,
          upstream: typeof res.locals.upstream === 'string' ? res.locals.upstream : undefined,
          completed: res.writableFinished,
          // Set by login and the gate (never a secret): why a login failed, or what was denied by which rule.
          reason: typeof res.locals.reason === 'string' ? res.locals.reason : undefined,
          authenticator,
          throttled: res.locals.throttled === true ? true : undefined,
          denied: Array.isArray(res.locals.denied) ? res.locals.denied : undefined,
        },
        'request',
      );
    });
    next();
  };
}
