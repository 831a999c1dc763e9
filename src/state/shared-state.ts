// What several gateway processes share (login-failure counters, turns, notices, a few values), and the in-process version one gateway uses alone.

import { performance } from 'node:perf_hooks';
import { NoticeListeners } from './notice-listeners.js';

/**
 * Named channels for notices. Messages are JSON text; src/state/notices.ts says what each carries.
 * - revocations: a CI token or personal access token was revoked; stop accepting it now.
 * - sessions: a UI session ended (signed out); forget it now.
 * - maintenance: the maintenance switch changed; read it again.
 */
export const noticeChannels = ['revocations', 'sessions', 'maintenance'] as const;
export type NoticeChannel = (typeof noticeChannels)[number];

export type NoticeListener = (message: string) => void;

/**
 * State shared by the gateways of one deployment: in this process only (InProcessSharedState), by
 * the workers of one host through their primary, or by every gateway through Redis.
 *
 * Every method is async and every argument and result is plain JSON data, so a backend may forward
 * each call elsewhere (a cluster worker forwards them to an InProcessSharedState in its primary).
 * A call rejects when the backend cannot answer (Redis down): callers then carry on with what this
 * process knows by itself, so a rejection is never an error for a client.
 *
 * Keys are short printable strings chosen by the gateway ("throttle:..."); a backend may prefix
 * them (Redis: the deployment's key prefix). Counters and turns of one key are separate things.
 */
export interface SharedState {
  /** Where the state lives, for logs and metrics: "process", "cluster" or "redis". */
  readonly kind: string;

  /** Adds `by` (default 1; -1 takes one back, never below 0) to the counter `key`, which lapses `windowMs` after this change; resolves to its new value. */
  addCount(key: string, windowMs: number, by?: number): Promise<number>;
  /** The counter's value; 0 when never added to, cleared or lapsed. */
  readCount(key: string): Promise<number>;
  /** Forgets the counter and the turn of `key`. */
  clear(key: string): Promise<void>;

  /**
   * Takes the turn of `key` for `holdMs` when nobody holds it, resolving to 0; else resolves to the
   * milliseconds until it frees (at least 1), and takes nothing. Spaces checks across gateways.
   */
  takeTurn(key: string, holdMs: number): Promise<number>;
  /** Sets the turn of `key` taken until `ms` from now, whoever took it and for how long; 0 frees it. */
  holdTurn(key: string, ms: number): Promise<void>;

  /** A value kept until set again (maintenance state); undefined when none. For a handful of keys. */
  get(key: string): Promise<string | undefined>;
  /** Sets a value; undefined removes it. */
  set(key: string, value: string | undefined): Promise<void>;

  /** Sends a notice to every subscriber of the channel, in every gateway, this process included. */
  publish(channel: NoticeChannel, message: string): Promise<void>;
  /**
   * Hears the channel's notices from now on (never the ones before) until the returned function is
   * called. Notices sent while a backend is unreachable are lost: what they announce also reaches
   * every gateway another way (files), only later.
   */
  subscribe(channel: NoticeChannel, listener: NoticeListener): () => void;

  /** Lets go of connections and timers; later calls reject. */
  close(): Promise<void>;
}

export interface InProcessSharedStateOptions {
  /** Counters and turns kept at most; beyond, the least recently touched are dropped. */
  maxKeys?: number;
  /** Milliseconds of a monotonic clock; tests pass their own. */
  now?: () => number;
  /** Hears a listener that threw (the notice still reaches the others). */
  onListenerError?(error: unknown): void;
}

interface Timed {
  value: number;
  /** On the clock of `now`: the counter lapses, or the turn frees, at this time. */
  until: number;
}

/**
 * The shared state of a gateway that shares with nobody (the default, and what a cluster primary
 * holds for its workers). Notices reach this process's subscribers asynchronously, as from Redis.
 */
export class InProcessSharedState implements SharedState {
  readonly kind: string = 'process';
  readonly #maxKeys: number;
  readonly #now: () => number;
  /** Counters and turns, least recently touched first. */
  readonly #counters = new Map<string, Timed>();
  readonly #turns = new Map<string, Timed>();
  readonly #values = new Map<string, string>();
  readonly #listeners: NoticeListeners;
  #closed = false;

  constructor(options: InProcessSharedStateOptions = {}) {
    this.#maxKeys = options.maxKeys ?? 100_000;
    if (!Number.isInteger(this.#maxKeys) || this.#maxKeys < 1) throw new RangeError('maxKeys must be a positive integer');
    this.#now = options.now ?? (() => performance.now());
    this.#listeners = new NoticeListeners(options.onListenerError);
  }

  async addCount(key: string, windowMs: number, by = 1): Promise<number> {
    this.#open();
    const value = Math.max(0, (this.#live(this.#counters, key)?.value ?? 0) + by);
    this.#put(this.#counters, key, { value, until: this.#now() + windowMs });
    return value;
  }

  async readCount(key: string): Promise<number> {
    this.#open();
    return this.#live(this.#counters, key)?.value ?? 0;
  }

  async clear(key: string): Promise<void> {
    this.#open();
    this.#counters.delete(key);
    this.#turns.delete(key);
  }

  async takeTurn(key: string, holdMs: number): Promise<number> {
    this.#open();
    const taken = this.#live(this.#turns, key);
    if (taken !== undefined) return Math.max(1, Math.ceil(taken.until - this.#now()));
    if (holdMs > 0) this.#put(this.#turns, key, { value: 1, until: this.#now() + holdMs });
    return 0;
  }

  async holdTurn(key: string, ms: number): Promise<void> {
    this.#open();
    if (ms > 0) this.#put(this.#turns, key, { value: 1, until: this.#now() + ms });
    else this.#turns.delete(key);
  }

  async get(key: string): Promise<string | undefined> {
    this.#open();
    return this.#values.get(key);
  }

  async set(key: string, value: string | undefined): Promise<void> {
    this.#open();
    if (value === undefined) this.#values.delete(key);
    else this.#values.set(key, value);
  }

  async publish(channel: NoticeChannel, message: string): Promise<void> {
    this.#open();
    setImmediate(() => this.#listeners.tell(channel, message));
  }

  subscribe(channel: NoticeChannel, listener: NoticeListener): () => void {
    return this.#listeners.add(channel, listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
  }

  #open(): void {
    if (this.#closed) throw new Error('the shared state is closed');
  }

  /** The entry while it lasts; a lapsed one is removed. */
  #live(map: Map<string, Timed>, key: string): Timed | undefined {
    const entry = map.get(key);
    if (entry === undefined) return undefined;
    if (entry.until > this.#now()) return entry;
    map.delete(key);
    return undefined;
  }

  /** Stores as the most recently touched; drops lapsed entries at the front, and the oldest beyond maxKeys. */
  #put(map: Map<string, Timed>, key: string, entry: Timed): void {
    map.delete(key);
    map.set(key, entry);
    const now = this.#now();
    for (const [oldest, { until }] of map) {
      if (map.size <= this.#maxKeys && until > now) break;
      map.delete(oldest);
    }
  }
}
