// The login throttle's options, the guesses it admits, and what it keeps per (user, address) key.

export interface ThrottleOptions {
  /** Guesses per key checked without waiting their turn: failures so far plus guesses in flight. */
  freeFailures?: number;
  /** Delay of the first failure beyond the free ones; each further failure doubles it. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** A key with no failure and no check for this long starts afresh. */
  forgetAfterMs?: number;
  /** Beyond this many keys the least recently active ones are dropped. */
  maxEntries?: number;
  /** Guesses of one key that may wait for their turn; further ones are refused until the queue drains. */
  maxWaiting?: number;
  /** How long credentials that were right once skip the throttle (they are no guess). */
  provenForMs?: number;
  /** Proven credentials remembered per user, the most recent kept. */
  provenPerUser?: number;
  /** Milliseconds of a monotonic clock; tests pass a fake one. */
  now?: () => number;
  /** Runs `start` after `ms` on that clock (setTimeout by default); tests with a fake clock pass their own. */
  schedule?: (start: () => void, ms: number) => void;
}

/** One admitted guess. Exactly one of succeeded(), failed() or release() ends it; later calls do nothing. */
export interface Guess {
  /** Resolves when the guess may be checked: at once within the free failures, else in its turn. */
  readonly turn: Promise<void>;
  /** True when it had to wait for its turn because the free failures were used up. */
  readonly throttled: boolean;
  /** Credentials that were right before: no guess, never held back (and never counted in advance by a shared throttle). */
  readonly proven?: boolean;
  /** The credentials were right: the key's failures are cleared. */
  succeeded(): void;
  /** The credentials were wrong: counts one failure and returns how long to hold the answer. */
  failed(): number;
  /** The check did not happen (refused or broken): frees the turn and counts nothing. */
  release(): void;
}

export type Admission = ({ allowed: true } & Guess) | { allowed: false; retryAfterSeconds: number };

/** One distinct guess in flight, shared by every request presenting the same credentials meanwhile. */
export interface Pending {
  key: string;
  user: string;
  fingerprint: string;
  throttled: boolean;
  turn: Promise<void>;
  start(): void;
  /** Requests holding it that have not ended their part yet. */
  holders: number;
  ended: boolean;
}

export interface Entry {
  failures: number;
  /** Distinct guesses admitted and not ended, waiting for their turn or being checked. */
  guesses: Map<string, Pending>;
  /** Throttled guesses in arrival order; the first starts when no check of this key runs. */
  queue: Pending[];
  /** Guesses of this key being checked now. */
  checking: number;
  /** A throttled guess starts no earlier than this: the last failure's delay spaces the checks. */
  notBefore: number;
  /** A wait for notBefore is scheduled. */
  waiting: boolean;
  touchedAt: number;
}
