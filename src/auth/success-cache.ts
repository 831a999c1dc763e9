// Logins that succeeded moments ago, by keyed fingerprint of user and password: answered again without asking the authenticator.

import { performance } from 'node:perf_hooks';
import type { Identity } from '../access/access.js';

export interface SuccessCacheOptions {
  /** How long a success is remembered; 0 turns the cache off. */
  ttlMs: number;
  maxEntries?: number;
  /** Milliseconds of a monotonic clock; tests pass a fake one. */
  now?: () => number;
}

interface Entry {
  identity: Identity;
  expiresAt: number;
}

/**
 * Holds identities under a keyed hash of the credentials (never the password). A hit still asks the
 * owning authenticator, without I/O, whether the identity holds (htpasswd: the same hash); an entry
 * that no longer holds, or whose credentials fail a check, is dropped.
 */
export class SuccessCache {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  /** Least recently remembered first. */
  readonly #entries = new Map<string, Entry>();

  constructor(options: SuccessCacheOptions) {
    this.#ttlMs = options.ttlMs;
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#now = options.now ?? (() => performance.now());
    if (!(this.#ttlMs >= 0)) throw new RangeError('ttlMs must be zero or more');
    if (!Number.isInteger(this.#maxEntries) || this.#maxEntries < 0) throw new RangeError('maxEntries must be a non-negative integer');
  }

  /** The remembered identity, while fresh and while `stillHolds` returns it; otherwise the entry goes. */
  recall(key: string, stillHolds: (identity: Identity) => Identity | undefined): Identity | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    const identity = entry.expiresAt > this.#now() ? stillHolds(entry.identity) : undefined;
    if (identity === undefined) this.#entries.delete(key);
    return identity;
  }

  remember(key: string, identity: Identity): void {
    if (this.#ttlMs === 0 || this.#maxEntries === 0) return;
    this.#entries.delete(key);
    this.#entries.set(key, { identity, expiresAt: this.#now() + this.#ttlMs });
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) break;
      this.#entries.delete(oldest);
    }
  }

  forget(key: string): void {
    this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }
}
