// Checks user name and password against the htpasswd users: bcrypt off the main thread, short success cache.

import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Piscina } from 'piscina';
import { RegistryError } from './errors.js';
import type { UserStore } from './htpasswd.js';
import type { PasswordTask } from './password-worker.js';

export type AuthenticationResult = 'ok' | 'wrong-password' | 'unknown-user';

const workerFile = new URL('./password-worker.js', import.meta.url);

/** Beyond this many waiting checks, new ones are refused rather than piling up behind bcrypt. */
const defaultMaxQueue = 256;

/** Idle threads above one are stopped after this long, so a quiet gateway gives the memory back. */
const idleThreadTimeoutMs = 30_000;

/** bcrypt runs in a pool of worker threads; a full queue refuses new checks instead of waiting. */
export class PasswordChecker {
  readonly #pool: Piscina<PasswordTask, boolean | string>;
  readonly #capacity: number;
  #pending = 0;

  constructor(options: { maxThreads?: number; maxQueue?: number } = {}) {
    const maxThreads = options.maxThreads ?? Math.min(availableParallelism(), 4);
    const maxQueue = options.maxQueue ?? defaultMaxQueue;
    if (!Number.isInteger(maxThreads) || maxThreads < 1) throw new RangeError('maxThreads must be a positive integer');
    if (!Number.isInteger(maxQueue) || maxQueue < 0) throw new RangeError('maxQueue must be a non-negative integer');
    this.#capacity = maxThreads + maxQueue;
    this.#pool = new Piscina({
      filename: workerFile.href,
      minThreads: 1,
      maxThreads,
      idleTimeout: idleThreadTimeoutMs,
    });
  }

  /** True when the password matches the bcrypt hash. */
  async verify(password: string, hash: string): Promise<boolean> {
    const matches = await this.#run({ password, hash });
    return matches === true;
  }

  /** A new bcrypt hash in the `$2y$` form. */
  async hash(password: string, cost: number): Promise<string> {
    const hash = await this.#run({ password, cost });
    if (typeof hash !== 'string') throw new Error('password worker returned no hash');
    return hash;
  }

  /** Waits for running checks to finish, then stops the threads. */
  async close(): Promise<void> {
    await this.#pool.close();
  }

  async #run(task: PasswordTask): Promise<boolean | string> {
    // Counted here rather than relying on piscina's queue limit, whose capacity shifts while threads start.
    if (this.#pending >= this.#capacity) {
      throw new RegistryError('TOOMANYREQUESTS', 'too many password checks are waiting; try again shortly');
    }
    this.#pending++;
    try {
      return await this.#pool.run(task);
    } finally {
      this.#pending--;
    }
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

/** Verifies users from a UserStore; unknown users cost the same bcrypt run as known ones. */
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

  async authenticate(user: string, password: string): Promise<AuthenticationResult> {
    const hash = this.#store.hashOf(user);
    if (Buffer.byteLength(password, 'utf8') > maxCheckedPasswordBytes) {
      return hash === undefined ? 'unknown-user' : 'wrong-password';
    }
    if (hash === undefined) {
      await this.#checker.verify(password, dummyHash(this.#store.typicalCost() ?? fallbackCost));
      return 'unknown-user';
    }
    const key = successKey(user, password);
    if (this.#hasFreshSuccess(key, hash)) return 'ok';
    const matches = await this.#verifyOnce(key, password, hash);
    if (!matches) return 'wrong-password';
    this.#rememberSuccess(key, hash);
    return 'ok';
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

  /** Identical checks arriving together share one bcrypt run. */
  #verifyOnce(key: string, password: string, hash: string): Promise<boolean> {
    const runKey = `${key}\0${hash}`;
    const running = this.#inFlight.get(runKey);
    if (running !== undefined) return running;
    const run = this.#checker.verify(password, hash).finally(() => this.#inFlight.delete(runKey));
    this.#inFlight.set(runKey, run);
    return run;
  }
}

/** Cache keys never hold the password itself. */
function successKey(user: string, password: string): string {
  return createHash('sha256').update(`${user}\0${password}`, 'utf8').digest('base64url');
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
