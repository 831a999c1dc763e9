// Locks by key across a cluster's workers: the primary holds one KeyedLock for all, and lets go of what a worker held when it dies.

import { RegistryError } from '../errors.js';
import { KeyedLock, type KeyLock, type Release } from '../registry/tag-locks.js';
import type { PrimaryChannel } from './ipc-state.js';
import type { PrimaryMessage, WorkerMessage } from './messages.js';

/** Beyond the lock's own wait: how long a worker waits for its primary's answer before it gives up. */
const answerMarginMs = 10_000;

function unavailable(message: string): RegistryError {
  return new RegistryError('UNAVAILABLE', message).withHeader('Retry-After', '5');
}

/** A worker's locks: each acquire is the primary's to grant; a release is sent once. */
export class ClusterLocks {
  readonly #channel: PrimaryChannel;
  readonly #pending = new Map<number, { resolve(): void; reject(error: Error): void; timer: NodeJS.Timeout }>();
  #nextId = 1;

  constructor(channel: PrimaryChannel) {
    this.#channel = channel;
  }

  /** The lock named `name`, shared by every worker that makes one of that name. */
  lock(name: string): KeyLock {
    return { acquire: (key, waitMs) => this.#acquire(`${name}\n${key}`, waitMs) };
  }

  /** Takes the primary's answers; false for its other messages. */
  receive(message: PrimaryMessage): boolean {
    if (message.type !== 'gateway:lock-result') return false;
    const pending = this.#pending.get(message.id);
    if (pending === undefined) {
      // Granted after this worker stopped waiting: give it back at once.
      if (message.ok) this.#send({ type: 'gateway:unlock', id: message.id });
      return true;
    }
    this.#pending.delete(message.id);
    clearTimeout(pending.timer);
    if (message.ok) pending.resolve();
    else pending.reject(unavailable(message.error ?? 'the lock could not be had; try again'));
    return true;
  }

  /** The primary is gone: what waits fails now (and the locks it held died with it). */
  disconnected(): void {
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(unavailable('the gateway is restarting; try again'));
    }
  }

  async #acquire(key: string, waitMs: number): Promise<Release> {
    if (!this.#channel.connected) throw unavailable('the gateway is restarting; try again');
    const id = this.#nextId++;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(unavailable('the gateway did not answer in time; try again'));
      }, waitMs + answerMarginMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#send({ type: 'gateway:lock', id, key, waitMs });
    });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#send({ type: 'gateway:unlock', id });
    };
  }

  #send(message: WorkerMessage): void {
    try {
      this.#channel.send(message);
    } catch {
      // A channel gone: the primary lets go of this worker's locks when it exits.
    }
  }
}

/** The primary's side: one KeyedLock for every worker, and who holds what. */
export class LockHub {
  readonly #locks = new KeyedLock();
  /** By worker, the releases of what it holds, by its request id. */
  readonly #held = new Map<number, Map<number, Release>>();
  readonly #gone = new Set<number>();

  /** Answers a worker's lock or unlock; `reply` sends to that worker. */
  receive(worker: number, message: WorkerMessage, reply: (message: PrimaryMessage) => void): boolean {
    if (message.type === 'gateway:unlock') {
      const held = this.#held.get(worker);
      held?.get(message.id)?.();
      held?.delete(message.id);
      return true;
    }
    if (message.type !== 'gateway:lock') return false;
    const { id } = message;
    this.#locks.acquire(message.key, message.waitMs).then(
      (release) => {
        if (this.#gone.has(worker)) return release();
        const held = this.#held.get(worker) ?? new Map<number, Release>();
        this.#held.set(worker, held);
        held.set(id, release);
        reply({ type: 'gateway:lock-result', id, ok: true });
      },
      (error: unknown) => reply({ type: 'gateway:lock-result', id, ok: false, error: (error as Error).message }),
    );
    return true;
  }

  /** A worker exited: what it held is free, what it waits for is let go as soon as it comes. */
  workerGone(worker: number): void {
    this.#gone.add(worker);
    for (const release of this.#held.get(worker)?.values() ?? []) release();
    this.#held.delete(worker);
  }

  /** Keys held or waited for (tests). */
  get size(): number {
    return this.#locks.size;
  }
}
