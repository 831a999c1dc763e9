// Sign-in with user and password (the API's login: same authenticators, same throttle) and sign-out, for the web pages.

import express, { type Request, type Response } from 'express';
import { logIn, type LoginLog, type LoginServices } from '../../auth/login.js';
import { RegistryError } from '../../errors.js';
import { messagePage } from '../pages/layout.js';
import { signInPage, type SignInPageData } from '../pages/sign-in.js';
import { SessionCookies, SessionTooLarge } from '../session.js';
import { webOf } from '../web-context.js';
import { frameOf, handle, refuseForm, sendPage, type WebKit } from './kit.js';

/** A path on this site to go to after signing in: never another site (`//host`, `/\host`), never a scheme. */
function safeNext(value: unknown): string {
  const text = Array.isArray(value) ? value[0] : value;
  if (typeof text !== 'string' || text.length > 512 || !/^\/(?![/\\])[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*$/.test(text)) return '/';
  return text;
}

function field(body: unknown, name: string, max: number): string | undefined {
  const value = ((body ?? {}) as Record<string, unknown>)[name];
  return typeof value === 'string' && value.length > 0 && value.length <= max ? value : undefined;
}

export function createAccountRoutes(kit: WebKit, logins: LoginServices): express.Router {
  const router = express.Router();
  const form = express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 8 });

  const showSignIn = (req: Request, res: Response, status: number, data: Omit<SignInPageData, 'csrf' | 'provider'>) => {
    const csrf = kit.guard.csrfFor(req, res, undefined);
    sendPage(res, status, signInPage(frameOf(kit, req, res, 'sign-in'), { ...data, csrf, ...(kit.provider === undefined ? {} : { provider: kit.provider }) }));
  };

  const signIn = express.Router();
  if (kit.browse) router.use(signIn);

  signIn.get('/sign-in', handle(kit, async (req, res) => {
    const next = safeNext(req.query.next);
    if (webOf(res).session !== undefined) return res.redirect(303, next);
    showSignIn(req, res, 200, { next });
  }));

  signIn.post('/sign-in', form, handle(kit, async (req, res) => {
    // Until the login knows who it is, the access log names nobody.
    res.locals.user = null;
    const problem = kit.guard.formProblem(req, undefined);
    if (problem !== undefined) return refuseForm(kit, req, res, problem);
    const next = safeNext((req.body as Record<string, unknown> | undefined)?.next);
    const user = field(req.body, 'user', 512);
    const password = field(req.body, 'password', 4096);
    if (user === undefined || password === undefined) return showSignIn(req, res, 400, { next, ...(user === undefined ? {} : { user }), problem: 'Enter your user name and password.' });
    let identity;
    try {
      identity = await logIn(logins, { user, password }, req.socket.remoteAddress, 'registry', res.locals as LoginLog, () => req.socket.destroyed);
    } catch (error) {
      if (!(error instanceof RegistryError)) throw error;
      // The challenge header is the API's; a page never asks the browser for Basic credentials.
      const retry = error.headers['Retry-After'];
      if (retry !== undefined) res.set('Retry-After', retry);
      if (error.code === 'TOOMANYREQUESTS') {
        return sendPage(res, 429, messagePage(frameOf(kit, req, res, 'sign-in'), 'Too many attempts', `Too many failed sign-ins. Wait ${retry === undefined ? 'a minute' : `${retry} seconds`}, then try again.`, { alert: true, link: { href: '/sign-in', text: 'Sign in' } }));
      }
      if (error.code === 'UNAVAILABLE') {
        return sendPage(res, 503, messagePage(frameOf(kit, req, res, 'sign-in'), 'Sign-in unavailable', 'The service that checks this account cannot be reached right now. Try again in a few minutes.', { alert: true, link: { href: '/sign-in', text: 'Sign in' } }));
      }
      return showSignIn(req, res, 401, { next, user, problem: 'Wrong user name or password.' });
    }
    if (identity.user === null || identity.credential === undefined) return showSignIn(req, res, 401, { next, user, problem: 'Wrong user name or password.' });
    let created;
    try {
      created = kit.sessions.create({ user: identity.user, groups: [...(identity.groups ?? [])], kind: 'password', authenticator: identity.authenticator ?? 'htpasswd', credential: identity.credential });
    } catch (error) {
      if (!(error instanceof SessionTooLarge)) throw error;
      return sendPage(res, 400, messagePage(frameOf(kit, req, res, 'sign-in'), 'Sign-in failed', 'This account belongs to too many groups for a browser session. docker login still works.', { alert: true }));
    }
    res.append('Set-Cookie', created.cookie);
    kit.logger.info({ user: identity.user, authenticator: identity.authenticator }, 'signed in to the web pages');
    res.redirect(303, next);
  }));

  /** Signs out; from the pages' own header, back to the list (now as anonymous), else a page saying so. */
  const signOut = (toList: boolean) => handle(kit, async (req, res) => {
    const { session } = webOf(res);
    if (session !== undefined) {
      const problem = kit.guard.formProblem(req, session);
      if (problem !== undefined) return refuseForm(kit, req, res, problem);
    }
    res.removeHeader('Set-Cookie');
    res.append('Set-Cookie', session === undefined ? SessionCookies.clearCookie() : kit.sessions.end(session));
    if (session !== undefined) kit.logger.info({ user: session.data.user }, 'signed out of the web pages');
    if (toList && kit.browse) return res.redirect(303, '/');
    res.locals.web = { session: undefined, identity: { user: null } };
    sendPage(res, 200, messagePage(frameOf(kit, req, res), 'Signed out', 'You are signed out. Your access tokens keep working until they expire or you revoke them.', { link: { href: kit.browse ? '/' : '/login', text: kit.browse ? 'Repositories' : 'Sign in again' } }));
  });
  router.post('/sign-out', form, signOut(true));
  router.post('/login/sign-out', form, signOut(false));

  return router;
}
