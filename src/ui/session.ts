// Web sessions in a signed, self-contained __Host- cookie (SameSite=Strict): who signed in, how and when; idle and absolute expiry read from the cookie, ended ids remembered.

import { randomBytes } from 'node:crypto';
import { clearCookie, readCookies, setCookie, type CookieSigner } from './cookies.js';

export const sessionCookieName = '__Host-gw-session';

/** Who a session is. Signed, not secret: the browser holds it (HttpOnly), and it names nothing the user may not know. */
export interface SessionData {
  user: string;
  /** Access groups the sign-in vouched for (a directory's or an identity provider's, mapped). */
  groups: string[];
  /** `password`: user and password through the authenticator chain; `oidc`: the OIDC sign-in at /login. */
  kind: 'password' | 'oidc';
  /** The authenticator that said yes (htpasswd, ci-tokens, a provider's name), or the OIDC provider's name. */
  authenticator: string;
  /** For an OIDC sign-in: the ID token's subject. */
  subject?: string;
  /** For a password sign-in: the chain's credential (a fingerprint, never the password), checked again on every request. */
  credential?: string;
}

export interface Session {
  /** 32 random bytes, base64url; new at every sign-in. */
  readonly id: string;
  readonly data: SessionData;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  readonly lastSeenAt: number;
}

export interface SessionRead {
  session: Session;
  /** A Set-Cookie value carrying the later lastSeenAt, when the cookie's is old enough to be renewed. */
  renewed?: string;
}

export interface SessionCookiesOptions {
  signer: CookieSigner;
  /** A session unused this long ends; default 30 minutes. */
  idleSeconds?: number;
  /** A session ends this long after sign-in however it is used; default 8 hours. */
  absoluteSeconds?: number;
  /** The cookie is written again when its lastSeenAt is older than this; default 60 seconds. */
  renewAfterSeconds?: number;
  /** Ended session ids remembered at most (each until its absolute expiry). */
  maxEnded?: number;
  /** Milliseconds since the epoch (tests move it). */
  now?: () => number;
}

/** The cookie's JSON: short keys keep it small. */
interface Payload {
  v: 1;
  i: string;
  u: string;
  g: string[];
  k: 'password' | 'oidc';
  a: string;
  s?: string;
  c?: string;
  t: number;
  l: number;
}

const idPattern = /^[A-Za-z0-9_-]{43}$/;
const maxText = 512;
const maxGroups = 256;

export class SessionTooLarge extends Error {}

const isText = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && value.length <= maxText;

function payloadOf(value: string): Payload | undefined {
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof data !== 'object' || data === null) return undefined;
  const p = data as Record<string, unknown>;
  if (p.v !== 1 || typeof p.i !== 'string' || !idPattern.test(p.i) || !isText(p.u) || !isText(p.a)) return undefined;
  if (p.k !== 'password' && p.k !== 'oidc') return undefined;
  if (!Array.isArray(p.g) || p.g.length > maxGroups || !p.g.every(isText)) return undefined;
  if ((p.s !== undefined && !isText(p.s)) || (p.c !== undefined && !isText(p.c))) return undefined;
  if (!Number.isSafeInteger(p.t) || !Number.isSafeInteger(p.l) || (p.l as number) < (p.t as number)) return undefined;
  return p as unknown as Payload;
}

/**
 * Sessions that live in their cookie, so that every worker and every gateway sharing the token
 * signing key reads them alike (no session table to share). A cookie counts only when this key
 * signed it for this name, it parses, neither expiry has passed and its id was not ended (signed
 * out); anything else reads as no session. The idle expiry moves with use: the cookie is written
 * again, with a later lastSeenAt, at most once a renewAfter.
 */
export class SessionCookies {
  readonly #signer: CookieSigner;
  readonly #idleMs: number;
  readonly #absoluteMs: number;
  readonly #renewMs: number;
  readonly #maxEnded: number;
  readonly #now: () => number;
  /** Ended id -> when it would have expired anyway; in insertion order. */
  readonly #ended = new Map<string, number>();
  readonly #listeners = new Set<(id: string, until: number) => void>();

  constructor(options: SessionCookiesOptions) {
    this.#signer = options.signer;
    this.#idleMs = (options.idleSeconds ?? 30 * 60) * 1000;
    this.#absoluteMs = (options.absoluteSeconds ?? 8 * 3600) * 1000;
    this.#renewMs = (options.renewAfterSeconds ?? 60) * 1000;
    this.#maxEnded = options.maxEnded ?? 100_000;
    this.#now = options.now ?? Date.now;
    if (!(this.#idleMs > 0 && this.#absoluteMs >= this.#idleMs && this.#renewMs >= 0 && this.#renewMs < this.#idleMs)) {
      throw new Error('session lifetimes must be positive, the absolute one at least the idle one, renewal sooner than idle');
    }
  }

  get absoluteSeconds(): number {
    return this.#absoluteMs / 1000;
  }

  /** A new session with a fresh id, and its Set-Cookie value; SessionTooLarge when it would not fit a cookie. */
  create(data: SessionData): { session: Session; cookie: string } {
    const now = this.#now();
    const session: Session = { id: randomBytes(32).toString('base64url'), data: { ...data, groups: [...new Set(data.groups)] }, createdAt: now, lastSeenAt: now };
    return { session, cookie: this.#cookie(session, now) };
  }

  /** The session a Cookie header carries, or undefined for none, forged, tampered, expired or ended. */
  read(cookieHeader: string | undefined): SessionRead | undefined {
    const value = this.#signer.verify(sessionCookieName, readCookies(cookieHeader).get(sessionCookieName));
    if (value === undefined) return undefined;
    const p = payloadOf(value);
    if (p === undefined || this.isEnded(p.i)) return undefined;
    const now = this.#now();
    if (now - p.l >= this.#idleMs || now - p.t >= this.#absoluteMs || p.t > now + 60_000) return undefined;
    const data: SessionData = { user: p.u, groups: p.g, kind: p.k, authenticator: p.a, ...(p.s === undefined ? {} : { subject: p.s }), ...(p.c === undefined ? {} : { credential: p.c }) };
    if (now - p.l < this.#renewMs) return { session: { id: p.i, data, createdAt: p.t, lastSeenAt: p.l } };
    const session: Session = { id: p.i, data, createdAt: p.t, lastSeenAt: now };
    try {
      return { session, renewed: this.#cookie(session, now) };
    } catch {
      return { session };
    }
  }

  /** Ends the session here (and, through the listeners, elsewhere); returns the Set-Cookie value that removes its cookie. */
  end(session: Session): string {
    const until = session.createdAt + this.#absoluteMs;
    this.endSession(session.id, until);
    for (const listener of this.#listeners) listener(session.id, until);
    return SessionCookies.clearCookie();
  }

  /** Refuses the session id from now on until `until` (a notice that it ended at another gateway, or here). */
  endSession(id: string, until: number): void {
    if (!idPattern.test(id) || !Number.isFinite(until)) return;
    const now = this.#now();
    if (until <= now) return;
    this.#ended.delete(id);
    this.#ended.set(id, until);
    for (const [old, expires] of this.#ended) {
      if (this.#ended.size <= this.#maxEnded && expires > now) break;
      this.#ended.delete(old);
    }
  }

  isEnded(id: string): boolean {
    const until = this.#ended.get(id);
    if (until === undefined) return false;
    if (until > this.#now()) return true;
    this.#ended.delete(id);
    return false;
  }

  /** Hears every session this process ends (to tell other gateways); returns the function that stops it. */
  onSessionEnded(listener: (id: string, until: number) => void): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  static clearCookie(): string {
    return clearCookie(sessionCookieName, 'Strict');
  }

  #cookie(session: Session, now: number): string {
    const { data } = session;
    const payload: Payload = {
      v: 1,
      i: session.id,
      u: data.user,
      g: data.groups,
      k: data.kind,
      a: data.authenticator,
      ...(data.subject === undefined ? {} : { s: data.subject }),
      ...(data.credential === undefined ? {} : { c: data.credential }),
      t: session.createdAt,
      l: session.lastSeenAt,
    };
    const value = Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url');
    if (value.length > 3800 || payloadOf(value) === undefined) throw new SessionTooLarge('the session does not fit in a cookie');
    const remaining = (session.createdAt + this.#absoluteMs - now) / 1000;
    return setCookie(sessionCookieName, this.#signer.sign(sessionCookieName, value), { sameSite: 'Strict', maxAgeSeconds: remaining });
  }
}
