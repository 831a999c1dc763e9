// Webhook delivery: each receiver's bounded queue, fed by the events without ever waiting, sent with retries, backoff and jitter; a dead-letter line after the last attempt.

import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import type { Logger } from 'pino';
import type { EventBus, GatewayEvent } from './events.js';
import { readWebhookCa, readWebhookSecret, type WebhookConfig } from './webhook-config.js';
import { payloadOf, signature, signatureHeader, timestampHeader, wants, type Payload } from './webhook-payload.js';

/** Longest wait between two attempts, whatever the doubling or a Retry-After says. */
const maxRetryMs = 5 * 60_000;
/** Attempts one receiver has in flight at once. */
const concurrency = 4;
/** A receiver's answer is read this far, then let go. */
const maxResponseBytes = 64 * 1024;

export interface WebhookStats {
  name: string;
  /** Deliveries waiting: fresh, or between two attempts. */
  queued: number;
  inFlight: number;
  delivered: number;
  /** Attempts that failed and were tried again. */
  retried: number;
  /** Deliveries given up after the last attempt (dead letters). */
  failed: number;
  /** Deliveries dropped, oldest first, because the queue was full. */
  dropped: number;
}

export interface WebhookOptions {
  logger: Logger;
  /** The gateway as the CloudEvents `source` (a URI). */
  source: string;
  userAgent: string;
  now?: () => Date;
  /** 0 to 1; the jitter's dice (tests fix it). */
  random?: () => number;
}

interface Delivery {
  seq: number;
  payload: Payload;
  /** Attempts made so far. */
  attempts: number;
  dueAt: number;
}

/** The outcome of one attempt: delivered, or why not and whether another attempt can help. */
type Attempt = { ok: true; status: number } | { ok: false; reason: string; retry: boolean; retryAfterMs?: number };

/** One receiver: its queue, its connections, its counters. */
class Receiver {
  readonly stats: WebhookStats;
  #secret: Buffer;
  readonly #agent: http.Agent;
  #waiting: Delivery[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** Deliveries being attempted now. */
  readonly #sending = new Set<Delivery>();
  /** Stopping: nothing new is queued, nothing failed is tried again. */
  #closing = false;
  /** Told when the last delivery of a closing receiver has ended. */
  #drained: (() => void) | undefined;
  #closed = false;

  constructor(
    readonly config: WebhookConfig,
    private readonly options: WebhookOptions,
  ) {
    this.stats = { name: config.name, queued: 0, inFlight: 0, delivered: 0, retried: 0, failed: 0, dropped: 0 };
    this.#secret = readWebhookSecret(config);
    const ca = readWebhookCa(config);
    this.#agent = config.url.protocol === 'https:' ? new https.Agent({ keepAlive: true, ...(ca ? { ca } : {}) }) : new http.Agent({ keepAlive: true });
  }

  /** SIGHUP: a rotated secret is used from the next attempt; one that cannot be read keeps the old. */
  reloadSecret(): void {
    try {
      this.#secret = readWebhookSecret(this.config);
    } catch (error) {
      this.options.logger.error({ webhook: this.config.name, err: (error as Error).message }, 'webhook secret not reloaded; signing with the previous one');
    }
  }

  enqueue(payload: Payload, seq: number): void {
    if (this.#closing) return;
    if (this.#waiting.length >= this.config.queueSize) {
      let oldest = 0;
      for (let i = 1; i < this.#waiting.length; i++) if (this.#waiting[i]!.seq < this.#waiting[oldest]!.seq) oldest = i;
      const [dropped] = this.#waiting.splice(oldest, 1);
      this.stats.dropped += 1;
      this.options.logger.warn(
        { webhook: this.config.name, id: dropped!.payload.id, type: dropped!.payload.type, subject: dropped!.payload.subject, attempts: dropped!.attempts, queue: this.config.queueSize, dropped: this.stats.dropped },
        'webhook queue full: dropped the oldest delivery',
      );
    }
    this.#waiting.push({ seq, payload, attempts: 0, dueAt: 0 });
    this.stats.queued = this.#waiting.length;
    this.#pump();
  }

  /** Starts what is due, up to the concurrency; wakes again when the next retry is due. */
  #pump(): void {
    if (this.#closed) return;
    if (this.#closing && this.#waiting.length === 0 && this.#sending.size === 0) return this.#drained?.();
    const now = Date.now();
    while (this.stats.inFlight < concurrency) {
      const at = this.#waiting.findIndex((delivery) => delivery.dueAt <= now);
      if (at === -1) break;
      const [delivery] = this.#waiting.splice(at, 1);
      this.stats.queued = this.#waiting.length;
      this.stats.inFlight += 1;
      this.#sending.add(delivery!);
      void this.#attempt(delivery!);
    }
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.stats.inFlight >= concurrency || this.#waiting.length === 0) return;
    let next = Infinity;
    for (const delivery of this.#waiting) next = Math.min(next, delivery.dueAt);
    this.#timer = setTimeout(() => this.#pump(), Math.max(0, next - now));
    this.#timer.unref();
  }

  async #attempt(delivery: Delivery): Promise<void> {
    delivery.attempts += 1;
    const outcome = await this.#send(delivery);
    this.stats.inFlight -= 1;
    // Closed meanwhile: close() has written its dead letter.
    if (this.#closed) return;
    this.#sending.delete(delivery);
    const { name } = this.config;
    const { id, type, subject } = delivery.payload;
    if (outcome.ok) {
      this.stats.delivered += 1;
      this.options.logger.info({ webhook: name, id, type, subject, attempts: delivery.attempts, status: outcome.status }, 'webhook delivered');
    } else if (!outcome.retry || delivery.attempts >= this.config.maxAttempts || this.#closing) {
      this.#deadLetter(delivery, this.#closing && outcome.retry ? `${outcome.reason}; the gateway is stopping` : outcome.reason);
    } else {
      const waitMs = this.#backoff(delivery.attempts, outcome.retryAfterMs);
      delivery.dueAt = Date.now() + waitMs;
      this.stats.retried += 1;
      this.#waiting.push(delivery);
      this.stats.queued = this.#waiting.length;
      this.options.logger.warn({ webhook: name, id, type, subject, attempt: delivery.attempts, err: outcome.reason, retry_in_ms: waitMs }, 'webhook attempt failed; trying again');
    }
    this.#pump();
  }

  /** The dead letter: everything needed to send it again by hand (the event carries no secret). */
  #deadLetter(delivery: Delivery, reason: string): void {
    this.stats.failed += 1;
    const { id, type, subject, body } = delivery.payload;
    this.options.logger.error(
      { webhook: this.config.name, receiver: this.config.url.origin, id, type, subject, attempts: delivery.attempts, err: reason, event: JSON.parse(body) as unknown },
      'webhook delivery failed for good (dead letter)',
    );
  }

  /** retry_seconds doubled per attempt made, with jitter (half to all of it), at least what Retry-After asks, at most five minutes. */
  #backoff(attempts: number, retryAfterMs: number | undefined): number {
    const doubled = Math.min(maxRetryMs, this.config.retryMs * 2 ** (attempts - 1));
    const jittered = doubled / 2 + (doubled / 2) * (this.options.random ?? Math.random)();
    return Math.round(Math.min(maxRetryMs, Math.max(jittered, retryAfterMs ?? 0)));
  }

  #send(delivery: Delivery): Promise<Attempt> {
    const { body, contentType, id } = delivery.payload;
    const timestamp = String(Math.floor((this.options.now?.() ?? new Date()).getTime() / 1000));
    const headers = {
      'content-type': contentType,
      'content-length': String(Buffer.byteLength(body)),
      'user-agent': this.options.userAgent,
      [timestampHeader]: timestamp,
      [signatureHeader]: signature(this.#secret, timestamp, body),
      'x-gateway-delivery': id,
      'x-gateway-attempt': String(delivery.attempts),
    };
    const send = this.config.url.protocol === 'https:' ? https.request : http.request;
    return new Promise<Attempt>((resolve) => {
      let settled = false;
      const done = (attempt: Attempt) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(attempt);
      };
      const request = send(this.config.url, { method: 'POST', headers, agent: this.#agent }, (response) => {
        const status = response.statusCode ?? 0;
        let read = 0;
        response.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > maxResponseBytes) response.destroy();
        });
        const finish = () => done(status >= 200 && status < 300 ? { ok: true, status } : refusal(status, response.headers['retry-after']));
        response.once('end', finish);
        response.once('close', finish);
        response.once('error', finish);
      });
      const timer = setTimeout(() => {
        done({ ok: false, reason: `no answer within ${this.config.timeoutMs / 1000} s`, retry: true });
        request.destroy();
      }, this.config.timeoutMs);
      request.once('error', (error) => done({ ok: false, reason: error.message, retry: true }));
      request.end(body);
    });
  }

  /**
   * Gives what is queued one last attempt at once (no backoff waited out, nothing failed tried
   * again) for at most `drainMs`; then stops, and writes a dead letter for every delivery not
   * made. Resolves with how many those were.
   */
  async close(drainMs: number): Promise<number> {
    if (this.#closing) return 0;
    this.#closing = true;
    if (drainMs > 0 && this.#waiting.length + this.#sending.size > 0) {
      for (const delivery of this.#waiting) delivery.dueAt = 0;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => {
          this.#drained = resolve;
          this.#pump();
        }),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, drainMs))),
      ]);
      clearTimeout(timer);
    }
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#agent.destroy();
    // An attempt cut off here may have reached the receiver: its dead letter can be a duplicate (the id tells).
    const left = [...this.#sending, ...this.#waiting];
    for (const delivery of left) this.#deadLetter(delivery, 'not delivered before the gateway stopped');
    this.#sending.clear();
    this.#waiting = [];
    this.stats.queued = 0;
    return left.length;
  }
}

/** A non-2xx answer: 408, 425, 429 and 5xx may pass (tried again, Retry-After honoured); other answers (3xx, 4xx) will not. */
function refusal(status: number, retryAfter: string | undefined): Attempt {
  const retry = status === 408 || status === 425 || status === 429 || status >= 500;
  const seconds = retryAfter !== undefined && /^\d{1,6}$/.test(retryAfter.trim()) ? Number(retryAfter) * 1000 : undefined;
  return { ok: false, reason: `answered ${status}`, retry, ...(seconds !== undefined ? { retryAfterMs: seconds } : {}) };
}

/** Every configured receiver; `offer` only queues, so whoever emits the event never waits. */
export class Webhooks {
  readonly #receivers: Receiver[];
  readonly #options: WebhookOptions;
  #seq = 0;

  /** Reads each secret (and CA file) now: throws a ConfigError naming the webhook's key and line. */
  constructor(configs: readonly WebhookConfig[], options: WebhookOptions) {
    this.#options = options;
    this.#receivers = configs.map((config) => new Receiver(config, options));
  }

  listen(events: EventBus): () => void {
    return events.on((event) => this.offer(event));
  }

  offer(event: GatewayEvent): void {
    if (this.#receivers.length === 0) return;
    const payload = payloadOf(event, this.#options.source, this.#options.now?.() ?? new Date());
    if (payload === undefined) return;
    const seq = ++this.#seq;
    for (const receiver of this.#receivers) if (wants(receiver.config, payload)) receiver.enqueue(payload, seq);
  }

  /** Counters per receiver, for the metrics. */
  stats(): WebhookStats[] {
    return this.#receivers.map((receiver) => ({ ...receiver.stats }));
  }

  reloadSecrets(): void {
    for (const receiver of this.#receivers) receiver.reloadSecret();
  }

  /** Tries what is queued once more for at most `drainMs` (0: not at all); every delivery not made is logged as a dead letter. */
  async close(drainMs = 0): Promise<void> {
    await Promise.all(
      this.#receivers.map(async (receiver) => {
        const left = await receiver.close(drainMs);
        if (left > 0) this.#options.logger.warn({ webhook: receiver.config.name, undelivered: left }, 'gateway stopping: webhook deliveries not made (each logged as a dead letter)');
      }),
    );
  }
}

/** The receivers the settings name, or undefined when there are none; throws a ConfigError for an unreadable secret. */
export function webhooksFor(config: { webhooks?: readonly WebhookConfig[]; publicUrl: URL | undefined }, logger: Logger): Webhooks | undefined {
  if (config.webhooks === undefined || config.webhooks.length === 0) return undefined;
  const source = config.publicUrl?.origin ?? `urn:registry-gateway:${os.hostname()}`;
  return new Webhooks(config.webhooks, { logger: logger.child({ component: 'webhooks' }), source, userAgent: 'registry-gateway' });
}
