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
  readonly #waits = new Map<number, { workers: Set<number>; errors: string[]; done(errors: string[]): void }>();
  readonly #restarts = new Set<NodeJS.Timeout>();
  readonly #locks = new LockHub();
  /** Metrics scrapes waiting for answers, by request id. */
  readonly #scrapes = new Map<number, { workers: Set<number>; metrics: MetricsJson[]; done(): void }>();
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
    await this.#askAll((id) => ({ type: 'gateway:sync', id }));
  }

  /** Each worker does what SIGHUP does in a single gateway; resolves with the errors they reported. */
  reload(): Promise<string[]> {
    return this.#askAll((id) => ({ type: 'gateway:reload', id }));
  }

  /**
   * What every worker that has its setup counts now, one entry per worker that answered within
   * `waitMs`. A worker still starting (no setup yet) is not asked, so a scrape never waits on one.
   */
  metrics(waitMs = 2_000): Promise<MetricsJson[]> {
    const id = this.#nextId++;
    const asked = [...this.#tracked.values()].filter((tracked) => tracked.greeted && this.#send(tracked.worker, { type: 'gateway:metrics', id }));
    if (asked.length === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      const scrape = {
        workers: new Set(asked.map((tracked) => tracked.worker.id)),
        metrics: [] as MetricsJson[],
        done: () => {
          clearTimeout(timer);
          this.#scrapes.delete(id);
          resolve(scrape.metrics);
        },
      };
      const timer = setTimeout(() => {
        this.#options.logger.warn({ workers: [...scrape.workers] }, 'workers did not answer a metrics scrape in time; their counts are left out of it');
        scrape.done();
      }, waitMs);
      this.#scrapes.set(id, scrape);
    });
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
      case 'gateway:reloaded':
        this.#answered(message.id, tracked.worker.id, message.type === 'gateway:reloaded' ? message.error : undefined);
        return;
      case 'gateway:metrics-answer': {
        const scrape = this.#scrapes.get(message.id);
        if (scrape === undefined || !scrape.workers.delete(tracked.worker.id)) return;
        scrape.metrics.push(message.metrics);
        if (scrape.workers.size === 0) scrape.done();
        return;
      }
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
    for (const scrape of this.#scrapes.values()) if (scrape.workers.delete(worker.id) && scrape.workers.size === 0) scrape.done();
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

  #askAll(message: (id: number) => PrimaryMessage): Promise<string[]> {
    const id = this.#nextId++;
    const workers = new Set([...this.#tracked.values()].filter((tracked) => tracked.greeted).map((tracked) => tracked.worker.id));
    if (workers.size === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const wait = this.#waits.get(id);
        if (wait === undefined) return;
        this.#waits.delete(id);
        this.#options.logger.warn({ workers: [...wait.workers] }, 'workers did not answer in time; going on without them');
        resolve(wait.errors);
      }, answerTimeoutMs);
      this.#waits.set(id, {
        workers,
        errors: [],
        done: (errors) => {
          clearTimeout(timer);
          resolve(errors);
        },
      });
      for (const workerId of workers) {
        const tracked = this.#tracked.get(workerId);
        if (!tracked || !this.#send(tracked.worker, message(id))) this.#answered(id, workerId);
      }
    });
  }

  #answered(id: number, workerId: number, error?: string): void {
    const wait = this.#waits.get(id);
    if (wait === undefined || !wait.workers.delete(workerId)) return;
    if (error !== undefined) wait.errors.push(`worker ${workerId}: ${error}`);
    if (wait.workers.size > 0) return;
    this.#waits.delete(id);
    wait.done(wait.errors);
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
