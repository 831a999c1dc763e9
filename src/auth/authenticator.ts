// Checks user name and password against the htpasswd users: bcrypt off the main thread, shared fairly between sources, short success cache.

import { createHmac, randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Piscina } from 'piscina';
import { RegistryError } from '../errors.js';
import { FairQueue } from './fair-queue.js';
import type { UserStore } from './htpasswd.js';
import type { PasswordTask } from './password-worker.js';

export type AuthenticationResult = 'ok' | 'wrong-password' | 'unknown-user';

const workerFile = new URL('./password-worker.js', import.meta.url);

/** Beyond this many waiting checks in all, new ones are refused rather than piling up behind bcrypt. */
const defaultMaxQueue = 1024;

/**
 * Checks one source (client address group) may have waiting. Logins that were verified moments ago,
 * CI tokens and repeated identical logins never wait here, so this only bounds distinct guesses.
 */
const defaultMaxQueuePerSource = 16;

/** The source of work that comes from no client: hashing for `gateway user add`, and tests. */
export const localSource = 'local';

/** Idle threads above one are stopped after this long, so a quiet gateway gives the memory back. */
const idleThreadTimeoutMs = 30_000;

export interface PasswordCheckerOptions {
  maxThreads?: number;
  /** Checks waiting in all, across sources. */
  maxQueue?: number;
  /** Checks one source may have waiting. */
  maxQueuePerSource?: number;
}

/**
 * bcrypt runs in a pool of worker threads. Checks wait in one queue per source and the sources take
 * turns, so a source sending hundreds of logins delays only its own: anyone else's next check runs
 * as soon as a thread is free. A source over its own bound, or a full queue, gets TOOMANYREQUESTS.
 */
export class PasswordChecker {
  readonly #pool: Piscina<PasswordTask, boolean | string>;
  readonly #queue: FairQueue;

  constructor(options: PasswordCheckerOptions = {}) {
    const maxThreads = options.maxThreads ?? Math.min(availableParallelism(), 4);
    const maxQueue = options.maxQueue ?? defaultMaxQueue;
    const maxQueuePerSource = options.maxQueuePerSource ?? Math.min(defaultMaxQueuePerSource, maxQueue);
    if (!Number.isInteger(maxThreads) || maxThreads < 1) throw new RangeError('maxThreads must be a positive integer');
    if (!Number.isInteger(maxQueue) || maxQueue < 0) throw new RangeError('maxQueue must be a non-negative integer');
    // Never more tasks than threads reach piscina, so its own queue stays empty and the turns here decide.
    this.#queue = new FairQueue({
      concurrency: maxThreads,
      maxWaiting: maxQueue,
      maxWaitingPerSource: maxQueuePerSource,
      refusal: () => new RegistryError('TOOMANYREQUESTS', 'too many password checks are waiting; try again shortly'),
    });
    this.#pool = new Piscina({
      filename: workerFile.href,
      minThreads: 1,
      maxThreads,
      idleTimeout: idleThreadTimeoutMs,
    });
  }

  /** True when the password matches the bcrypt hash; `source` is whose turn the check waits for. */
  async verify(password: string, hash: string, source: string = localSource): Promise<boolean> {
    const matches = await this.#queue.run(source, () => this.#pool.run({ password, hash }));
    return matches === true;
  }

  /** A new bcrypt hash in the `$2y$` form. */
  async hash(password: string, cost: number): Promise<string> {
    const hash = await this.#queue.run(localSource, () => this.#pool.run({ password, cost }));
    if (typeof hash !== 'string') throw new Error('password worker returned no hash');
    return hash;
  }

  /** Checks (and hashings) waiting for a thread: the bcrypt queue's depth, for metrics. */
  get waitingChecks(): number {
    return this.#queue.waiting;
  }

  /** Checks running on the threads now. */
  get runningChecks(): number {
    return this.#queue.running;
  }

  /** Waits for running checks to finish, then stops the threads. */
  async close(): Promise<void> {
    await this.#pool.close();
  }
}

export interface AuthenticatorOptions {
  /** How long a successful check is remembered; 0 turns the cache off. */
  cacheTtlMs?: number;
  maxCacheEntries?: number;
}

interface CachedSuccess {
  /** The hash the password was verified against: the entry only counts while the user still has it. */
  hash: string;
  expiresAt: number;
}

/**
 * Passwords longer than this are refused without running bcrypt. bcrypt only reads 72 bytes, but
 * `htpasswd -B` silently truncates longer passwords, so those users must still be able to log in.
 */
const maxCheckedPasswordBytes = 1024;

/** Used when no store hash gives a better cost; matches hashPassword's default. */
const fallbackCost = 10;

/**
 * Verifies users from a UserStore. An unknown user costs exactly what a known one does: one bcrypt
 * run at the users' usual cost, in the same source's turn. Waiting out a measured bcrypt time
 * instead would free a thread, and that shows: a source's own next check, or another source's,
 * would start sooner after an unknown name than after a known one. Running the dummy check only
 * when a thread is idle would answer unknown names faster under load. Either way the timing would
 * tell names apart. Fairness comes from the turns instead: a source sending made-up names spends
 * only its own share of the threads, however many it sends.
 */
export class Authenticator {
  readonly #store: UserStore;
  readonly #checker: PasswordChecker;
  readonly #cacheTtlMs: number;
  readonly #maxCacheEntries: number;
  readonly #successes = new Map<string, CachedSuccess>();
  readonly #inFlight = new Map<string, Promise<boolean>>();

  constructor(store: UserStore, checker: PasswordChecker, options: AuthenticatorOptions = {}) {
    this.#store = store;
    this.#checker = checker;
    this.#cacheTtlMs = options.cacheTtlMs ?? 60_000;
    this.#maxCacheEntries = options.maxCacheEntries ?? 10_000;
    if (!(this.#cacheTtlMs >= 0)) throw new RangeError('cacheTtlMs must be zero or more');
    if (!Number.isInteger(this.#maxCacheEntries) || this.#maxCacheEntries < 0) {
      throw new RangeError('maxCacheEntries must be a non-negative integer');
    }
  }

  /** `source` is the caller's address group: the check waits for that source's turn. */
  async authenticate(user: string, password: string, source: string = localSource): Promise<AuthenticationResult> {
    const hash = this.#store.hashOf(user);
    if (Buffer.byteLength(password, 'utf8') > maxCheckedPasswordBytes) {
      return hash === undefined ? 'unknown-user' : 'wrong-password';
    }
    const key = credentialKey(user, password);
    if (hash === undefined) {
      await this.#verifyOnce(key, password, dummyHash(this.#store.typicalCost() ?? fallbackCost), source);
      return 'unknown-user';
    }
    if (this.#hasFreshSuccess(key, hash)) return 'ok';
    const matches = await this.#verifyOnce(key, password, hash, source);
    if (!matches) return 'wrong-password';
    this.#rememberSuccess(key, hash);
    return 'ok';
  }

  /**
   * True when this user and password were verified within the cache time and the user's hash is
   * unchanged: a certain answer without bcrypt, so no guess, and nothing to throttle.
   */
  remembers(user: string, password: string): boolean {
    const hash = this.#store.hashOf(user);
    return hash !== undefined && this.#hasFreshSuccess(credentialKey(user, password), hash);
  }

  #hasFreshSuccess(key: string, currentHash: string): boolean {
    const entry = this.#successes.get(key);
    if (entry === undefined) return false;
    if (entry.hash === currentHash && entry.expiresAt > performance.now()) return true;
    this.#successes.delete(key);
    return false;
  }

  #rememberSuccess(key: string, hash: string): void {
    if (this.#cacheTtlMs === 0 || this.#maxCacheEntries === 0) return;
    this.#successes.delete(key);
    this.#successes.set(key, { hash, expiresAt: performance.now() + this.#cacheTtlMs });
    for (const oldest of this.#successes.keys()) {
      if (this.#successes.size <= this.#maxCacheEntries) break;
      this.#successes.delete(oldest);
    }
  }

  /** Identical checks arriving together share one bcrypt run, for unknown users as for known ones. */
  #verifyOnce(key: string, password: string, hash: string, source: string): Promise<boolean> {
    const runKey = `${key}\0${hash}`;
    const running = this.#inFlight.get(runKey);
    if (running !== undefined) return running;
    const run = this.#checker.verify(password, hash, source).finally(() => this.#inFlight.delete(runKey));
    this.#inFlight.set(runKey, run);
    return run;
  }
}

/** Keyed per process, so a key seen in memory cannot be tested against guessed passwords elsewhere. */
const credentialKeySecret = randomBytes(32);

/** Stands for a user and password in caches and in-flight maps, which never hold the password itself. */
export function credentialKey(user: string, password: string): string {
  return createHmac('sha256', credentialKeySecret).update(`${user}\0${password}`, 'utf8').digest('base64url');
}

/**
 * A well-formed bcrypt hash that no password produces in practice: comparing against it costs
 * exactly one bcrypt run at that cost, like a real user's check.
 */
function dummyHash(cost: number): string {
  const salt = 'NoUserHasThisSaltAtAll'; // 22 characters, as bcrypt needs
  const digest = 'QrK9xNvM3pLs7bZ2cWd5eFg8hJt0yUa'; // 31 characters
  return `$2y$${String(cost).padStart(2, '0')}$${salt}${digest}`;
}
