// Who listens to which notice channel: each subscription its own, and one listener's throw never keeps a notice from the others.

import type { NoticeChannel, NoticeListener } from './shared-state.js';

export class NoticeListeners {
  readonly #listeners = new Map<NoticeChannel, Set<NoticeListener>>();
  readonly #onError: (error: unknown) => void;

  /** `onError` hears a listener that threw. */
  constructor(onError: (error: unknown) => void = () => undefined) {
    this.#onError = onError;
  }

  /** Adds `listener` to `channel` (the same function twice is two subscriptions); returns its removal. */
  add(channel: NoticeChannel, listener: NoticeListener): () => void {
    const listeners = this.#listeners.get(channel) ?? new Set();
    this.#listeners.set(channel, listeners);
    const own: NoticeListener = (message) => listener(message);
    listeners.add(own);
    return () => void listeners.delete(own);
  }

  /** Tells every listener of `channel` now (those added while telling hear the next notice). */
  tell(channel: NoticeChannel, message: string): void {
    for (const listener of [...(this.#listeners.get(channel) ?? [])]) {
      try {
        listener(message);
      } catch (error) {
        this.#onError(error);
      }
    }
  }

  /** Channels anyone has subscribed to. */
  channels(): NoticeChannel[] {
    return [...this.#listeners.keys()];
  }

  clear(): void {
    this.#listeners.clear();
  }
}
