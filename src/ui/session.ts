// Sign-in sessions: a random id in a signed __Host- cookie (SameSite=Strict), kept in memory with an idle and an absolute expiry.

import { randomBytes } from 'node:crypto';
import { clearCookie, readCookies, setCookie, type CookieSigner } from './cookies.js';

export const sessionCookieName = '__Host-gw-session';

export interface Session<T> {
  /** 32 random bytes, base64url: what the cookie carries (signed). */
  readonly id: string;
  readonly data: T;
  readonly createdAt: number;
  lastSeenAt: number;
}

export interface SessionStoreOptions {
  signer: CookieSigner;
  /** A session unused this long ends; default 30 minutes. */
  idleSeconds?: number;
  /** A session ends this long after sign-in however it is used; default 8 hours. */
  absoluteSeconds?: number;
  /** More live sessions than this: the least recently used ends. */
  maxSessions?: number;
  /** Milliseconds since the epoch (tests move it). */
  now?: () => number;
}

/**
 * The sessions of this gateway process. A cookie is honoured only when its signature is this key's,
 * its id is a live session here and neither expiry has passed; anything else reads as no session.
 * Sessions do not survive a restart and are not shared between gateways (signing in again is cheap).
 */
export class SessionStore<T> {
  readonly #signer: CookieSigner;
  readonly #idleMs: number;
  readonly #absoluteMs: number;
  readonly #max: number;
  readonly #now: () => number;
  /** In order of last use, oldest first (a Map keeps insertion order; a touch re-inserts). */
  readonly #sessions = new Map<string, Session<T>>();

  constructor(options: SessionStoreOptions) {
    this.#signer = options.signer;
    this.#idleMs = (options.idleSeconds ?? 30 * 60) * 1000;
    this.#absoluteMs = (options.absoluteSeconds ?? 8 * 3600) * 1000;
    this.#max = options.maxSessions ?? 10_000;
    this.#now = options.now ?? Date.now;
    if (!(this.#idleMs > 0 && this.#absoluteMs >= this.#idleMs && this.#max > 0)) throw new Error('session lifetimes must be positive, the absolute one at least the idle one');
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** A new session with a fresh id (never one the browser brought), and its Set-Cookie value. */
  create(data: T): { session: Session<T>; cookie: string } {
    const now = this.#now();
    this.#sweep(now);
    while (this.#sessions.size >= this.#max) this.#sessions.delete(this.#sessions.keys().next().value as string);
    const session: Session<T> = { id: randomBytes(32).toString('base64url'), data, createdAt: now, lastSeenAt: now };
    this.#sessions.set(session.id, session);
    const cookie = setCookie(sessionCookieName, this.#signer.sign(sessionCookieName, session.id), { sameSite: 'Strict', maxAgeSeconds: this.#absoluteMs / 1000 });
    return { session, cookie };
  }

  /** The live session a Cookie header names, its last use moved to now; undefined for none, forged, unknown or expired. */
  read(cookieHeader: string | undefined): Session<T> | undefined {
    const id = this.#signer.verify(sessionCookieName, readCookies(cookieHeader).get(sessionCookieName));
    if (id === undefined) return undefined;
    const session = this.#sessions.get(id);
    if (session === undefined) return undefined;
    const now = this.#now();
    if (this.#expired(session, now)) {
      this.#sessions.delete(id);
      return undefined;
    }
    session.lastSeenAt = now;
    this.#sessions.delete(id);
    this.#sessions.set(id, session);
    return session;
  }

  /** Ends the session; returns the Set-Cookie value that removes its cookie. */
  destroy(session: Session<T> | undefined): string {
    if (session !== undefined) this.#sessions.delete(session.id);
    return SessionStore.clearCookie();
  }

  /** Ends every session whose data matches (e.g. all of one user's). */
  destroyWhere(matches: (data: T) => boolean): number {
    let ended = 0;
    for (const [id, session] of this.#sessions) {
      if (matches(session.data)) {
        this.#sessions.delete(id);
        ended += 1;
      }
    }
    return ended;
  }

  static clearCookie(): string {
    return clearCookie(sessionCookieName, 'Strict');
  }

  #expired(session: Session<T>, now: number): boolean {
    return now - session.lastSeenAt >= this.#idleMs || now - session.createdAt >= this.#absoluteMs;
  }

  /** Drops idle sessions, oldest use first, up to the first one still in use (the rest were used later). */
  #sweep(now: number): void {
    for (const [id, session] of this.#sessions) {
      if (now - session.lastSeenAt < this.#idleMs) break;
      this.#sessions.delete(id);
    }
  }
}
