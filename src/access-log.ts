// One JSON line per request: who, what, outcome, size, time. Never credentials or query strings.

import type { NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';

export function accessLog(logger: Logger) {
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
      logger.info(
        {
          user: typeof res.locals.user === 'string' ? res.locals.user : undefined,
          remote,
          method: req.method,
          path,
          status: res.statusCode,
          bytes,
          bytes_in: Number.isFinite(requestLength) ? requestLength : undefined,
          duration_ms: Math.round(durationMs * 10) / 10,
          upstream: typeof res.locals.upstream === 'string' ? res.locals.upstream : undefined,
          completed: res.writableFinished,
        },
        'request',
      );
    });
    next();
  };
}
