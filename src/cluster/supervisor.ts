// The primary's workers: forks them, answers their calls, replaces one that dies (with a backoff), passes messages to all, stops them.

import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { SharedState } from '../state/shared-state.js';
import { answerStateCall } from './ipc-state.js';
import { LockHub } from './lock-share.js';
import { parseWorkerMessage, WorkerStartError, type PrimaryMessage, type WorkerMessage } from './messages.js';

type Setup = Extract<PrimaryMessage, { type: 'gateway:setup' }>;
/** One worker's metrics, as prom-client's getMetricsAsJSON() gives them. */
export type MetricsJson = Extract<WorkerMessage, { type: 'gateway:metrics-answer' }>['metrics'];

export interface SupervisorOptions {
  count: number;
  logger: Logger;
  /** What a worker that says hello is given. */
  setup(): Setup;
  /** The state workers share, when the primary holds it (no Redis). */
  state?: SharedState;
  /** First replacement delay after a crash, doubled for each crash in a row up to maxRestartDelayMs. */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
}

interface Tracked {
  worker: Worker;
  pid: number;
  startedAt: number;
  /** Said hello and got its setup: from then on it hears every broadcast. */
  greeted: boolean;
  listening: boolean;
  /** What it said when it could not start. */
  failure?: { text: string; code: number };
}

/** A worker that served this long without dying resets the backoff. */
const stableUptimeMs = 60_000;
/** How long a sync or reload waits for a worker before going on without it. */
const answerTimeoutMs = 30_000;

export class WorkerSupervisor {
  readonly #options: SupervisorOptions;
  readonly #tracked = new Map<number, Tracked>();
  /** Waiting for answers (synced, reloaded) by request id: the workers still to answer. */
  /** Questions to the workers waiting for answers (synced, reloaded, metrics) by request id: who is still to answer, and what those who did said. */
  readonly #waits = new Map<number, { workers: Set<number>; answers: unknown[]; done(): void }>();
  readonly #restarts = new Set<NodeJS.Timeout>();
  readonly #locks = new LockHub();
  #nextId = 1;
  #crashesInARow = 0;
  #starting: { resolve(address: { url: string; port: number }): void; reject(error: Error): void } | undefined;
  #address: { url: string; port: number } | undefined;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  #allGone: (() => void) | undefined;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    // A primary that exits without stopping its workers (a second signal) takes them along.
    process.on('exit', () => {
      for (const { worker } of this.#tracked.values()) worker.process.kill('SIGKILL');
    });
  }

  /** Forks every worker; resolves when all listen, rejects (having stopped them) when one could not start. */
  start(): Promise<{ url: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.#starting = { resolve, reject };
      for (let i = 0; i < this.#options.count; i++) this.#fork();
    });
  }

  /** Sends to every worker that has its setup (a later one gets the state of things in its setup). */
  broadcast(message: PrimaryMessage): void {
    for (const tracked of this.#tracked.values()) if (tracked.greeted) this.#send(tracked.worker, message);
  }

  /** Resolves once every worker has taken in what was sent to it before (or died, or took too long). */
  async sync(): Promise<void> {
    await this.#askAll((id) => ({ type: 'gateway:sync', id }), answerTimeoutMs);
  }

  /** Each worker does what SIGHUP does in a single gateway; resolves with the errors they reported. */
  reload(): Promise<string[]> {
    // Only a worker that failed answers with something: its error.
    return this.#askAll<string>((id) => ({ type: 'gateway:reload', id }), answerTimeoutMs);
  }

  /**
   * What every worker that has its setup counts now, one entry per worker that answered within
   * `waitMs`. A worker still starting (no setup yet) is not asked, so a scrape never waits on one.
   */
  metrics(waitMs = 2_000): Promise<MetricsJson[]> {
    return this.#askAll<MetricsJson>((id) => ({ type: 'gateway:metrics', id }), waitMs);
  }

  get size(): number {
    return this.#tracked.size;
  }

  /** Asks every worker to drain and exit; one still there after the grace period (and some) is killed. */
  stop(graceMs: number): Promise<void> {
    this.#stopped ??= this.#stop(graceMs);
    return this.#stopped;
  }

  async #stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    for (const timer of this.#restarts) clearTimeout(timer);
    this.#restarts.clear();
    if (this.#tracked.size === 0) return;
    const gone = new Promise<void>((resolve) => {
      this.#allGone = resolve;
    });
    for (const { worker } of this.#tracked.values()) {
      if (!this.#send(worker, { type: 'gateway:stop' })) worker.process.kill('SIGTERM');
    }
    const killer = setTimeout(() => {
      for (const { worker, pid } of this.#tracked.values()) {
        this.#options.logger.warn({ worker: worker.id, pid }, 'worker did not stop in time: killing it');
        worker.process.kill('SIGKILL');
      }
    }, graceMs + 10_000);
    await gone;
    clearTimeout(killer);
  }

  #fork(): void {
    const worker = cluster.fork();
    const pid = worker.process.pid ?? 0;
    const tracked: Tracked = { worker, pid, startedAt: Date.now(), greeted: false, listening: false };
    this.#tracked.set(worker.id, tracked);
    this.#options.logger.info({ worker: worker.id, pid }, 'worker started');
    worker.on('message', (raw) => {
      const message = parseWorkerMessage(raw);
      if (message) this.#receive(tracked, message);
    });
    // A broken channel is told by 'exit' as well; this only keeps the error from being thrown.
    worker.on('error', (error) => this.#options.logger.debug({ worker: worker.id, pid, err: error.message }, 'worker channel error'));
    worker.on('exit', (code, signal) => this.#exited(tracked, code, signal));
  }

  #receive(tracked: Tracked, message: WorkerMessage): void {
    switch (message.type) {
      case 'gateway:hello':
        tracked.greeted = true;
        this.#send(tracked.worker, this.#options.setup());
        return;
      case 'gateway:listening':
        tracked.listening = true;
        this.#address ??= { url: message.url, port: message.port };
        if (this.#starting && [...this.#tracked.values()].every((each) => each.listening)) {
          this.#starting.resolve(this.#address);
          this.#starting = undefined;
        }
        return;
      case 'gateway:start-failed':
        tracked.failure = { text: message.text, code: message.code };
        if (!this.#starting) this.#options.logger.error({ worker: tracked.worker.id, pid: tracked.pid, err: message.text.trim() }, 'worker could not start');
        return;
      case 'gateway:synced':
        this.#answered(message.id, tracked.worker.id);
        return;
      case 'gateway:reloaded':
        this.#answered(message.id, tracked.worker.id, message.error === undefined ? undefined : `worker ${tracked.worker.id}: ${message.error}`);
        return;
      case 'gateway:metrics-answer':
        this.#answered(message.id, tracked.worker.id, message.metrics);
        return;
      case 'gateway:lock':
      case 'gateway:unlock':
        this.#locks.receive(tracked.worker.id, message, (reply) => this.#send(tracked.worker, reply));
        return;
      case 'gateway:state-call': {
        const { state } = this.#options;
        if (state === undefined) {
          this.#send(tracked.worker, { type: 'gateway:state-result', id: message.id, ok: false, error: 'the primary holds no shared state' });
          return;
        }
        void answerStateCall(state, message.id, message.call).then((answer) => this.#send(tracked.worker, answer));
        return;
      }
    }
  }

  #exited(tracked: Tracked, code: number | null, signal: string | null): void {
    const { logger } = this.#options;
    const { worker, pid } = tracked;
    this.#tracked.delete(worker.id);
    this.#locks.workerGone(worker.id);
    for (const id of this.#waits.keys()) this.#answered(id, worker.id);
    if (this.#stopping) {
      logger.info({ worker: worker.id, pid, code, signal }, 'worker exited');
      if (this.#tracked.size === 0) this.#allGone?.();
      return;
    }
    if (this.#starting) {
      this.#failStart(tracked, code);
      return;
    }
    const uptime = Date.now() - tracked.startedAt;
    this.#crashesInARow = uptime >= stableUptimeMs ? 1 : this.#crashesInARow + 1;
    const base = this.#options.restartDelayMs ?? 1000;
    const delay = Math.min(this.#options.maxRestartDelayMs ?? 30_000, base * 2 ** (this.#crashesInARow - 1));
    logger.error({ worker: worker.id, pid, code, signal, restartInMs: delay }, 'worker exited: its connections are lost, the other workers serve on; starting another');
    const timer = setTimeout(() => {
      this.#restarts.delete(timer);
      if (!this.#stopping) this.#fork();
    }, delay);
    this.#restarts.add(timer);
  }

  /** A worker died before all listened: the others are stopped and the start fails with what it said. */
  #failStart(tracked: Tracked, code: number | null): void {
    const starting = this.#starting!;
    this.#starting = undefined;
    const failure = tracked.failure ?? { text: `gateway: worker ${tracked.worker.id} (pid ${tracked.pid}) exited with ${code ?? 'a signal'} while starting\n`, code: 1 };
    void this.stop(0).then(() => starting.reject(new WorkerStartError(failure.text, failure.code)));
  }

  /**
   * Asks every worker that has its setup (one still starting is not asked, so nobody waits on it);
   * resolves with the answers of those that gave one within `waitMs` (a worker that dies counts as
   * answered), and says who did not.
   */
  #askAll<T>(message: (id: number) => PrimaryMessage, waitMs: number): Promise<T[]> {
    const id = this.#nextId++;
    const asked = [...this.#tracked.values()].filter((tracked) => tracked.greeted && this.#send(tracked.worker, message(id)));
    if (asked.length === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      const wait = {
        workers: new Set(asked.map((tracked) => tracked.worker.id)),
        answers: [] as unknown[],
        done: () => {
          clearTimeout(timer);
          this.#waits.delete(id);
          resolve(wait.answers as T[]);
        },
      };
      const timer = setTimeout(() => {
        this.#options.logger.warn({ workers: [...wait.workers], asked: message(id).type }, 'workers did not answer in time; going on without them');
        wait.done();
      }, waitMs);
      this.#waits.set(id, wait);
    });
  }

  /** A worker's answer (`answer` undefined: answered with nothing to say, or gone). */
  #answered(id: number, workerId: number, answer?: unknown): void {
    const wait = this.#waits.get(id);
    if (wait === undefined || !wait.workers.delete(workerId)) return;
    if (answer !== undefined) wait.answers.push(answer);
    if (wait.workers.size === 0) wait.done();
  }

  /** False when the worker's channel is gone. */
  #send(worker: Worker, message: PrimaryMessage): boolean {
    if (!worker.isConnected()) return false;
    try {
      worker.send(message);
      return true;
    } catch {
      return false;
    }
  }
}
