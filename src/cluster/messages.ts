// The messages a cluster primary and its workers exchange over IPC, checked on arrival; anything else on the channel is ignored.

import { z } from 'zod';
import { noticeChannels } from '../state/shared-state.js';

const pem = z.string().max(64 * 1024);
const id = z.number().int().nonnegative();
const challenge = z.discriminatedUnion('op', [
  z.object({ op: z.literal('add-alpn'), host: z.string(), key: pem, cert: pem }),
  z.object({ op: z.literal('remove-alpn'), host: z.string() }),
  z.object({ op: z.literal('add-http'), token: z.string(), answer: z.string() }),
  z.object({ op: z.literal('remove-http'), token: z.string() }),
]);
export type ChallengeChange = z.infer<typeof challenge>;

/** The ACME status as the manager reports it: passed on as is. */
const acmeStatus = z
  .object({
    state: z.enum(['waiting', 'valid', 'failing']),
    domains: z.array(z.string()).readonly(),
    notAfter: z.string().optional(),
    renewAt: z.string().optional(),
    issuer: z.string().optional(),
    lastError: z.string().optional(),
    nextAttempt: z.string().optional(),
  })
  .optional();

/** The SharedState calls a worker may make of the primary's state (subscriptions stay in the worker). */
const stateCall = z.discriminatedUnion('method', [
  z.object({ method: z.literal('addCount'), args: z.tuple([z.string(), z.number().nonnegative(), z.number().int().min(-1).max(1).optional()]) }),
  z.object({ method: z.literal('readCount'), args: z.tuple([z.string()]) }),
  z.object({ method: z.literal('clear'), args: z.tuple([z.string()]) }),
  z.object({ method: z.literal('takeTurn'), args: z.tuple([z.string(), z.number().nonnegative()]) }),
  z.object({ method: z.literal('holdTurn'), args: z.tuple([z.string(), z.number().nonnegative()]) }),
  z.object({ method: z.literal('get'), args: z.tuple([z.string()]) }),
  // JSON has no undefined: null removes the value.
  z.object({ method: z.literal('set'), args: z.tuple([z.string(), z.string().nullable()]) }),
  z.object({ method: z.literal('publish'), args: z.tuple([z.enum(noticeChannels), z.string()]) }),
]);
export type StateCall = z.infer<typeof stateCall>;

const fromPrimary = z.discriminatedUnion('type', [
  /** The answer to hello: what the worker needs before it starts its gateway. */
  z.object({
    type: z.literal('gateway:setup'),
    registry: z.string().optional(),
    certificate: z.object({ cert: pem, key: pem }).optional(),
    acmeStatus,
    challenges: z.array(challenge),
  }),
  z.object({ type: z.literal('gateway:certificate'), cert: pem, key: pem }),
  z.object({ type: z.literal('gateway:acme-status'), status: acmeStatus }),
  z.object({ type: z.literal('gateway:challenge'), change: challenge }),
  /** Answered with synced once everything sent before it has been taken in. */
  z.object({ type: z.literal('gateway:sync'), id }),
  z.object({ type: z.literal('gateway:reload'), id }),
  z.object({ type: z.literal('gateway:stop') }),
  z.object({ type: z.literal('gateway:state-result'), id, ok: z.boolean(), value: z.union([z.string(), z.number()]).nullable().optional(), error: z.string().optional() }),
  z.object({ type: z.literal('gateway:notice'), channel: z.enum(noticeChannels), message: z.string() }),
  z.object({ type: z.literal('gateway:lock-result'), id, ok: z.boolean(), error: z.string().optional() }),
  /** Answered with metrics: what the worker's registries count now. */
  z.object({ type: z.literal('gateway:metrics'), id }),
]);
export type PrimaryMessage = z.infer<typeof fromPrimary>;

const fromWorker = z.discriminatedUnion('type', [
  z.object({ type: z.literal('gateway:hello') }),
  z.object({ type: z.literal('gateway:listening'), url: z.string(), port: z.number().int() }),
  /** Start-up failed: what `gateway serve` would have printed, and its exit code. */
  z.object({ type: z.literal('gateway:start-failed'), text: z.string(), code: z.number().int() }),
  z.object({ type: z.literal('gateway:synced'), id }),
  z.object({ type: z.literal('gateway:reloaded'), id, error: z.string().optional() }),
  z.object({ type: z.literal('gateway:state-call'), id, call: stateCall }),
  /** Waits for the lock `key` (its name and key) at most waitMs; answered by lock-result. */
  z.object({ type: z.literal('gateway:lock'), id, key: z.string().max(4096), waitMs: z.number().nonnegative().max(3_600_000) }),
  z.object({ type: z.literal('gateway:unlock'), id }),
  /** prom-client's getMetricsAsJSON() of each of the worker's registries, concatenated (summed by the primary). */
  z.object({ type: z.literal('gateway:metrics-answer'), id, metrics: z.array(z.looseObject({ name: z.string() })) }),
]);
export type WorkerMessage = z.infer<typeof fromWorker>;

/** A message from the primary, or undefined for anything else (prom-client's own, say). */
export function parsePrimaryMessage(value: unknown): PrimaryMessage | undefined {
  const parsed = fromPrimary.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

/** A message from a worker, or undefined for anything else. */
export function parseWorkerMessage(value: unknown): WorkerMessage | undefined {
  const parsed = fromWorker.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

/** A worker could not start: the primary ends its own start with what the worker would have printed. */
export class WorkerStartError extends Error {
  override readonly name = 'WorkerStartError';

  constructor(
    readonly text: string,
    readonly exitCode: number,
  ) {
    super(text.trim());
  }
}
