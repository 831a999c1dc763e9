// The OIDC sign-in on the gateway's own origin: /login and /login/callback; it makes the web pages' session (and, unless started from them, a personal access token).

import type { Request, Response } from 'express';
import express from 'express';
import type { Logger } from 'pino';
import { createCiToken, listCiTokens, type CiTokenRecord, type CreatedCiToken } from '../auth/ci-tokens.js';
import type { KnownUsers } from '../auth/ci-token-store.js';
import { SignInError, type OidcSignIn } from '../auth/oidc-sign-in.js';
import type { CookieSigner } from './cookies.js';
import { messagePage, type Frame } from './pages/layout.js';
import { PendingSignIns } from './pending-sign-in.js';
import { sendPage } from './routes/kit.js';
import { maxTokensPerUser } from './routes/tokens.js';
import { SessionTooLarge, type Session, type SessionCookies, type SessionData } from './session.js';

export interface SignInPagesOptions {
  signIn: Pick<OidcSignIn, 'name' | 'config' | 'begin' | 'complete'>;
  signer: CookieSigner;
  /** The web pages' sessions: one sign-in covers the pages and the tokens page. */
  sessions: SessionCookies;
  tokensFile: string;
  /** The live CI-token store, re-read after a change so that it counts at once. */
  tokens: { reload(): Promise<boolean> };
  /** htpasswd: a signed-in name that is a local user is someone else, and refused. */
  users: KnownUsers;
  logger: Logger;
  /** The page frame for this request (header, who is signed in). */
  frame(req: Request, res: Response): Frame;
  /** Shows the tokens page of a session, with the token just made. */
  showTokens(req: Request, res: Response, session: Session, created: CreatedCiToken): Promise<void>;
  /** Where a sign-in started from the web pages goes on to. */
  home: string;
  now?: () => number;
}


const pendingProblems: Record<'missing' | 'forged' | 'expired' | 'used', string> = {
  missing: 'This sign-in was not started in this browser (or the browser dropped its cookie).',
  forged: 'This sign-in carries a cookie this gateway did not make.',
  expired: 'This sign-in took longer than ten minutes.',
  used: 'This sign-in was already completed; its answer cannot be used twice.',
};

const statusOf: Record<SignInError['kind'], number> = { unavailable: 503, failed: 400, refused: 403 };

/** What the access log line of the request says: who (never a secret) and why a sign-in failed. */
function noteInAccessLog(res: Response, user: string | undefined, reason?: string): void {
  if (user !== undefined) res.locals.user = user;
  if (reason !== undefined) res.locals.reason = reason;
}

function queryOf(req: Request): string {
  const at = req.originalUrl.indexOf('?');
  return at === -1 ? '' : req.originalUrl.slice(at + 1);
}

export function createSignInPages(options: SignInPagesOptions): express.Router {
  const { signIn, signer, logger, sessions } = options;
  const now = options.now ?? Date.now;
  const pendings = new PendingSignIns(signer, { now });
  const log = logger.child({ component: 'sign-in', provider: signIn.name });
  const owned = (data: SessionData) => (record: CiTokenRecord) => record.source === 'oidc' && record.provider === data.authenticator && record.subject === data.subject;
  const again = { href: '/login', text: 'Sign in again' };

  const router = express.Router();
  const message = (req: Request, res: Response, status: number, title: string, text: string, link?: { href: string; text: string }) =>
    sendPage(res, status, messagePage(options.frame(req, res), title, text, link === undefined ? {} : { link }));

  /** Runs a page; anything unexpected is logged and shown as a plain page, never a stack trace. */
  const page = (handler: (req: Request, res: Response) => Promise<void>) => async (req: Request, res: Response) => {
    try {
      await handler(req, res);
    } catch (error) {
      log.error({ err: error, path: req.path }, 'sign-in page failed');
      if (!res.headersSent) message(req, res, 500, 'Something went wrong', 'The gateway could not finish this request. Try again later.', again);
      else res.destroy();
    }
  };

  const signInFailed = (req: Request, res: Response, error: SignInError, user?: string) => {
    log.warn({ reason: error.message, user, kind: error.kind }, 'sign-in refused');
    noteInAccessLog(res, user, error.message);
    const text =
      error.kind === 'unavailable'
        ? 'The identity provider cannot be reached right now. Try again in a few minutes.'
        : error.kind === 'refused'
          ? `You cannot sign in here: ${error.message}.`
          : 'The identity provider\'s answer could not be used. Start again.';
    if (error.kind === 'unavailable') res.set('Retry-After', '30');
    message(req, res, statusOf[error.kind], error.kind === 'unavailable' ? 'Sign-in unavailable' : 'Sign-in failed', text, again);
  };

  router.get('/login', page(async (req, res) => {
    let started;
    try {
      started = await signIn.begin();
    } catch (error) {
      if (error instanceof SignInError) return signInFailed(req, res, error);
      throw error;
    }
    res.append('Set-Cookie', pendings.cookie(started.pending, req.query.to === 'ui'));
    res.redirect(303, started.url.href);
  }));

  router.get('/login/callback', page(async (req, res) => {
    const read = pendings.take(req.headers.cookie);
    res.append('Set-Cookie', pendings.clear());
    if (!read.ok) {
      log.warn({ reason: `sign-in cookie ${read.reason}` }, 'sign-in refused');
      noteInAccessLog(res, undefined, `sign-in cookie ${read.reason}`);
      return message(req, res, 400, 'Sign-in failed', pendingProblems[read.reason], again);
    }
    const query = queryOf(req);
    const answer = new URLSearchParams(query);
    if (answer.get('state') !== read.pending.state) {
      log.warn({ reason: 'state does not match the sign-in cookie' }, 'sign-in refused');
      noteInAccessLog(res, undefined, 'state does not match the sign-in cookie');
      return message(req, res, 400, 'Sign-in failed', 'This answer belongs to another sign-in.', again);
    }
    const providerError = answer.get('error');
    if (providerError !== null) {
      const description = answer.get('error_description');
      return signInFailed(req, res, new SignInError('refused', `the identity provider answered ${providerError}${description ? ` (${description})` : ''}`));
    }
    let signedIn;
    try {
      signedIn = await signIn.complete(query, read.pending);
    } catch (error) {
      if (error instanceof SignInError) return signInFailed(req, res, error);
      throw error;
    }
    if (options.users.has(signedIn.user)) {
      return signInFailed(req, res, new SignInError('refused', `the name ${signedIn.user} belongs to a local user of this registry`), signedIn.user);
    }
    const data: SessionData = { kind: 'oidc', user: signedIn.user, groups: signedIn.groups, authenticator: signIn.name, subject: signedIn.subject };
    let made;
    try {
      made = sessions.create(data);
    } catch (error) {
      if (!(error instanceof SessionTooLarge)) throw error;
      return signInFailed(req, res, new SignInError('refused', 'the identity provider vouches for too many groups to hold in a browser session'), signedIn.user);
    }
    noteInAccessLog(res, data.user);
    res.locals.authenticator = signIn.name;
    if (read.toPages) {
      res.append('Set-Cookie', made.cookie);
      log.info({ user: data.user, groups: data.groups }, 'signed in to the web pages');
      return res.redirect(303, options.home);
    }
    const live = (await listCiTokens(options.tokensFile)).filter(owned(data)).filter((record) => record.expiresAt !== null && Date.parse(record.expiresAt) > now());
    res.append('Set-Cookie', made.cookie);
    if (live.length >= maxTokensPerUser) {
      return message(req, res, 409, 'Too many tokens', `You have ${live.length} tokens that have not expired. Revoke some first.`, { href: '/tokens', text: 'Access tokens' });
    }
    const created = await createCiToken(options.tokensFile, {
      user: data.user,
      scopes: [],
      ttlSeconds: signIn.config.tokenTtlSeconds,
      origin: { source: 'oidc', provider: signIn.name, subject: signedIn.subject, groups: data.groups },
      now: new Date(now()),
    });
    await options.tokens.reload();
    log.info({ user: data.user, groups: data.groups, token: created.id, expires: created.record.expiresAt }, 'personal access token created');
    // The page's header shows the new session.
    res.locals.web = { session: made.session, identity: { user: data.user, groups: data.groups, authenticator: signIn.name } };
    await options.showTokens(req, res, made.session, created);
  }));

  return router;
}
