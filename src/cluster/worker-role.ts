// Whether this process is a worker of `gateway serve`'s cluster, and what it tells its primary before it has a gateway.

import cluster from 'node:cluster';
import type { WorkerMessage } from './messages.js';

/** Whether this process is a worker of `gateway serve`'s cluster. */
export function isClusterWorker(): boolean {
  return cluster.isWorker;
}

/** Fields every log line of a worker carries. */
export function workerLogFields(): { worker?: number } {
  return cluster.isWorker && cluster.worker ? { worker: cluster.worker.id } : {};
}

/** Tells the primary why this worker could not start (what `serve` would print), then calls `done`. */
export function reportStartFailure(text: string, code: number, done: () => void): void {
  if (!process.connected || process.send === undefined) return done();
  process.send({ type: 'gateway:start-failed', text, code } satisfies WorkerMessage, undefined, {}, () => done());
}
