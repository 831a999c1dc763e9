// A scriptable stand-in registry on loopback that records requests, for failures the real registry will not produce on demand.

import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TagListPage {
  tags: string[];
  /** Sent as a Link header when set, as a paginating registry does. */
  next?: string;
}

export class FakeRegistry {
  readonly server: http.Server;
  /** Every request seen, as "METHOD /path?query" (health checks of /v2/ left out). */
  readonly seen: string[] = [];
  /** tag -> digest, per repository: what HEAD answers and PUT changes. */
  readonly tags = new Map<string, string>();
  /** Answer for tag lists: a status to fail with, or pages by `last` ('' for the first). */
  tagList: number | Map<string, TagListPage> | undefined;
  /** Status for every manifest HEAD, overriding the tag map. */
  headStatus: number | undefined;
  /** Manifest PUTs of this tag are held unanswered until `releaseHeld` (only the first one). */
  holdPutOf: string | undefined;
  /** Manifest PUTs of this tag get their connection cut. */
  cutPutOf: string | undefined;
  #held: (() => void) | undefined;
  #waiters: { match: string; resolve: () => void }[] = [];

  private constructor(server: http.Server) {
    this.server = server;
  }

  static async start(): Promise<FakeRegistry> {
    const server = http.createServer();
    const fake = new FakeRegistry(server);
    server.on('request', (req, res) => void fake.#handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Resolves once a request line containing `match` has been seen. */
  waitFor(match: string): Promise<void> {
    if (this.seen.some((line) => line.includes(match))) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ match, resolve }));
  }

  count(match: string): number {
    return this.seen.filter((line) => line.includes(match)).length;
  }

  releaseHeld(): void {
    this.#held?.();
    this.#held = undefined;
  }

  close(): Promise<void> {
    this.releaseHeld();
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://fake');
    if (url.pathname === '/v2/') return void res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    const line = `${req.method} ${url.pathname}${url.search}`;
    this.seen.push(line);
    for (const waiter of this.#waiters.filter((w) => line.includes(w.match))) waiter.resolve();
    this.#waiters = this.#waiters.filter((w) => !line.includes(w.match));

    const tagsList = /^\/v2\/(.+)\/tags\/list$/.exec(url.pathname);
    if (tagsList && req.method === 'GET') {
      if (typeof this.tagList === 'number') return void res.writeHead(this.tagList).end('{"errors":[{"code":"UNKNOWN","message":"boom"}]}');
      const page = this.tagList?.get(url.searchParams.get('last') ?? '') ?? { tags: [...this.tags.keys()] };
      const headers: Record<string, string> = { 'Content-Type': 'application/json' };
      if (page.next !== undefined) headers.Link = `</v2/${tagsList[1]}/tags/list?last=${page.next}&n=1000>; rel="next"`;
      return void res.writeHead(200, headers).end(JSON.stringify({ name: tagsList[1], tags: page.tags }));
    }
    const manifest = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
    if (!manifest) return void res.writeHead(404).end();
    const reference = manifest[2]!;
    if (req.method === 'HEAD') {
      if (this.headStatus !== undefined) return void res.writeHead(this.headStatus).end();
      const digest = this.tags.get(reference);
      return void (digest ? res.writeHead(200, { 'Docker-Content-Digest': digest }) : res.writeHead(404)).end();
    }
    if (req.method === 'PUT') {
      if (reference === this.cutPutOf) return void res.socket?.destroy();
      if (reference === this.holdPutOf && this.#held === undefined) {
        this.holdPutOf = undefined;
        await new Promise<void>((resolve) => {
          this.#held = resolve;
        });
      }
      const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
      this.tags.set(reference, digest);
      return void res.writeHead(201, { 'Docker-Content-Digest': digest }).end();
    }
    if (req.method === 'DELETE') return void res.writeHead(202).end();
    res.writeHead(405).end();
  }
}
