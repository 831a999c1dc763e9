// Per request of a page: the security headers, who is looking (the session's identity, checked again), and the CSRF check of every form.

import type { NextFunction, Request, Response } from 'express';
import { randomBytes } from 'node:crypto';
import type { Identity } from '../access/access.js';
import type { KnownUsers } from '../auth/ci-token-store.js';
import { identityOfToken, type LoginServices } from '../auth/login.js';
import { readCookies, setCookie, type CookieSigner } from './cookies.js';
import { csrfFieldName, csrfProblem, csrfToken } from './csrf.js';
import { SessionCookies, sessionCookieName, type Session } from './session.js';

/** Only the gateway's own script and styles, forms post here only, never framed, no base. */
export const pageSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/**
 * Every page: the policy, never stored, no Referer to other sites. (Not no-referrer: with it
 * browsers send `Origin: null` on the pages' own form posts, and the Origin check could not tell
 * them from a sandboxed attacker's.)
 */
export function pageHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.set('Content-Security-Policy', pageSecurityPolicy);
  res.set('Cache-Control', 'no-store');
  res.set('Pragma', 'no-cache');
  res.set('Referrer-Policy', 'same-origin');
  next();
}

/** The cookie that binds a form's CSRF token before there is a session (the sign-in form, an anonymous visitor's forms). */
export const formCookieName = '__Host-gw-form';

export interface WebContext {
  session: Session | undefined;
  /** The session's identity as the authenticators vouch for it now; anonymous without a session. */
  identity: Identity;
}

export interface WebContextOptions {
  sessions: SessionCookies;
  signer: CookieSigner;
  logins: LoginServices;
  /** htpasswd: an OIDC user named like a local user is someone else. */
  users: KnownUsers;
  /** The configured OIDC sign-in provider's name, if any: its sessions end when it is no longer configured. */
  signInProvider: string | undefined;
  /** https://HOST[:PORT] of this request: the Origin forms must come from. */
  publicOrigin(req: Request): string;
}

/** Reads sessions and checks forms for the pages. */
export class WebGuard {
  constructor(private readonly options: WebContextOptions) {}

  /**
   * The identity behind a session while what signed it in still holds: a password sign-in's
   * credential is asked of its authenticator again (a removed user, a changed password, a revoked
   * token ends the session); an OIDC sign-in's provider must still be configured.
   */
  async identityOf(session: Session): Promise<Identity | undefined> {
    const { data } = session;
    if (data.kind === 'oidc') {
      if (data.authenticator !== this.options.signInProvider || this.options.users.has(data.user)) return undefined;
      return { user: data.user, groups: data.groups, authenticator: data.authenticator };
    }
    if (data.credential === undefined) return undefined;
    let identity: Identity | undefined;
    try {
      identity = await identityOfToken(this.options.logins, data.user, data.credential);
    } catch {
      return undefined;
    }
    if (identity === undefined || identity.user !== data.user) return undefined;
    // A directory vouches for groups only in the process that checked the password: the cookie carries them.
    if (identity.groups === undefined && data.groups.length > 0) return { ...identity, groups: data.groups };
    return identity;
  }

  /** Middleware: res.locals.web (WebContext), the session's cookie renewed or removed as needed. */
  context() {
    return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
      try {
        const read = this.options.sessions.read(req.headers.cookie);
        let web: WebContext = { session: undefined, identity: { user: null } };
        if (read !== undefined) {
          const identity = await this.identityOf(read.session);
          if (identity === undefined) {
            res.append('Set-Cookie', SessionCookies.clearCookie());
          } else {
            if (read.renewed !== undefined) res.append('Set-Cookie', read.renewed);
            web = { session: read.session, identity };
            res.locals.user = read.session.data.user;
          }
        } else if (readCookies(req.headers.cookie).has(sessionCookieName)) {
          res.append('Set-Cookie', SessionCookies.clearCookie());
        }
        res.locals.web = web;
        next();
      } catch (error) {
        next(error);
      }
    };
  }

  /** The id a form's token is bound to: the session's, else the form cookie's (made and set now when missing). */
  #formSubject(req: Request, res: Response | undefined, session: Session | undefined): string | undefined {
    if (session !== undefined) return session.id;
    const { signer } = this.options;
    const id = signer.verify(formCookieName, readCookies(req.headers.cookie).get(formCookieName));
    if (id !== undefined) return `form:${id}`;
    if (res === undefined) return undefined;
    const fresh = randomBytes(32).toString('base64url');
    res.append('Set-Cookie', setCookie(formCookieName, signer.sign(formCookieName, fresh), { sameSite: 'Strict' }));
    return `form:${fresh}`;
  }

  /** The CSRF token for the forms of this page. */
  csrfFor(req: Request, res: Response, session: Session | undefined): string {
    return csrfToken(this.options.signer, this.#formSubject(req, res, session)!);
  }

  /** Why a state-changing request must be refused, or undefined: the form's token, Origin and Sec-Fetch-Site. */
  formProblem(req: Request, session: Session | undefined): string | undefined {
    const subject = this.#formSubject(req, undefined, session);
    if (subject === undefined) return 'the browser sent no form cookie';
    const body = (req.body ?? {}) as Record<string, unknown>;
    return csrfProblem(this.options.signer, subject, this.options.publicOrigin(req), { origin: req.get('origin'), fetchSite: req.get('sec-fetch-site'), token: body[csrfFieldName] });
  }
}

export function webOf(res: Response): WebContext {
  return (res.locals.web as WebContext | undefined) ?? { session: undefined, identity: { user: null } };
}
