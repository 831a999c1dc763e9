// Slows repeated failed logins per (user, source address) without ever delaying a correct password.

import { createHash } from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { ipv6Groups } from './ip-address.js';

export interface ThrottleOptions {
  /** Failures per key answered without delay. */
  freeFailures?: number;
  /** Delay of the first failure beyond the free ones; each further failure doubles it. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** A key with no failure and no check for this long starts afresh. */
  forgetAfterMs?: number;
  /** Beyond this many keys the least recently active ones are dropped. */
  maxEntries?: number;
  /** Milliseconds of a monotonic clock; tests pass a fake one. */
  now?: () => number;
}

export type Admission = { allowed: true; release(): void } | { allowed: false; retryAfterSeconds: number };

interface Entry {
  failures: number;
  /** Admitted checks whose release() has not been called yet. */
  inFlight: number;
  touchedAt: number;
}

/** User names longer than any valid one are hashed, so a key never holds kilobytes an attacker chose. */
const maxKeyUserLength = 255;

/**
 * Remembers failed logins per (user, address) in memory. Keys are per user AND address, so failures
 * from one place never lock the user out elsewhere, and one address guessing many users is slowed
 * for each user separately.
 *
 * Caller protocol: admit() before checking the password; on a refusal answer 429 with Retry-After.
 * On success recordSuccess() and answer at once. On failure recordFailure(), hold the response for
 * failureDelayMs(), send it, and only then call release(), so that the delay also holds back the
 * next guess from that key.
 */
export class LoginThrottle {
  readonly #freeFailures: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #forgetAfterMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  /** Ordered from least to most recently touched, so the oldest is always first. */
  readonly #entries = new Map<string, Entry>();

  constructor(options: ThrottleOptions = {}) {
    this.#freeFailures = nonNegativeInteger('freeFailures', options.freeFailures ?? 5);
    this.#baseDelayMs = nonNegativeInteger('baseDelayMs', options.baseDelayMs ?? 250);
    this.#maxDelayMs = nonNegativeInteger('maxDelayMs', options.maxDelayMs ?? 15_000);
    this.#forgetAfterMs = nonNegativeInteger('forgetAfterMs', options.forgetAfterMs ?? 15 * 60_000);
    this.#maxEntries = nonNegativeInteger('maxEntries', options.maxEntries ?? 100_000);
    if (this.#maxEntries < 1) throw new RangeError('maxEntries must be at least 1');
    this.#now = options.now ?? (() => performance.now());
  }

  /** Before checking a password: may this (user, address) try now? */
  admit(user: string, address: string): Admission {
    const key = throttleKey(user, address);
    const known = this.#current(key);
    if (known !== undefined && this.#mustWait(known)) {
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(this.#delayAfter(known.failures + 1) / 1000)) };
    }
    const entry = this.#touch(key, known);
    entry.inFlight++;
    let released = false;
    return {
      allowed: true,
      release: () => {
        if (released) return;
        released = true;
        this.#release(key, entry);
      },
    };
  }

  recordFailure(user: string, address: string): void {
    const key = throttleKey(user, address);
    this.#touch(key, this.#current(key)).failures++;
  }

  /** A correct password clears the key: its owner is there, and must not inherit earlier failures. */
  recordSuccess(user: string, address: string): void {
    const key = throttleKey(user, address);
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    entry.failures = 0;
    if (entry.inFlight === 0) this.#entries.delete(key);
  }

  /** How long to hold a FAILED response before sending it (0 while under freeFailures). */
  failureDelayMs(user: string, address: string): number {
    return this.#delayAfter(this.#current(throttleKey(user, address))?.failures ?? 0);
  }

  /** Number of keys remembered. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Checks in flight plus failures so far may not exceed the free failures: a burst of parallel
   * guesses cannot get past the delays. A key without failures is never held back, so correct
   * passwords arriving in parallel (a client pulling several layers) all go through.
   */
  #mustWait(entry: Entry): boolean {
    return entry.failures > 0 && entry.inFlight > 0 && entry.failures + entry.inFlight >= this.#freeFailures;
  }

  #delayAfter(failures: number): number {
    const beyondFree = failures - this.#freeFailures;
    if (beyondFree <= 0) return 0;
    return Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** (beyondFree - 1));
  }

  /** The live entry, or undefined when there is none or it has been forgotten. */
  #current(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (this.#isStale(entry)) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  #isStale(entry: Entry): boolean {
    return this.#now() - entry.touchedAt >= this.#forgetAfterMs;
  }

  /** Marks the entry (created if needed) as the most recently active, and keeps the map bounded. */
  #touch(key: string, entry: Entry | undefined): Entry {
    const touched = entry ?? { failures: 0, inFlight: 0, touchedAt: 0 };
    touched.touchedAt = this.#now();
    this.#entries.delete(key);
    this.#entries.set(key, touched);
    this.#dropOldest();
    return touched;
  }

  /** Stale entries sit at the front of the map, so forgetting needs no timer. */
  #dropOldest(): void {
    for (const [key, entry] of this.#entries) {
      if (this.#entries.size <= this.#maxEntries && !this.#isStale(entry)) break;
      this.#entries.delete(key);
    }
  }

  #release(key: string, entry: Entry): void {
    // An entry forgotten, evicted or replaced meanwhile has nothing left to release.
    if (this.#entries.get(key) !== entry) return;
    entry.inFlight--;
    if (entry.inFlight === 0 && entry.failures === 0) this.#entries.delete(key);
  }
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer`);
  return value;
}

function throttleKey(user: string, address: string): string {
  const group = addressGroup(address);
  if (user.length <= maxKeyUserLength) return JSON.stringify([group, user]);
  return JSON.stringify([group, null, createHash('sha256').update(user, 'utf8').digest('base64url')]);
}

/**
 * The group of addresses one client is assumed to control: the IPv4 address itself (also when
 * written IPv4-mapped, ::ffff:1.2.3.4), or the /64 of an IPv6 address, since a single host is
 * commonly given a whole /64. Anything else (a Unix socket, no address) is its own group.
 */
export function addressGroup(address: string): string {
  const bare = address.trim().replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  if (net.isIPv4(bare)) return bare;
  const groups = ipv6Groups(bare);
  if (groups === undefined) return bare.toLowerCase();
  if (groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join('.');
  }
  return `${groups
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':')}::/64`;
}

