// Slows repeated failed logins per (user, source address), counting guesses in flight; a password proven right before never waits.

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { addressGroup } from '../ip-address.js';
import { ProvenCredentials } from './proven-credentials.js';
import type { Admission, Entry, Guess, Pending, ThrottleOptions } from './throttle-types.js';

export type { Admission, Guess, ThrottleOptions } from './throttle-types.js';

/** User names longer than any valid one are hashed, so a key never holds kilobytes an attacker chose. */
const maxKeyUserLength = 255;

/**
 * Remembers failed logins per (user, address) in memory. Keys are per user AND address, so failures
 * from one place never lock the user out elsewhere, and one address guessing many users is slowed
 * for each user separately.
 *
 * A guess counts from the moment it is admitted, not when its failure is recorded: while failures
 * plus guesses in flight are under freeFailures, guesses are checked at once, in parallel; beyond,
 * they wait and are checked one at a time, so a burst of parallel guesses is checked no faster
 * than one guess after another. Identical credentials in flight are one guess (a client pulling several layers
 * with the same password is one login, not many).
 *
 * Beyond the free failures, throttled guesses are checked one at a time, each no earlier than the
 * previous failure's delay (250 ms doubling to 15 s), and a wrong answer is held that long: a
 * guesser gets one check per delay however many connections it opens.
 *
 * Credentials that were right before (for this user, within provenForMs, remembered by a keyed
 * hash, never the password) are no guess: they skip the queue and are checked at once, so a held
 * or queued guesser never keeps the owner of a known password out, whoever shares their address
 * (a load balancer, NAT). Only a password never yet used with this gateway process waits its turn
 * behind guesses from its own address, and a failure of a proven one counts like any other.
 *
 * Caller protocol: admit(); on a refusal answer 429 with Retry-After; else await turn, check, then
 * succeeded() and answer at once, or failed() and hold the answer that many milliseconds; call
 * release() in a finally, so a check that never happened frees its turn.
 */
export class LoginThrottle {
  readonly #freeFailures: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #forgetAfterMs: number;
  readonly #maxEntries: number;
  readonly #maxWaiting: number;
  readonly #now: () => number;
  readonly #schedule: (start: () => void, ms: number) => void;
  readonly #proven: ProvenCredentials;
  /** Ordered from least to most recently touched, so the oldest is always first. */
  readonly #entries = new Map<string, Entry>();

  constructor(options: ThrottleOptions = {}) {
    this.#freeFailures = nonNegativeInteger('freeFailures', options.freeFailures ?? 5);
    this.#baseDelayMs = nonNegativeInteger('baseDelayMs', options.baseDelayMs ?? 250);
    this.#maxDelayMs = nonNegativeInteger('maxDelayMs', options.maxDelayMs ?? 15_000);
    this.#forgetAfterMs = nonNegativeInteger('forgetAfterMs', options.forgetAfterMs ?? 15 * 60_000);
    this.#maxEntries = nonNegativeInteger('maxEntries', options.maxEntries ?? 100_000);
    this.#maxWaiting = nonNegativeInteger('maxWaiting', options.maxWaiting ?? 64);
    if (this.#maxEntries < 1) throw new RangeError('maxEntries must be at least 1');
    this.#now = options.now ?? (() => performance.now());
    this.#schedule = options.schedule ?? ((start, ms) => void setTimeout(start, ms));
    this.#proven = new ProvenCredentials({
      forMs: nonNegativeInteger('provenForMs', options.provenForMs ?? 30 * 24 * 3600_000),
      perUser: nonNegativeInteger('provenPerUser', options.provenPerUser ?? 4),
      maxUsers: this.#maxEntries,
      now: this.#now,
    });
  }

  /**
   * Before checking credentials: admits the guess, to be checked at once or in its turn. `guess`
   * stands for the credentials (never the password itself); equal values in flight share a turn.
   */
  admit(user: string, address: string, guess: string): Admission {
    if (this.#proven.has(user, guess)) return { allowed: true, ...this.#provenGuess(user, address, guess) };
    const key = throttleKey(user, address);
    const entry = this.#touch(key, this.#current(key));
    let pending = entry.guesses.get(guess);
    if (pending === undefined) {
      const free = entry.failures + entry.guesses.size < this.#freeFailures;
      if (!free && entry.queue.length >= this.#maxWaiting) {
        return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(this.#delayAfter(entry.failures + 1) / 1000)) };
      }
      pending = this.#pending(key, user, guess, !free);
      entry.guesses.set(guess, pending);
      if (free) {
        entry.checking++;
      } else {
        entry.queue.push(pending);
        this.#next(entry);
      }
    }
    pending.holders++;
    return { allowed: true, ...this.#guess(entry, pending) };
  }

  /** A check of proven credentials: no turn to wait, no place held; a failure counts as usual. */
  #provenGuess(user: string, address: string, fingerprint: string): Guess {
    let done = false;
    const finish = (outcome: 'success' | 'failure' | undefined): number => {
      if (done) return 0;
      done = true;
      if (outcome === 'success') {
        this.#proven.remember(user, fingerprint);
        this.recordSuccess(user, address);
      }
      if (outcome !== 'failure') return 0;
      this.#proven.forget(user, fingerprint);
      this.recordFailure(user, address);
      return this.failureDelayMs(user, address);
    };
    return { turn: Promise.resolve(), throttled: false, proven: true, succeeded: () => void finish('success'), failed: () => finish('failure'), release: () => void finish(undefined) };
  }

  recordFailure(user: string, address: string): void {
    const entry = this.#touch(throttleKey(user, address), this.#current(throttleKey(user, address)));
    entry.failures++;
    entry.notBefore = this.#now() + this.#delayAfter(entry.failures);
    this.#next(entry);
  }

  /** A correct password clears the key: its owner is there, and must not inherit earlier failures. */
  recordSuccess(user: string, address: string): void {
    this.#clear(throttleKey(user, address));
  }

  /** How long to hold a FAILED response before sending it (0 while under freeFailures). */
  failureDelayMs(user: string, address: string): number {
    return this.#delayAfter(this.#current(throttleKey(user, address))?.failures ?? 0);
  }

  /** The delay that follows this many failures of one key. */
  delayAfter(failures: number): number {
    return this.#delayAfter(failures);
  }

  /** The key's failures as other gateways counted them too (shared state): replaces this process's count. */
  adoptFailures(user: string, address: string, failures: number): void {
    const key = throttleKey(user, address);
    const entry = this.#current(key);
    if (entry === undefined && failures === 0) return;
    this.#touch(key, entry).failures = failures;
    if (failures === 0) this.#clear(key);
  }

  /** Guesses per key checked without waiting their turn. */
  get freeFailures(): number {
    return this.#freeFailures;
  }

  /** A key with no failure and no check for this long starts afresh. */
  get forgetAfterMs(): number {
    return this.#forgetAfterMs;
  }

  /** Number of keys remembered. */
  get size(): number {
    return this.#entries.size;
  }

  #pending(key: string, user: string, fingerprint: string, throttled: boolean): Pending {
    let start = () => {};
    const turn = throttled ? new Promise<void>((resolve) => (start = resolve)) : Promise.resolve();
    return { key, user, fingerprint, throttled, turn, start: () => start(), holders: 0, ended: false };
  }

  /** One request's handle on a guess that may be shared. */
  #guess(entry: Entry, pending: Pending): Guess {
    let done = false;
    const finish = (outcome: 'success' | 'failure' | undefined): number => {
      if (done) return 0;
      done = true;
      pending.holders--;
      const first = !pending.ended && (outcome !== undefined || pending.holders === 0);
      // The failure is counted before the guess gives up its turn, so the next one waits for its delay.
      if (outcome === 'failure' && first) {
        const current = this.#touch(pending.key, this.#current(pending.key));
        current.failures++;
        current.notBefore = this.#now() + this.#delayAfter(current.failures);
      }
      if (first) this.#end(entry, pending);
      if (outcome === 'success') this.#proven.remember(pending.user, pending.fingerprint);
      if (outcome === 'success' && first) this.#clear(pending.key);
      return outcome === 'failure' ? this.#delayAfter(this.#current(pending.key)?.failures ?? 0) : 0;
    };
    return {
      turn: pending.turn,
      throttled: pending.throttled,
      succeeded: () => void finish('success'),
      failed: () => finish('failure'),
      release: () => void finish(undefined),
    };
  }

  /** The guess no longer holds its place: the next throttled guess of the key may start. */
  #end(entry: Entry, pending: Pending): void {
    pending.ended = true;
    if (entry.guesses.get(pending.fingerprint) === pending) entry.guesses.delete(pending.fingerprint);
    const queued = entry.queue.indexOf(pending);
    if (queued === -1) entry.checking--;
    else entry.queue.splice(queued, 1);
    this.#next(entry);
    if (entry.guesses.size === 0 && entry.failures === 0 && this.#entries.get(pending.key) === entry) this.#entries.delete(pending.key);
  }

  /** Throttled guesses start one at a time, once no other check of the key runs and the last failure's delay has passed. */
  #next(entry: Entry): void {
    if (entry.checking > 0 || entry.queue.length === 0 || entry.waiting) return;
    const wait = entry.notBefore - this.#now();
    if (wait > 0) {
      entry.waiting = true;
      this.#schedule(() => {
        entry.waiting = false;
        // The delay has been served, whatever the clock says (a fake one in tests does not move).
        entry.notBefore = Number.NEGATIVE_INFINITY;
        this.#next(entry);
      }, wait);
      return;
    }
    const pending = entry.queue.shift();
    if (pending === undefined) return;
    entry.checking++;
    pending.start();
  }

  #clear(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    entry.failures = 0;
    if (entry.guesses.size === 0) this.#entries.delete(key);
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
    const touched = entry ?? { failures: 0, guesses: new Map(), queue: [], checking: 0, notBefore: 0, waiting: false, touchedAt: 0 };
    touched.touchedAt = this.#now();
    this.#entries.delete(key);
    this.#entries.set(key, touched);
    this.#dropOldest();
    return touched;
  }

  /**
   * Stale entries sit at the front of the map, so forgetting needs no timer. A dropped entry's
   * guesses still end on the entry they started with; only its count of failures is gone.
   */
  #dropOldest(): void {
    for (const [key, entry] of this.#entries) {
      if (this.#entries.size <= this.#maxEntries && !this.#isStale(entry)) break;
      this.#entries.delete(key);
    }
  }
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer`);
  return value;
}

/** The key failures are counted under: the user (hashed when very long) and the address group. */
export function throttleKey(user: string, address: string): string {
  const group = addressGroup(address);
  if (user.length <= maxKeyUserLength) return JSON.stringify([group, user]);
  return JSON.stringify([group, null, createHash('sha256').update(user, 'utf8').digest('base64url')]);
}
