// The shared state of a cluster worker: every call answered by the one InProcessSharedState its primary holds, notices from the primary to every worker.

import { NoticeListeners } from '../state/notice-listeners.js';
import type { NoticeChannel, NoticeListener, SharedState } from '../state/shared-state.js';
import type { PrimaryMessage, StateCall, WorkerMessage } from './messages.js';

/** How long a call waits for the primary; then it rejects and the caller goes on with what this process knows. */
const callTimeoutMs = 2_000;

/** The worker's end of the IPC channel (process.send in a real worker). */
export interface PrimaryChannel {
  send(message: WorkerMessage): void;
  readonly connected: boolean;
}

interface Pending {
  resolve(value: string | number | undefined): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * SharedState through the primary. A call rejects when the primary does not answer in time or the
 * channel is gone (the callers fall back to per-process state); publish reaches every worker, this
 * one included, as the primary passes each notice to all.
 */
export class IpcSharedState implements SharedState {
  readonly kind = 'cluster';
  readonly #channel: PrimaryChannel;
  readonly #timeoutMs: number;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners: NoticeListeners;
  #nextId = 1;
  #closed = false;

  constructor(channel: PrimaryChannel, options: { timeoutMs?: number; onListenerError?(error: unknown): void } = {}) {
    this.#channel = channel;
    this.#timeoutMs = options.timeoutMs ?? callTimeoutMs;
    this.#listeners = new NoticeListeners(options.onListenerError);
  }

  /** Takes the answers and notices among the primary's messages; false for the others. */
  receive(message: PrimaryMessage): boolean {
    if (message.type === 'gateway:state-result') {
      const pending = this.#pending.get(message.id);
      if (pending === undefined) return true;
      this.#pending.delete(message.id);
      clearTimeout(pending.timer);
      if (message.ok) pending.resolve(message.value ?? undefined);
      else pending.reject(new Error(message.error ?? 'the primary could not answer'));
      return true;
    }
    if (message.type === 'gateway:notice') {
      this.#listeners.tell(message.channel, message.message);
      return true;
    }
    return false;
  }

  /** The channel to the primary is gone: what waits for it rejects now. */
  disconnected(): void {
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new Error('the cluster primary is gone'));
    }
  }

  async addCount(key: string, windowMs: number, by = 1): Promise<number> {
    return (await this.#call({ method: 'addCount', args: [key, windowMs, by] })) as number;
  }

  async readCount(key: string): Promise<number> {
    return (await this.#call({ method: 'readCount', args: [key] })) as number;
  }

  async clear(key: string): Promise<void> {
    await this.#call({ method: 'clear', args: [key] });
  }

  async takeTurn(key: string, holdMs: number): Promise<number> {
    return (await this.#call({ method: 'takeTurn', args: [key, holdMs] })) as number;
  }

  async holdTurn(key: string, ms: number): Promise<void> {
    await this.#call({ method: 'holdTurn', args: [key, ms] });
  }

  async get(key: string): Promise<string | undefined> {
    const value = await this.#call({ method: 'get', args: [key] });
    return typeof value === 'string' ? value : undefined;
  }

  async set(key: string, value: string | undefined): Promise<void> {
    await this.#call({ method: 'set', args: [key, value ?? null] });
  }

  async publish(channel: NoticeChannel, message: string): Promise<void> {
    await this.#call({ method: 'publish', args: [channel, message] });
  }

  subscribe(channel: NoticeChannel, listener: NoticeListener): () => void {
    return this.#listeners.add(channel, listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    this.disconnected();
  }

  #call(call: StateCall): Promise<string | number | undefined> {
    if (this.#closed) return Promise.reject(new Error('the shared state is closed'));
    if (!this.#channel.connected) return Promise.reject(new Error('the cluster primary is gone'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`the cluster primary did not answer within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
      timer.unref();
      this.#pending.set(id, { resolve, reject, timer });
      try {
        this.#channel.send({ type: 'gateway:state-call', id, call });
      } catch (error) {
        this.#pending.delete(id);
        clearTimeout(timer);
        reject(error as Error);
      }
    });
  }
}

/** The primary's side: runs one worker's call on the state it holds; the answer goes back as a state-result. */
export async function answerStateCall(state: SharedState, id: number, call: StateCall): Promise<PrimaryMessage> {
  try {
    const value = await runCall(state, call);
    return { type: 'gateway:state-result', id, ok: true, ...(value === undefined ? {} : { value }) };
  } catch (error) {
    return { type: 'gateway:state-result', id, ok: false, error: (error as Error).message };
  }
}

function runCall(state: SharedState, call: StateCall): Promise<string | number | void | undefined> {
  switch (call.method) {
    case 'addCount':
      return state.addCount(...call.args);
    case 'readCount':
      return state.readCount(...call.args);
    case 'clear':
      return state.clear(...call.args);
    case 'takeTurn':
      return state.takeTurn(...call.args);
    case 'holdTurn':
      return state.holdTurn(...call.args);
    case 'get':
      return state.get(...call.args);
    case 'set':
      return state.set(call.args[0], call.args[1] ?? undefined);
    case 'publish':
      return state.publish(...call.args);
  }
}
