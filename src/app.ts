// The Express app in request order: log, security headers, health, token service, /v2/ gate, forward, errors.

import express, { type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import type { Logger } from 'pino';
import type { Authorizer } from './access/access.js';
import { accessLog } from './ops/access-log.js';
import type { Config } from './config/config.js';
import { RegistryError } from './errors.js';
import { createForwarder } from './registry/forward.js';
import { createV2Gate } from './access/gate.js';
import { publicHostResolver } from './public-host.js';
import type { LoginServices } from './auth/login.js';
import type { RegistryProxy } from './registry/proxy.js';
import { refuseUnsureFraming } from './registry/request-framing.js';
import type { TokenAuthority } from './auth/token.js';
import { createTokenRouter } from './auth/token-service.js';
import type { UpstreamPool } from './registry/upstreams.js';
import type { AcmeStatus } from './tls/acme/manager.js';
import type { EventBus } from './ops/events.js';
import type { MaintenanceStatus } from './ops/maintenance.js';
import { corsFor } from './ui/cors.js';

export interface AppDependencies {
  config: Readonly<Config>;
  logger: Logger;
  tokens: TokenAuthority;
  logins: LoginServices;
  authorizer: Authorizer;
  proxy: RegistryProxy;
  upstreams: UpstreamPool;
  /** Whether the upstream registry answers; backs /readyz. */
  upstreamReady(): Promise<boolean>;
  /** Where each finished request's events go (metrics, audit, webhooks). */
  events?: EventBus;
  /** The ACME certificate's state for /readyz, when ACME is on. */
  certificateStatus?(): AcmeStatus | undefined;
  /** Refuses writes during read-only maintenance and counts those in flight (after the /v2/ gate, before the forwarder). */
  maintenanceGuard?: express.RequestHandler;
  /** Read-only maintenance as this gateway has it in force, for /readyz. */
  maintenanceStatus?(): MaintenanceStatus;
  /** The web pages on the gateway's own origin (/, /r/, /sign-in, /tokens, the OIDC sign-in at /login), before the token service and the /v2/ gate. */
  pages?: express.RequestHandler;
}

export function createApp(deps: AppDependencies): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  const publicHost = publicHostResolver(deps.config);
  const publicOrigin = (req: Request) => `https://${publicHost(req)}`;

  app.use(accessLog(deps.logger, deps.events));
  // Before anything reads the request: more header lines than clients send, or framing in doubt, is refused.
  app.use(refuseUnsureFraming);
  app.use(
    helmet({
      // HSTS without includeSubDomains: the registry may live on an apex domain that serves other hosts.
      strictTransportSecurity: { maxAge: 31_536_000, includeSubDomains: false },
      contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
      crossOriginResourcePolicy: { policy: 'same-origin' },
    }),
  );
  // A UI on a configured origin: its preflights are answered here, before authentication.
  const cors = corsFor(deps.config.corsOrigins);
  if (cors) app.use(cors);

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const ready = await deps.upstreamReady();
    // The certificate's state is reported, not judged: ACME validation may need traffic routed here first.
    const certificate = deps.certificateStatus?.();
    // Maintenance is reported, not judged: pulls go on, so the gateway stays ready.
    const maintenance = deps.maintenanceStatus?.();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ok' : 'upstream unavailable', ...(certificate ? { certificate } : {}), ...(maintenance ? { maintenance } : {}) });
  });

  if (deps.pages) app.use(deps.pages);

  if (deps.config.auth === 'token') {
    app.use(
      '/token',
      createTokenRouter({ tokens: deps.tokens, logins: deps.logins, authorizer: deps.authorizer, publicOrigin }),
    );
  }

  app.use(
    createV2Gate({
      mode: deps.config.auth,
      service: deps.config.service,
      tokens: deps.tokens,
      logins: deps.logins,
      authorizer: deps.authorizer,
      publicOrigin,
    }),
  );
  if (deps.maintenanceGuard) app.use(deps.maintenanceGuard);
  app.use(createForwarder({ proxy: deps.proxy, upstreams: deps.upstreams, authorizer: deps.authorizer, logger: deps.logger, bodyIdleMs: deps.config.bodyIdleSeconds * 1000 }));

  app.use((_req, _res, next) => {
    next(new RegistryError('UNSUPPORTED', 'not found', undefined, 404));
  });
  app.use(errorHandler(deps.logger));
  return app;
}

function errorHandler(logger: Logger) {
  return function handleError(error: unknown, req: Request, res: Response, _next: NextFunction): void {
    let registryError: RegistryError;
    if (error instanceof RegistryError) {
      registryError = error;
    } else if (isHttpError(error) && error.status < 500) {
      // body-parser and express raise these for malformed or oversized bodies.
      registryError = new RegistryError('UNSUPPORTED', error.expose ? error.message : 'bad request', undefined, error.status);
    } else {
      logger.error({ err: error, method: req.method, path: req.path }, 'request failed');
      registryError = new RegistryError('UNKNOWN', 'internal error');
    }
    res.locals.registryError = { code: registryError.code, detail: registryError.detail };
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.status(registryError.status);
    res.set('Docker-Distribution-Api-Version', 'registry/2.0');
    res.set(registryError.headers);
    res.set('Cache-Control', 'no-store');
    res.json(registryError.toBody());
  };
}

function isHttpError(error: unknown): error is { status: number; message: string; expose?: boolean } {
  return typeof error === 'object' && error !== null && typeof (error as { status?: unknown }).status === 'number';
}
