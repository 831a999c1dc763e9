// The sign-in in progress: state, nonce and PKCE verifier in a short-lived signed cookie (SameSite=Lax, so it comes back from the provider), each state used once.

import { clearCookie, readCookies, setCookie, type CookieSigner } from './cookies.js';
import type { PendingSignIn } from '../auth/oidc-sign-in.js';

export const pendingCookieName = '__Host-gw-sign-in';
/** Time to sign in at the provider. */
export const pendingLifetimeSeconds = 600;

interface Payload {
  s: string;
  n: string;
  v: string;
  /** Expiry, milliseconds since the epoch. */
  e: number;
  /** 1: started from the web pages' sign-in, which go on browsing (no token is made). */
  r?: 1;
}

const fieldPattern = /^[A-Za-z0-9_-]{16,128}$/;

export type PendingRead = { ok: true; pending: PendingSignIn; toPages: boolean } | { ok: false; reason: 'missing' | 'forged' | 'expired' | 'used' };

/**
 * Writes and reads the sign-in cookie. The cookie is signed, not secret: it holds nothing the
 * browser may not know (the verifier proves the code was asked for by this browser). A state that
 * came back once is remembered until its cookie would have expired, so a replayed callback is refused
 * even with the cookie of that sign-in.
 */
export class PendingSignIns {
  readonly #signer: CookieSigner;
  readonly #now: () => number;
  /** State -> when it may be forgotten; in insertion order, which is expiry order. */
  readonly #used = new Map<string, number>();
  readonly #maxUsed: number;

  constructor(signer: CookieSigner, options: { now?: () => number; maxRemembered?: number } = {}) {
    this.#signer = signer;
    this.#now = options.now ?? Date.now;
    this.#maxUsed = options.maxRemembered ?? 100_000;
  }

  /** The Set-Cookie value that starts a sign-in. */
  cookie(pending: PendingSignIn, toPages = false): string {
    const payload: Payload = { s: pending.state, n: pending.nonce, v: pending.verifier, e: this.#now() + pendingLifetimeSeconds * 1000, ...(toPages ? { r: 1 as const } : {}) };
    const value = Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url');
    return setCookie(pendingCookieName, this.#signer.sign(pendingCookieName, value), { sameSite: 'Lax', maxAgeSeconds: pendingLifetimeSeconds });
  }

  /** The Set-Cookie value that ends it. */
  clear(): string {
    return clearCookie(pendingCookieName, 'Lax');
  }

  /**
   * The sign-in the browser's cookie holds, checked and used up: signed by this gateway, unexpired,
   * its state never seen back before. A state that fails here is never good again.
   */
  take(cookieHeader: string | undefined): PendingRead {
    const raw = readCookies(cookieHeader).get(pendingCookieName);
    if (raw === undefined) return { ok: false, reason: 'missing' };
    const value = this.#signer.verify(pendingCookieName, raw);
    if (value === undefined) return { ok: false, reason: 'forged' };
    let payload: Partial<Payload>;
    try {
      payload = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as Partial<Payload>;
    } catch {
      return { ok: false, reason: 'forged' };
    }
    const { s, n, v, e } = payload;
    if (typeof s !== 'string' || typeof n !== 'string' || typeof v !== 'string' || typeof e !== 'number') return { ok: false, reason: 'forged' };
    if (![s, n, v].every((field) => fieldPattern.test(field))) return { ok: false, reason: 'forged' };
    const now = this.#now();
    this.#forgetExpired(now);
    if (e <= now) return { ok: false, reason: 'expired' };
    if (this.#used.has(s)) return { ok: false, reason: 'used' };
    while (this.#used.size >= this.#maxUsed) this.#used.delete(this.#used.keys().next().value as string);
    this.#used.set(s, e);
    return { ok: true, pending: { state: s, nonce: n, verifier: v }, toPages: payload.r === 1 };
  }

  #forgetExpired(now: number): void {
    for (const [state, expires] of this.#used) {
      if (expires > now) break;
      this.#used.delete(state);
    }
  }
}
