// In-process FIFO locks by key, and holding one until a proxied response has ended on every path.

import type { Response } from 'express';
import { RegistryError } from '../errors.js';

export type Release = () => void;

/** A lock by key: KeyedLock in this process, or one a cluster's primary holds for all its workers (src/cluster/lock-share.ts). */
export interface KeyLock {
  /** Resolves when the key is this caller's; throws UNAVAILABLE after `waitMs`. */
  acquire(key: string, waitMs: number): Promise<Release>;
}

let sharedLocks: ((name: string) => KeyLock) | undefined;

/** In a cluster worker: every lock made from now on is held for all workers by the primary. */
export function shareKeyedLocks(make: (name: string) => KeyLock): void {
  sharedLocks = make;
}

const localLocks = new Map<string, KeyedLock>();

/**
 * The lock named `name` (one per use: "immutable-tags", ...): across a cluster's workers when this
 * is one, else one per name in this process, so the API and the web UI queue on the same lock.
 */
export function keyedLock(name: string): KeyLock {
  const shared = sharedLocks?.(name);
  if (shared) return shared;
  let lock = localLocks.get(name);
  if (!lock) localLocks.set(name, (lock = new KeyedLock()));
  return lock;
}

/**
 * One FIFO queue per key: `acquire` resolves when every earlier holder of that key has released.
 * Keys with nobody waiting are forgotten, so the map stays as small as the work in flight.
 */
export class KeyedLock implements KeyLock {
  readonly #tails = new Map<string, Promise<void>>();

  /** Waits at most `waitMs` for the key; then throws UNAVAILABLE, and the queue slot it held passes on untouched. */
  async acquire(key: string, waitMs: number): Promise<Release> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let open!: () => void;
    const mine = new Promise<void>((resolve) => {
      open = resolve;
    });
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    let released = false;
    const release: Release = () => {
      if (released) return;
      released = true;
      open();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };

    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), waitMs);
    });
    const late = await Promise.race([previous.then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) {
      // Our turn still comes; give it away at once so those queued behind us are not stuck.
      void previous.then(release);
      throw new RegistryError('UNAVAILABLE', 'another push or delete of this repository\'s immutable tags is still in progress; try again').withHeader('Retry-After', '5');
    }
    return release;
  }

  /** Keys held or waited for right now (for tests: a leaked lock shows here). */
  get size(): number {
    return this.#tails.size;
  }
}

/** Whether nothing more can be sent on this response: it was answered, or the client went away. */
export function responseEnded(res: Response): boolean {
  return res.writableFinished || res.destroyed || res.closed;
}

/**
 * Runs `check` and then `forward` holding `key`, and keeps holding it until the response to the
 * forwarded request has ended, whatever the proxy beneath: 'finish' (the registry's answer went
 * out) or 'close' (client gone, upstream failure, error answer). When nothing reached the
 * registry (the check threw, the client left while waiting), the lock is released at once.
 *
 * A client that hangs up after the request went upstream releases the lock when its connection
 * closes, possibly a moment before the registry has finished that request; the proxy gives no
 * earlier signal for "the registry answered" that holds for every implementation beneath it.
 */
export async function runHoldingUntilResponseEnds(locks: KeyLock, key: string, waitMs: number, res: Response, check: () => Promise<void>, forward: () => void): Promise<void> {
  const release = await locks.acquire(key, waitMs);
  try {
    if (responseEnded(res)) return release();
    await check();
    if (responseEnded(res)) return release();
    res.once('finish', release);
    res.once('close', release);
    forward();
  } catch (error) {
    release();
    throw error;
  }
}
