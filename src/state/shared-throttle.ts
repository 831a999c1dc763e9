// Login throttling across gateways: the per-process LoginThrottle, with its failures counted and its throttled checks spaced in the shared state.

import { throttleKey, type Admission, type Guess, type LoginThrottle } from '../auth/throttle.js';
import type { SharedState } from './shared-state.js';

/** A guess whose failure may first be counted elsewhere: failed() may resolve later. */
export type ThrottleGuess = Omit<Guess, 'failed'> & { failed(): number | Promise<number> };
export type ThrottleAdmission = ({ allowed: true } & ThrottleGuess) | { allowed: false; retryAfterSeconds: number };

/** What a login needs of a throttle: a LoginThrottle alone, or a SharedLoginThrottle around one. */
export interface Throttle {
  admit(user: string, address: string, guess: string): Admission | ThrottleAdmission | Promise<ThrottleAdmission>;
  /** A login answered from the success cache: this process forgets the key's failures. */
  recordSuccess(user: string, address: string): void;
  /** How long this process holds a failed answer now (its own count, the last shared one included). */
  failureDelayMs(user: string, address: string): number;
}

export interface SharedThrottleOptions {
  /** A throttled check holds the shared turn at most this long: a gateway that dies mid-check frees it so. */
  checkLeaseMs?: number;
  /** The longest wait for the shared turn; then the check goes ahead in this gateway's own turn. */
  maxTurnWaitMs?: number;
  /** Waits that many milliseconds (tests pass their own). */
  sleep?(ms: number): Promise<void>;
}

/** What the holders of one guess in flight (same credentials, same turn) share. */
interface Share {
  turn?: Promise<void>;
  /** This guess holds the shared turn. */
  tookTurn: boolean;
  /** Counted in the shared state when admitted: until it ends it is one of this gateway's guesses in flight there. */
  precounted: boolean;
  /** Its failure has been counted in the shared state. */
  failed: boolean;
  /** It no longer counts as in flight (succeeded, failed, or every holder let go). */
  settled: boolean;
  /** Requests holding it that have not ended their part. */
  holders: number;
}

/**
 * The LoginThrottle of this process, with the failures of each (user, address) counted in the
 * shared state, so that N gateways allow the guesses one does. A guess counts there from the moment
 * it is admitted (a failure in advance, taken back when no check happens, cleared by a success), so
 * guesses in flight on every gateway count as they do in one: a burst spread over N gateways gets
 * the free failures once, and every guess beyond them waits for its turn. Before admitting a guess
 * the gateway takes the shared count as its own (less its own guesses in flight, which it counts
 * itself). A throttled guess waits for its turn in this process, then for the shared turn of its
 * key: one check at a time across all gateways, the next no earlier than the delay the last
 * failure earned, wherever it failed.
 *
 * When the shared state cannot answer, each call falls back to what this process knows: its own
 * count (the last shared count plus its own failures since) and its own turns.
 */
export class SharedLoginThrottle implements Throttle {
  readonly #local: LoginThrottle;
  readonly #shared: SharedState;
  readonly #leaseMs: number;
  readonly #maxTurnWaitMs: number;
  readonly #sleep: (ms: number) => Promise<void>;
  /** Per guess in flight, by the local turn's promise (one per guess, shared by its holders). */
  readonly #shares = new WeakMap<Promise<void>, Share>();
  /** Per key: this gateway's guesses counted in advance in the shared state and not yet settled. */
  readonly #inFlight = new Map<string, number>();

  constructor(local: LoginThrottle, shared: SharedState, options: SharedThrottleOptions = {}) {
    this.#local = local;
    this.#shared = shared;
    this.#leaseMs = options.checkLeaseMs ?? 5_000;
    this.#maxTurnWaitMs = options.maxTurnWaitMs ?? 30_000;
    this.#sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  async admit(user: string, address: string, guess: string): Promise<ThrottleAdmission> {
    const key = `throttle:${throttleKey(user, address)}`;
    const counted = await attempt(() => this.#shared.readCount(key));
    if (counted !== undefined) this.#adopt(key, user, address, counted);
    const admission = this.#local.admit(user, address, guess);
    if (!admission.allowed) return admission;
    let share = this.#shares.get(admission.turn);
    const fresh = share === undefined;
    if (share === undefined) {
      share = { tookTurn: false, precounted: false, failed: false, settled: false, holders: 0 };
      this.#shares.set(admission.turn, share);
    }
    const held = share;
    held.holders++;
    let throttled = admission.throttled;
    if (fresh && admission.proven !== true) {
      const count = await attempt(() => this.#shared.addCount(key, this.#local.forgetAfterMs));
      if (count !== undefined) {
        held.precounted = true;
        this.#inFlight.set(key, (this.#inFlight.get(key) ?? 0) + 1);
        // Another gateway admitted a guess between the read and this count: beyond the free ones, this one waits its turn.
        if (count > this.#local.freeFailures) throttled = true;
      }
    }
    if (throttled) held.turn ??= admission.turn.then(() => this.#takeTurn(key, held));
    return {
      allowed: true,
      turn: held.turn ?? admission.turn,
      throttled,
      succeeded: () => {
        admission.succeeded();
        this.#settle(key, held);
        void attempt(() => this.#shared.clear(key));
      },
      failed: () => this.#failed(key, user, address, admission, held),
      // A check that never happened leaves a taken turn to its lease: a client going away frees nothing early.
      release: () => {
        admission.release();
        if (--held.holders > 0 || held.settled) return;
        this.#settle(key, held);
        // Counted in advance for a check that never happened: taken back.
        if (held.precounted) void attempt(() => this.#shared.addCount(key, this.#local.forgetAfterMs, -1));
      },
    };
  }

  recordSuccess(user: string, address: string): void {
    this.#local.recordSuccess(user, address);
  }

  failureDelayMs(user: string, address: string): number {
    return this.#local.failureDelayMs(user, address);
  }

  /** The shared count as this process's failures: less its own guesses in flight, which the local throttle counts itself. */
  #adopt(key: string, user: string, address: string, count: number): void {
    this.#local.adoptFailures(user, address, Math.max(0, count - (this.#inFlight.get(key) ?? 0)));
  }

  /** The guess no longer counts as this gateway's in flight. */
  #settle(key: string, share: Share): void {
    if (share.settled) return;
    share.settled = true;
    if (!share.precounted) return;
    const left = (this.#inFlight.get(key) ?? 1) - 1;
    if (left > 0) this.#inFlight.set(key, left);
    else this.#inFlight.delete(key);
  }

  /** Counts the failure here and in the shared state (once per guess); the delay is the larger of both counts'. */
  async #failed(key: string, user: string, address: string, admission: Guess, share: Share): Promise<number> {
    const local = admission.failed();
    if (share.failed) return local;
    share.failed = true;
    this.#settle(key, share);
    // Counted in advance when admitted: the count now includes it.
    const count = await attempt(() => (share.precounted ? this.#shared.readCount(key) : this.#shared.addCount(key, this.#local.forgetAfterMs)));
    if (count === undefined) return local;
    this.#adopt(key, user, address, count);
    const delay = Math.max(local, this.#local.delayAfter(count));
    // The next throttled check of this key, on any gateway, starts no earlier than this failure's delay.
    if (delay > 0 || share.tookTurn) await attempt(() => this.#shared.holdTurn(key, delay));
    return delay;
  }

  /** Waits for the key's shared turn and takes it; gives up waiting when the shared state cannot answer or after maxTurnWaitMs. */
  async #takeTurn(key: string, share: Share): Promise<void> {
    let waited = 0;
    for (;;) {
      const wait = await attempt(() => this.#shared.takeTurn(key, this.#leaseMs));
      if (wait === undefined) return;
      if (wait === 0) {
        share.tookTurn = true;
        return;
      }
      if (waited + wait > this.#maxTurnWaitMs) return;
      waited += wait;
      await this.#sleep(wait);
    }
  }
}

/** The call's answer, or undefined when the shared state could not give one. */
async function attempt<T>(call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch {
    return undefined;
  }
}
