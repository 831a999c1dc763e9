// The backend registries: which are healthy (active checks plus failures seen), and which one gets the next request.

import http from 'node:http';
import https from 'node:https';
import type { Logger } from 'pino';

export interface Upstream {
  readonly url: URL;
  /** Keep-alive sockets to this registry: a pull is many small requests. */
  readonly agent: http.Agent;
  healthy: boolean;
}

export interface UpstreamAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** Every manifest type the registry stores, for Accept: it answers 404 for a manifest of a type not accepted. */
export const manifestAccept = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
].join(', ');

/** The error code of a fetch whose answer was larger than its maxBytes. */
export const answerTooLarge = 'EANSWERTOOLARGE';

export interface UpstreamFetchOptions {
  method?: string;
  headers?: Record<string, string>;
  /** A small body the gateway itself sends (a manifest, a tiny blob), with its Content-Length. */
  body?: Buffer;
  maxBytes?: number;
}

export interface UpstreamPoolOptions {
  logger: Logger;
  /** How often each registry's /v2/ is probed; 0 turns probing off. */
  checkIntervalMs?: number;
  checkTimeoutMs?: number;
}

export class UpstreamPool {
  readonly upstreams: readonly Upstream[];
  readonly #logger: Logger;
  readonly #checkTimeoutMs: number;
  #next = 0;
  #timer: NodeJS.Timeout | undefined;
  #failovers = 0;

  constructor(urls: readonly URL[], options: UpstreamPoolOptions) {
    if (urls.length === 0) throw new Error('an upstream pool needs at least one registry');
    this.#logger = options.logger;
    this.#checkTimeoutMs = options.checkTimeoutMs ?? 2000;
    this.upstreams = urls.map((url) => {
      const agentOptions = { keepAlive: true, keepAliveMsecs: 30_000, maxSockets: 512, maxFreeSockets: 64, scheduling: 'lifo' as const };
      return { url, agent: url.protocol === 'https:' ? new https.Agent(agentOptions) : new http.Agent(agentOptions), healthy: true };
    });
    const interval = options.checkIntervalMs ?? 2000;
    if (interval > 0) {
      this.#timer = setInterval(() => void this.checkAll(), interval);
      this.#timer.unref();
    }
  }

  /**
   * The next registry round-robin, skipping those already tried for this request. Healthy ones
   * first; when none is healthy, one believed down is still tried, so a lone registry that comes
   * back is used at once rather than after the next probe.
   */
  pick(tried: ReadonlySet<Upstream> = new Set()): Upstream | undefined {
    const count = this.upstreams.length;
    let fallback: Upstream | undefined;
    for (let i = 0; i < count; i++) {
      const candidate = this.upstreams[(this.#next + i) % count]!;
      if (tried.has(candidate)) continue;
      if (candidate.healthy) {
        this.#next = (this.#next + i + 1) % count;
        if (tried.size > 0) this.#failovers++;
        return candidate;
      }
      fallback ??= candidate;
    }
    if (fallback !== undefined && tried.size > 0) this.#failovers++;
    return fallback;
  }

  /** Requests sent on to another registry after the one picked before failed (for metrics). */
  get failovers(): number {
    return this.#failovers;
  }

  markDown(upstream: Upstream, reason: string): void {
    if (!upstream.healthy) return;
    upstream.healthy = false;
    this.#logger.warn({ upstream: upstream.url.origin, reason }, 'upstream registry down');
  }

  markUp(upstream: Upstream): void {
    if (upstream.healthy) return;
    upstream.healthy = true;
    this.#logger.info({ upstream: upstream.url.origin }, 'upstream registry back');
  }

  /** Probes every registry now; true when at least one answers. */
  async checkAll(): Promise<boolean> {
    const results = await Promise.all(
      this.upstreams.map(async (upstream) => {
        const answered = await this.#probe(upstream.url);
        if (answered) this.markUp(upstream);
        else this.markDown(upstream, 'health check failed');
        return answered;
      }),
    );
    return results.some(Boolean);
  }

  /**
   * A small request the gateway itself makes (a catalog page, a tag lookup), tried on each
   * registry in turn until one answers. The body is read whole, so only for small answers.
   */
  async fetch(path: string, options: UpstreamFetchOptions = {}): Promise<UpstreamAnswer> {
    const tried = new Set<Upstream>();
    let lastError: unknown;
    for (let upstream = this.pick(tried); upstream; upstream = this.pick(tried)) {
      tried.add(upstream);
      try {
        return await this.#fetchFrom(upstream, path, options);
      } catch (error) {
        // An answer larger than asked for is no sign the registry is down, nor that another would answer smaller.
        if ((error as NodeJS.ErrnoException).code === answerTooLarge) throw error;
        lastError = error;
        this.markDown(upstream, (error as NodeJS.ErrnoException).code ?? 'request failed');
      }
    }
    throw lastError ?? new Error('no upstream registry');
  }

  #fetchFrom(upstream: Upstream, path: string, options: UpstreamFetchOptions): Promise<UpstreamAnswer> {
    const client = upstream.url.protocol === 'https:' ? https : http;
    const maxBytes = options.maxBytes ?? 4 * 1024 * 1024;
    return new Promise((resolve, reject) => {
      const headers = options.body === undefined ? options.headers : { ...options.headers, 'content-length': String(options.body.length) };
      const request = client.request(new URL(path, upstream.url), { method: options.method ?? 'GET', headers, agent: upstream.agent, timeout: 30_000 }, (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            response.destroy(Object.assign(new Error(`upstream answer over ${maxBytes} bytes`), { code: answerTooLarge }));
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () => resolve({ status: response.statusCode ?? 502, headers: response.headers, body: Buffer.concat(chunks) }));
        response.on('error', reject);
      });
      request.on('timeout', () => request.destroy(Object.assign(new Error('upstream timed out'), { code: 'ETIMEDOUT' })));
      request.on('error', reject);
      request.end(options.body);
    });
  }

  close(): void {
    clearInterval(this.#timer);
    for (const upstream of this.upstreams) upstream.agent.destroy();
  }

  #probe(url: URL): Promise<boolean> {
    const client = url.protocol === 'https:' ? https : http;
    return new Promise((resolve) => {
      const request = client.get(new URL('/v2/', url), { timeout: this.#checkTimeoutMs, agent: false }, (response) => {
        response.resume();
        resolve((response.statusCode ?? 500) < 500);
      });
      request.on('timeout', () => request.destroy());
      request.on('error', () => resolve(false));
    });
  }
}
