// Builds the web pages from the configuration: sessions keyed from the token signing key, the browse, sign-in, tokens and OIDC routes, the assets; one handler for app.ts.

import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import { publicHostFor } from '../public-host.js';
import type { KnownUsers } from '../auth/ci-token-store.js';
import type { LoginServices } from '../auth/login.js';
import type { Config } from '../config/config.js';
import type { SharedState } from '../state/shared-state.js';
import { serveAsset } from './assets.js';
import type { BrowseReader } from './browse/model.js';
import { createBrowseReader, type BrowseReaderDeps } from './browse/reader.js';
import { CookieSigner, deriveKey } from './cookies.js';
import { createAccountRoutes } from './routes/account.js';
import { createBrowseRoutes } from './routes/browse.js';
import { frameOf, handle, notFound, type WebKit } from './routes/kit.js';
import { createTokenRoutes } from './routes/tokens.js';
import { SessionCookies } from './session.js';
import { shareSessionEnds } from './session-sharing.js';
import { createOidcSignIn } from './sign-in-setup.js';
import { createSignInPages } from './sign-in-routes.js';
import { pageHeaders, WebGuard } from './web-context.js';

export interface WebPagesParts {
  logger: Logger;
  /** The API's logins: the same authenticators and the same throttle. */
  logins: LoginServices;
  /** htpasswd users. */
  users: KnownUsers;
  /** The live CI-token store, read again after a token is made or revoked. */
  ciTokens: { reload(): Promise<boolean> };
  /** The token signing key (PEM): the cookie key is derived from it, so gateways sharing certs/ share sessions. */
  tokenKeyPem: string;
  /** What the browse pages read: a reader made elsewhere (tests), or the registry it is made from. */
  reader?: BrowseReader;
  registry?: Omit<BrowseReaderDeps, 'logger'>;
  /** Shared with other gateways: sign-outs reach them at once. */
  shared?: SharedState;
  now?: () => number;
}

export interface WebPages {
  /** For app.ts, before the token service and the /v2/ gate: answers the pages' paths, passes everything else on. */
  handler: express.RequestHandler;
  sessions: SessionCookies;
  close(): void;
}

/** The paths the pages answer (everything else goes on to /token and /v2/). */
function isPagePath(path: string, browse: boolean): boolean {
  if (/^\/(?:tokens|sign-out|login)(?:\/|$)/.test(path)) return true;
  return browse && (path === '/' || /^\/(?:r|sign-in)(?:\/|$)/.test(path));
}

/**
 * The web pages, or undefined when they are off (GATEWAY_UI off and no OIDC sign-in). With the UI
 * off, an OIDC provider still gets /login, the tokens page and sign-out.
 */
export async function createWebPages(config: Readonly<Config>, parts: WebPagesParts): Promise<WebPages | undefined> {
  const signIn = await createOidcSignIn(config);
  const { logger, logins } = parts;
  const made = config.ui && parts.reader === undefined && parts.registry !== undefined ? createBrowseReader({ ...parts.registry, logger: logger.child({ component: 'web' }) }) : undefined;
  const reader = config.ui ? parts.reader ?? made : undefined;
  const browse = reader !== undefined;
  if (!browse && signIn === undefined) return undefined;
  const signer = new CookieSigner(deriveKey(parts.tokenKeyPem, 'sign-in cookies'));
  const sessions = new SessionCookies({ signer, ...(parts.now === undefined ? {} : { now: parts.now }) });
  const stopSharing = parts.shared === undefined ? () => undefined : shareSessionEnds(parts.shared, sessions, logger);
  const guard = new WebGuard({
    sessions,
    signer,
    logins,
    users: parts.users,
    signInProvider: signIn?.name,
    publicOrigin: (req) => `https://${publicHostFor(config, req.headers.host) ?? 'invalid.invalid'}`,
  });
  const kit: WebKit = { config, guard, sessions, logger: logger.child({ component: 'web' }), browse, provider: signIn?.name, now: parts.now ?? Date.now };
  const tokens = createTokenRoutes(kit, { tokensFile: config.ciTokensFile, tokens: parts.ciTokens, ...(signIn === undefined ? {} : { oidcTokenTtlSeconds: signIn.config.tokenTtlSeconds }) });

  const pages = express.Router();
  pages.use(pageHeaders, guard.context());
  if (signIn !== undefined) {
    logger.info({ provider: signIn.name, issuer: signIn.config.issuer, redirectUri: signIn.redirectUri }, 'OIDC sign-in at /login');
    pages.use(createSignInPages({
      signIn,
      signer,
      sessions,
      tokensFile: config.ciTokensFile,
      tokens: parts.ciTokens,
      users: parts.users,
      logger,
      frame: (req, res) => frameOf(kit, req, res),
      showTokens: (req, res, session, created) => tokens.render(req, res, session, 200, { created }),
      home: browse ? '/' : '/tokens',
      ...(parts.now === undefined ? {} : { now: parts.now }),
    }));
  }
  pages.use(createAccountRoutes(kit, logins));
  pages.use(tokens.router);
  if (reader !== undefined) pages.use(createBrowseRoutes(kit, reader));
  pages.use(handle(kit, async (req, res) => notFound(kit, req, res)));
  if (browse) logger.info('web pages at /');

  const handler = (req: Request, res: Response, next: NextFunction): void => {
    if (serveAsset(req, res)) return;
    if (!isPagePath(req.path, browse)) return next();
    pages(req, res, next);
  };
  return {
    handler,
    sessions,
    close() {
      stopSharing();
      made?.close();
    },
  };
}
