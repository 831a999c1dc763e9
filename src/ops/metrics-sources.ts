// Metrics read when Prometheus scrapes rather than counted per event: the bcrypt queue, upstream health and failovers, certificate expiry, the process.

import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

/** What the running gateway can be asked at scrape time; each part is optional. */
export interface MetricSources {
  /** The password checker's queue (PasswordChecker.waiting / running). */
  passwordChecks?(): { waiting: number; running: number };
  /** Each backend registry and whether it is believed up. */
  upstreams?(): readonly { url: URL; healthy: boolean }[];
  /** Requests sent on to another registry after one failed, since start. */
  failovers?(): number;
  /** When the certificate served now expires (ms since the epoch) and where it came from; undefined when unknown. */
  certificateNotAfter?(): { notAfter: number; source: 'acme' | 'tls_cert' } | undefined;
  /** Audit lines that could not be written, since start. */
  auditFailures?(): number;
  /** Each webhook receiver's queue and counts, named as in the config. */
  webhooks?(): readonly WebhookCounts[];
  /** The state shared with other gateways (Redis): its kind and whether it answers now; undefined when nothing is shared. */
  sharedState?(): { backend: string; up: boolean } | undefined;
}

export interface WebhookCounts {
  name: string;
  queued: number;
  inFlight: number;
  delivered: number;
  retried: number;
  failed: number;
  dropped: number;
}

const webhookResults = ['delivered', 'retried', 'failed', 'dropped'] as const;

/** Adds the scrape-time metrics to `registry`. */
export function registerSourceMetrics(registry: Registry, sources: MetricSources): void {
  const registers = [registry];
  const { passwordChecks, upstreams, failovers, certificateNotAfter, auditFailures, webhooks, sharedState } = sources;
  if (passwordChecks) {
    const waiting: Gauge = new Gauge({
      name: 'registry_gateway_password_checks_waiting',
      help: 'bcrypt password checks waiting for a worker thread (the queue depth).',
      registers,
      collect: () => waiting.set(passwordChecks().waiting),
    });
    const running: Gauge = new Gauge({
      name: 'registry_gateway_password_checks_running',
      help: 'bcrypt password checks running on the worker threads.',
      registers,
      collect: () => running.set(passwordChecks().running),
    });
  }
  if (upstreams) {
    const up: Gauge<'upstream'> = new Gauge({
      name: 'registry_gateway_upstream_up',
      help: 'Whether the gateway believes a backend registry is up (health checks and failures seen): 1 or 0.',
      labelNames: ['upstream'] as const,
      registers,
      // Across cluster workers: the worst any of them sees.
      aggregator: 'min',
      collect: () => {
        for (const upstream of upstreams()) up.set({ upstream: upstream.url.origin }, upstream.healthy ? 1 : 0);
      },
    });
  }
  if (failovers) {
    const counter: Counter = new Counter({
      name: 'registry_gateway_upstream_failovers_total',
      help: 'Requests sent on to another backend registry after the one picked first failed.',
      registers,
      collect: () => {
        counter.reset();
        counter.inc(failovers());
      },
    });
  }
  if (certificateNotAfter) {
    const expiry: Gauge<'source'> = new Gauge({
      name: 'registry_gateway_certificate_expiry_timestamp_seconds',
      help: 'When the TLS certificate served now expires (notAfter), seconds since the epoch; source: "acme" or "tls_cert".',
      labelNames: ['source'] as const,
      registers,
      // Across cluster workers: the worst any of them sees.
      aggregator: 'min',
      collect: () => {
        const served = certificateNotAfter();
        expiry.reset();
        if (served !== undefined) expiry.set({ source: served.source }, Math.floor(served.notAfter / 1000));
      },
    });
  }
  if (auditFailures) {
    const counter: Counter = new Counter({
      name: 'registry_gateway_audit_write_failures_total',
      help: 'Audit lines that could not be written (the gateway served on and logged it).',
      registers,
      collect: () => {
        counter.reset();
        counter.inc(auditFailures());
      },
    });
  }
  if (webhooks) {
    const deliveries: Counter<'webhook' | 'result'> = new Counter({
      name: 'registry_gateway_webhook_deliveries_total',
      help: 'Webhook deliveries by receiver and result: delivered, retried (an attempt failed and was tried again), failed (given up after the last attempt), dropped (the queue was full).',
      labelNames: ['webhook', 'result'] as const,
      registers,
      collect: () => {
        deliveries.reset();
        for (const stats of webhooks()) for (const result of webhookResults) deliveries.inc({ webhook: stats.name, result }, stats[result]);
      },
    });
    const queue: Gauge<'webhook' | 'state'> = new Gauge({
      name: 'registry_gateway_webhook_queue',
      help: 'Webhook deliveries waiting (queued, also between attempts) and being sent (in_flight), by receiver.',
      labelNames: ['webhook', 'state'] as const,
      registers,
      collect: () => {
        queue.reset();
        for (const stats of webhooks()) {
          queue.set({ webhook: stats.name, state: 'queued' }, stats.queued);
          queue.set({ webhook: stats.name, state: 'in_flight' }, stats.inFlight);
        }
      },
    });
  }
  if (sharedState) {
    const up: Gauge<'backend'> = new Gauge({
      name: 'registry_gateway_shared_state_up',
      help: 'Whether the state shared with other gateways (backend "redis") answers: 1, or 0 while each gateway throttles logins on its own.',
      labelNames: ['backend'] as const,
      registers,
      // Across cluster workers: the worst any of them sees.
      aggregator: 'min',
      collect: () => {
        const shared = sharedState();
        up.reset();
        if (shared !== undefined) up.set({ backend: shared.backend }, shared.up ? 1 : 0);
      },
    });
  }
}

let processRegistry: Registry | undefined;

/** Node's and the process's own metrics (CPU, memory, event loop, GC, handles): one set per process, however many gateways it runs. */
export function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}
