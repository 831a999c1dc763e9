// The gateway's Prometheus metrics, counted off the event bus: requests, latency, bytes, pushes and pulls, logins, tokens, reloads, maintenance.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { GatewayEvent, RequestFinished } from './events.js';

/** The label of everything past a bounded label's limit; no repository or provider can be named so. */
export const otherLabel = '(other)';

/** Latency buckets, seconds: from a 1 ms HEAD answered from cache to a blob transfer of half an hour. */
export const durationBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

const knownMethods = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * A label whose values come from the traffic: the first `max` values seen keep their own label,
 * every later one is counted as `(other)`, so the number of series stays bounded whatever callers do.
 */
export class BoundedLabel {
  readonly #max: number;
  readonly #seen = new Set<string>();

  constructor(max: number) {
    this.#max = max;
  }

  of(value: string): string {
    if (this.#seen.has(value)) return value;
    if (this.#seen.size >= this.#max) return otherLabel;
    this.#seen.add(value);
    return value;
  }
}

export interface GatewayMetricsOptions {
  /** Repositories with their own label on pushes, pulls and deletes (GATEWAY_METRICS_REPOSITORIES). */
  maxRepositories: number;
  /** Authenticators with their own label; they are named in the config, so this only guards against surprises. */
  maxAuthenticators?: number;
}

type Child = { inc(value?: number): void };
type RequestChildren = { requests: Child; duration: { observe(value: number): void }; received: Child; sent: Child };

/**
 * Holds one gateway's metrics in its own registry (several gateways may share a process, as tests
 * do). `observe` is an event listener: it only updates counters, a few µs per request.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #repositories: BoundedLabel;
  readonly #authenticators: BoundedLabel;
  /** The children per label combination, so the hot path skips prom-client's label hashing. */
  readonly #requestChildren = new Map<string, RequestChildren>();
  /** The authenticator of the last request that logged in, until its events show whether the login failed. */
  #pendingLogin: string | undefined;
  #settleQueued = false;

  readonly #requests = new Counter({ name: 'registry_gateway_requests_total', help: 'Requests answered, by method, route kind and status class.', labelNames: ['method', 'route', 'status_class'] as const, registers: [this.registry] });
  readonly #duration = new Histogram({
    name: 'registry_gateway_request_duration_seconds',
    help: 'Time from the request to the end of its answer (a transfer included), by method and route kind.',
    labelNames: ['method', 'route'] as const,
    buckets: durationBuckets,
    registers: [this.registry],
  });
  readonly #received = new Counter({ name: 'registry_gateway_received_bytes_total', help: 'Request body bytes received from clients, by route kind.', labelNames: ['route'] as const, registers: [this.registry] });
  readonly #sent = new Counter({ name: 'registry_gateway_sent_bytes_total', help: 'Response body bytes sent to clients, by route kind.', labelNames: ['route'] as const, registers: [this.registry] });
  readonly #cutOff = new Counter({ name: 'registry_gateway_requests_cut_off_total', help: 'Requests whose answer did not reach its end (client or registry went away), by route kind.', labelNames: ['route'] as const, registers: [this.registry] });
  readonly #pulls = new Counter({ name: 'registry_gateway_pulls_total', help: 'Manifest GETs answered 200, by repository (bounded; the rest are "(other)").', labelNames: ['repository'] as const, registers: [this.registry] });
  readonly #pushes = new Counter({ name: 'registry_gateway_pushes_total', help: 'Manifests pushed, by repository (bounded; the rest are "(other)").', labelNames: ['repository'] as const, registers: [this.registry] });
  readonly #deletes = new Counter({ name: 'registry_gateway_manifest_deletes_total', help: 'Manifests or tags deleted, by repository (bounded; the rest are "(other)").', labelNames: ['repository'] as const, registers: [this.registry] });
  readonly #logins = new Counter({ name: 'registry_gateway_logins_total', help: 'Credential checks (Basic auth, /token, sign-in), by outcome and the authenticator that answered ("none": nobody knew the user).', labelNames: ['outcome', 'authenticator'] as const, registers: [this.registry] });
  readonly #throttled = new Counter({ name: 'registry_gateway_throttled_requests_total', help: 'Requests held back: "delayed" (a login guess waited its turn) or "refused" (429).', labelNames: ['outcome'] as const, registers: [this.registry] });
  readonly #tokens = new Counter({ name: 'registry_gateway_tokens_issued_total', help: 'Access tokens issued by /token.', registers: [this.registry] });
  readonly #denied = new Counter({ name: 'registry_gateway_access_denied_total', help: 'Requests or token scopes refused by the access rules, by route kind.', labelNames: ['route'] as const, registers: [this.registry] });
  readonly #tagMoves = new Counter({ name: 'registry_gateway_tag_moves_refused_total', help: 'Pushes refused because they would move an immutable tag.', registers: [this.registry] });
  readonly #reloads = new Counter({ name: 'registry_gateway_config_reloads_total', help: 'Reloads of a watched file (htpasswd, access rules, CI tokens, TLS certificate), by file and result ("reloaded" or "rejected").', labelNames: ['file', 'result'] as const, registers: [this.registry] });
  readonly #maintenance = new Gauge({ name: 'registry_gateway_maintenance', help: 'Read-only maintenance: 1 while writes are refused, else 0.', registers: [this.registry], aggregator: 'max' });

  constructor(options: GatewayMetricsOptions) {
    this.#repositories = new BoundedLabel(options.maxRepositories);
    this.#authenticators = new BoundedLabel(options.maxAuthenticators ?? 32);
    this.#tokens.inc(0);
    this.#tagMoves.inc(0);
    this.#maintenance.set(0);
  }

  /** The event listener (bound, for EventBus.on). */
  readonly observe = (event: GatewayEvent): void => {
    switch (event.type) {
      case 'request':
        this.#settleLogin();
        this.#request(event);
        break;
      case 'login.failed':
        // Told right after its request: that request's login failed, it did not succeed.
        this.#pendingLogin = undefined;
        this.#logins.inc({ outcome: 'failure', authenticator: this.#authenticators.of(event.authenticator ?? 'none') });
        break;
      case 'manifest.pushed':
        this.#pushes.inc({ repository: this.#repositories.of(event.repository) });
        break;
      case 'manifest.deleted':
        this.#deletes.inc({ repository: this.#repositories.of(event.repository) });
        break;
      case 'token.issued':
        this.#tokens.inc();
        break;
      case 'access.denied':
        this.#denied.inc({ route: event.route });
        break;
      case 'tag.move-refused':
        this.#tagMoves.inc();
        break;
      case 'config.reloaded':
      case 'config.rejected':
        this.#reloads.inc({ file: event.file, result: event.type === 'config.reloaded' ? 'reloaded' : 'rejected' });
        break;
      case 'maintenance':
        this.#maintenance.set(event.on ? 1 : 0);
        break;
      default:
        break;
    }
  };

  /** The text Prometheus scrapes. */
  async render(): Promise<string> {
    this.#settleLogin();
    return this.registry.metrics();
  }

  #request(event: RequestFinished): void {
    const method = knownMethods.has(event.method) ? event.method : 'other';
    const statusClass = event.status >= 100 && event.status < 600 ? `${Math.floor(event.status / 100)}xx` : 'other';
    const key = `${method} ${event.route} ${statusClass}`;
    let children = this.#requestChildren.get(key);
    if (children === undefined) {
      children = {
        requests: this.#requests.labels(method, event.route, statusClass),
        duration: this.#duration.labels(method, event.route),
        received: this.#received.labels(event.route),
        sent: this.#sent.labels(event.route),
      };
      this.#requestChildren.set(key, children);
    }
    children.requests.inc();
    children.duration.observe(event.durationMs / 1000);
    if (event.bytesIn > 0) children.received.inc(event.bytesIn);
    if (event.bytesOut > 0) children.sent.inc(event.bytesOut);
    if (!event.completed) this.#cutOff.inc({ route: event.route });
    if (event.status === 429) this.#throttled.inc({ outcome: 'refused' });
    else if (event.throttled === true) this.#throttled.inc({ outcome: 'delayed' });
    if (event.route === 'manifest' && event.method === 'GET' && event.status === 200 && event.repository !== undefined) {
      this.#pulls.inc({ repository: this.#repositories.of(event.repository) });
    }
    if (event.authenticator !== undefined) {
      // A failed login is told by the login.failed event that follows this one; success is known once none came.
      this.#pendingLogin = event.authenticator;
      if (!this.#settleQueued) {
        this.#settleQueued = true;
        queueMicrotask(() => this.#settleLogin());
      }
    }
  }

  #settleLogin(): void {
    this.#settleQueued = false;
    if (this.#pendingLogin === undefined) return;
    this.#logins.inc({ outcome: 'success', authenticator: this.#authenticators.of(this.#pendingLogin) });
    this.#pendingLogin = undefined;
  }
}
