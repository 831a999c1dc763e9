// CSRF protection for the pages' forms: a token bound to the session (an HMAC of its id), checked with the request's Origin and Sec-Fetch-Site.

import { timingSafeEqual } from 'node:crypto';
import type { CookieSigner } from './cookies.js';

export const csrfFieldName = 'csrf';

/** The token every form of a session carries: an HMAC of the session id, so it needs no storage and dies with the session. */
export function csrfToken(signer: CookieSigner, sessionId: string): string {
  return signer.tag('csrf', sessionId);
}

export interface CsrfRequest {
  /** The Origin header, when the browser sent one. */
  origin: string | undefined;
  /** The Sec-Fetch-Site header, when the browser sent one. */
  fetchSite: string | undefined;
  /** The form's csrf field. */
  token: unknown;
}

/**
 * Why a state-changing request is refused, or undefined when it may go on: the form's token must be
 * this session's, and a browser that says where the request came from must say this origin.
 * (SameSite=Strict already keeps the session cookie off cross-site requests; this holds without it.)
 */
export function csrfProblem(signer: CookieSigner, sessionId: string, expectedOrigin: string, request: CsrfRequest): string | undefined {
  if (request.fetchSite !== undefined && request.fetchSite !== 'same-origin') return `Sec-Fetch-Site is ${request.fetchSite}`;
  if (request.origin !== undefined && request.origin !== expectedOrigin) return 'the Origin is another site';
  if (typeof request.token !== 'string' || request.token.length === 0) return 'the form carries no CSRF token';
  const expected = Buffer.from(csrfToken(signer, sessionId));
  const given = Buffer.from(request.token);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'the CSRF token is not this session\'s';
  return undefined;
}
