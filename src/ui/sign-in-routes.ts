// The OIDC sign-in pages on the gateway's own origin: /login, /login/callback, /login/tokens (list, revoke) and sign-out.

import express, { type Request, type Response } from 'express';
import type { Logger } from 'pino';
import { createCiToken, listCiTokens, revokeCiToken, type CiTokenRecord } from '../auth/ci-tokens.js';
import type { KnownUsers } from '../auth/ci-token-store.js';
import { SignInError, type OidcSignIn } from '../auth/oidc-sign-in.js';
import type { CookieSigner } from './cookies.js';
import { csrfFieldName, csrfProblem, csrfToken } from './csrf.js';
import { messagePage, stylesheet, stylesheetPath, tokenPage } from './pages.js';
import { PendingSignIns } from './pending-sign-in.js';
import { SessionStore, type Session } from './session.js';

/** Who a sign-in session is: the provider's user, and the access groups the ID token gave. */
export interface SignInSession {
  provider: string;
  user: string;
  subject: string;
  groups: string[];
}

export interface SignInPagesOptions {
  signIn: Pick<OidcSignIn, 'name' | 'config' | 'begin' | 'complete'>;
  signer: CookieSigner;
  /** The gateway's public URL: the origin forms must come from, and the host in the docker login line. */
  publicUrl: URL;
  tokensFile: string;
  /** The live CI-token store, re-read after a change so that it counts at once. */
  tokens: { reload(): Promise<boolean> };
  /** htpasswd: a signed-in name that is a local user is someone else, and refused. */
  users: KnownUsers;
  logger: Logger;
  sessions?: SessionStore<SignInSession>;
  now?: () => number;
}

/** Live tokens one user may hold; more means signing in in a loop, not using them. */
const maxTokensPerUser = 50;
const tokenIdPattern = /^[a-z2-7]{12}$/;

/** No script at all, styles from this origin only, forms post here only, never framed. */
const pageSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const pendingProblems: Record<'missing' | 'forged' | 'expired' | 'used', string> = {
  missing: 'This sign-in was not started in this browser (or the browser dropped its cookie).',
  forged: 'This sign-in carries a cookie this gateway did not make.',
  expired: 'This sign-in took longer than ten minutes.',
  used: 'This sign-in was already completed; its answer cannot be used twice.',
};

const statusOf: Record<SignInError['kind'], number> = { unavailable: 503, failed: 400, refused: 403 };

function send(res: Response, status: number, body: string): void {
  res.status(status).type('html').send(body);
}

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
  const { signIn, signer, logger, publicUrl } = options;
  const now = options.now ?? Date.now;
  const sessions = options.sessions ?? new SessionStore<SignInSession>({ signer, now });
  const pendings = new PendingSignIns(signer, { now });
  const log = logger.child({ component: 'sign-in', provider: signIn.name });
  const owned = (session: SignInSession) => (record: CiTokenRecord) => record.source === 'oidc' && record.provider === session.provider && record.subject === session.subject;
  const again = { href: '/login', text: 'Sign in again' };

  const router = express.Router();
  router.use('/login', (_req, res, next) => {
    res.set('Content-Security-Policy', pageSecurityPolicy);
    res.set('Cache-Control', 'no-store');
    res.set('Pragma', 'no-cache');
    next();
  });

  /** Runs a page; anything unexpected is logged and shown as a plain page, never a stack trace. */
  const page = (handler: (req: Request, res: Response) => Promise<void>) => async (req: Request, res: Response) => {
    try {
      await handler(req, res);
    } catch (error) {
      log.error({ err: error, path: req.path }, 'sign-in page failed');
      if (!res.headersSent) send(res, 500, messagePage('Something went wrong', 'The gateway could not finish this request. Try again later.', again));
      else res.destroy();
    }
  };

  const signInFailed = (res: Response, error: SignInError, user?: string) => {
    log.warn({ reason: error.message, user, kind: error.kind }, 'sign-in refused');
    noteInAccessLog(res, user, error.message);
    const text =
      error.kind === 'unavailable'
        ? 'The identity provider cannot be reached right now. Try again in a few minutes.'
        : error.kind === 'refused'
          ? `You cannot get a token here: ${error.message}.`
          : 'The identity provider\'s answer could not be used. Start again.';
    if (error.kind === 'unavailable') res.set('Retry-After', '30');
    send(res, statusOf[error.kind], messagePage(error.kind === 'unavailable' ? 'Sign-in unavailable' : 'Sign-in failed', text, again));
  };

  const showTokens = async (res: Response, session: Session<SignInSession>, created?: { credential: string; record: CiTokenRecord }) => {
    const tokens = (await listCiTokens(options.tokensFile)).filter(owned(session.data));
    const data = { ...session.data, host: publicUrl.host, csrf: csrfToken(signer, session.id), tokens, now: now() };
    send(res, 200, tokenPage(created === undefined ? data : { ...data, created }));
  };

  /** The session a state-changing form comes from, or a page saying why not (sent here). */
  const formSession = (req: Request, res: Response): Session<SignInSession> | undefined => {
    const session = sessions.read(req.headers.cookie);
    if (session !== undefined) noteInAccessLog(res, session.data.user);
    if (session === undefined) {
      send(res, 401, messagePage('Not signed in', 'Your session ended. Sign in again.', again));
      return undefined;
    }
    const body = (req.body ?? {}) as Record<string, unknown>;
    const problem = csrfProblem(signer, session.id, publicUrl.origin, { origin: req.get('origin'), fetchSite: req.get('sec-fetch-site'), token: body[csrfFieldName] });
    if (problem !== undefined) {
      log.warn({ user: session.data.user, reason: problem, path: req.path }, 'form refused: cross-site request');
      send(res, 403, messagePage('Request refused', 'This form did not come from this page. Go back, reload the page and try again.', { href: '/login/tokens', text: 'Your tokens' }));
      return undefined;
    }
    return session;
  };

  router.get(stylesheetPath, (_req, res) => {
    res.set('Cache-Control', 'public, max-age=3600');
    res.type('css').send(stylesheet);
  });

  router.get('/login', page(async (_req, res) => {
    let started;
    try {
      started = await signIn.begin();
    } catch (error) {
      if (error instanceof SignInError) return signInFailed(res, error);
      throw error;
    }
    res.append('Set-Cookie', pendings.cookie(started.pending));
    res.redirect(303, started.url.href);
  }));

  router.get('/login/callback', page(async (req, res) => {
    const read = pendings.take(req.headers.cookie);
    res.append('Set-Cookie', pendings.clear());
    if (!read.ok) {
      log.warn({ reason: `sign-in cookie ${read.reason}` }, 'sign-in refused');
      noteInAccessLog(res, undefined, `sign-in cookie ${read.reason}`);
      return send(res, 400, messagePage('Sign-in failed', pendingProblems[read.reason], again));
    }
    const query = queryOf(req);
    const answer = new URLSearchParams(query);
    if (answer.get('state') !== read.pending.state) {
      log.warn({ reason: 'state does not match the sign-in cookie' }, 'sign-in refused');
      noteInAccessLog(res, undefined, 'state does not match the sign-in cookie');
      return send(res, 400, messagePage('Sign-in failed', 'This answer belongs to another sign-in.', again));
    }
    const providerError = answer.get('error');
    if (providerError !== null) {
      const description = answer.get('error_description');
      return signInFailed(res, new SignInError('refused', `the identity provider answered ${providerError}${description ? ` (${description})` : ''}`));
    }
    let signedIn;
    try {
      signedIn = await signIn.complete(query, read.pending);
    } catch (error) {
      if (error instanceof SignInError) return signInFailed(res, error);
      throw error;
    }
    if (options.users.has(signedIn.user)) {
      return signInFailed(res, new SignInError('refused', `the name ${signedIn.user} belongs to a local user of this registry`), signedIn.user);
    }
    const data: SignInSession = { provider: signIn.name, ...signedIn };
    const live = (await listCiTokens(options.tokensFile)).filter(owned(data)).filter((record) => record.expiresAt !== null && Date.parse(record.expiresAt) > now());
    if (live.length >= maxTokensPerUser) {
      return send(res, 409, messagePage('Too many tokens', `You have ${live.length} tokens that have not expired. Revoke some first.`, { href: '/login/tokens', text: 'Your tokens' }));
    }
    const created = await createCiToken(options.tokensFile, {
      user: data.user,
      scopes: [],
      ttlSeconds: signIn.config.tokenTtlSeconds,
      origin: { source: 'oidc', provider: data.provider, subject: data.subject, groups: data.groups },
      now: new Date(now()),
    });
    await options.tokens.reload();
    log.info({ user: data.user, groups: data.groups, token: created.id, expires: created.record.expiresAt }, 'personal access token created');
    const { session, cookie } = sessions.create(data);
    res.append('Set-Cookie', cookie);
    noteInAccessLog(res, data.user);
    res.locals.authenticator = signIn.name;
    await showTokens(res, session, created);
  }));

  router.get('/login/tokens', page(async (req, res) => {
    const session = sessions.read(req.headers.cookie);
    if (session === undefined) return send(res, 401, messagePage('Not signed in', 'Sign in to see your personal access tokens.', { href: '/login', text: 'Sign in' }));
    noteInAccessLog(res, session.data.user);
    await showTokens(res, session);
  }));

  const form = express.urlencoded({ extended: false, limit: '2kb', parameterLimit: 8 });

  router.post('/login/tokens/revoke', form, page(async (req, res) => {
    const session = formSession(req, res);
    if (session === undefined) return;
    const id = (req.body as Record<string, unknown>).id;
    if (typeof id !== 'string' || !tokenIdPattern.test(id) || !(await revokeCiToken(options.tokensFile, id, owned(session.data)))) {
      return send(res, 404, messagePage('No such token', 'You have no token with that id.', { href: '/login/tokens', text: 'Your tokens' }));
    }
    await options.tokens.reload();
    log.info({ user: session.data.user, token: id }, 'personal access token revoked');
    res.redirect(303, '/login/tokens');
  }));

  router.post('/login/sign-out', form, page(async (req, res) => {
    const session = formSession(req, res);
    if (session === undefined) return;
    res.append('Set-Cookie', sessions.destroy(session));
    send(res, 200, messagePage('Signed out', 'You are signed out. Your tokens keep working until they expire or you revoke them.', { href: '/login', text: 'Sign in' }));
  }));

  return router;
}
