// The registry's repository list as one shared snapshot: read in pages of 1000, refreshed one read at a time, searched and paged per viewer.

import type { Logger } from 'pino';
import { isRepositoryName } from '../../access/reference.js';
import type { UpstreamPool } from '../../registry/upstreams.js';
import { RegistryUnavailable } from './model.js';
import { fetchBounded, ReadProblem, unexpected } from './upstream-reads.js';

/** The registry's largest catalog page (its catalog.maxentries; 2.8 refuses a larger n). */
const catalogPageSize = 1000;
/** One page of 1000 names of at most 255 bytes, with JSON around them. */
const maxPageBytes = 1024 * 1024;

export interface CatalogIndexOptions {
  upstreams: UpstreamPool;
  logger: Logger;
  now: () => number;
  /** A snapshot younger than this is used as it is (default 15 s). */
  freshMs?: number;
  /** An older one, up to this age, is still used while a new one is read in the background (default 10 min). */
  staleMs?: number;
  /** Upstream pages read at most (default 100: 100,000 repositories); the rest is left out, with a warning. */
  maxPages?: number;
}

interface Snapshot {
  /** In the registry's catalog order (see before). */
  names: readonly string[];
  known: ReadonlySet<string>;
  readAt: number;
}

/** The registry's catalog order (distribution's lessPath): byte order with "/" before every other character. */
export function before(a: string, b: string): boolean {
  return a.replaceAll('/', '\0') < b.replaceAll('/', '\0');
}

/** A copy of sorted `names` with `name` in its place. */
function inserted(names: readonly string[], name: string): string[] {
  let low = 0;
  let high = names.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (before(names[middle]!, name)) low = middle + 1;
    else high = middle;
  }
  return [...names.slice(0, low), name, ...names.slice(low)];
}

/**
 * One snapshot of the catalog, shared by every viewer (visibility is decided afterwards, per
 * viewer). Registry 2.8 walks its storage from the start for every catalog page, so reading 10,000
 * repositories takes it seconds: concurrent views wait for one read, a snapshot past its fresh age
 * is still served while the next is read in the background, and a repository pushed through this
 * gateway (noteRepository) is added to the snapshot at once, and to any read already under way.
 */
export class CatalogIndex {
  readonly #options: Required<Omit<CatalogIndexOptions, 'upstreams' | 'logger' | 'now'>> & CatalogIndexOptions;
  #snapshot: Snapshot | undefined;
  #reading: Promise<Snapshot> | undefined;
  /** Repositories noted while a read was under way (it may have passed their place already), with when. */
  readonly #noted = new Map<string, number>();

  constructor(options: CatalogIndexOptions) {
    this.#options = { ...options, freshMs: options.freshMs ?? 15_000, staleMs: options.staleMs ?? 600_000, maxPages: options.maxPages ?? 100 };
  }

  /** Every repository of the registry, in the registry's order; throws RegistryUnavailable when it cannot be read. */
  async names(): Promise<readonly string[]> {
    const snapshot = this.#snapshot;
    if (snapshot !== undefined) {
      const age = this.#options.now() - snapshot.readAt;
      if (age < this.#options.freshMs) return snapshot.names;
      if (age < this.#options.staleMs) {
        this.#read().catch((error: unknown) => this.#options.logger.warn({ err: (error as Error).message }, 'could not refresh the repository list for the web UI'));
        return snapshot.names;
      }
    }
    return (await this.#read()).names;
  }

  /** Starts reading the catalog now (at start, so the first page view finds it read); failures are only logged. */
  prefetch(): void {
    this.#read().catch((error: unknown) => this.#options.logger.debug({ err: (error as Error).message }, 'could not read the repository list ahead of the first web UI view'));
  }

  /** A repository was pushed: it is in the list from now on. */
  noteRepository(name: string): void {
    if (!isRepositoryName(name)) return;
    if (this.#reading !== undefined) this.#noted.set(name, this.#options.now());
    const snapshot = this.#snapshot;
    if (snapshot === undefined || snapshot.known.has(name)) return;
    this.#snapshot = { ...snapshot, names: inserted(snapshot.names, name), known: new Set([...snapshot.known, name]) };
  }

  /** The read in progress, or a new one. */
  #read(): Promise<Snapshot> {
    if (this.#reading !== undefined) return this.#reading;
    const promise = this.#readAll()
      .then((read) => {
        let snapshot = read;
        for (const [name, at] of this.#noted) {
          if (at >= read.readAt && !snapshot.known.has(name)) snapshot = { ...snapshot, names: inserted(snapshot.names, name), known: new Set([...snapshot.known, name]) };
        }
        this.#snapshot = snapshot;
        return snapshot;
      })
      .finally(() => {
        this.#reading = undefined;
        this.#noted.clear();
      });
    this.#reading = promise;
    return promise;
  }

  async #readAll(): Promise<Snapshot> {
    const readAt = this.#options.now();
    const names: string[] = [];
    let last = '';
    for (let pages = 0; ; pages++) {
      if (pages === this.#options.maxPages) {
        this.#options.logger.warn({ repositories: names.length }, 'the registry lists more repositories than the web UI reads; the rest are not shown');
        break;
      }
      const params = new URLSearchParams({ n: String(catalogPageSize) });
      if (last !== '') params.set('last', last);
      let answer;
      try {
        answer = await fetchBounded(this.#options.upstreams, `/v2/_catalog?${params}`, 'catalog page', { maxBytes: maxPageBytes });
      } catch (error) {
        if (error instanceof ReadProblem) throw new RegistryUnavailable('the registry sent a catalog page too large to read');
        throw error;
      }
      if (answer.status !== 200) throw unexpected(answer, 'the catalog');
      const page = parsePage(answer.body);
      names.push(...page);
      const next = page[page.length - 1];
      // The registry lists only names after `last`: one that repeats itself is not followed in circles.
      if (answer.headers.link === undefined || next === undefined || (last !== '' && !before(last, next))) break;
      last = next;
    }
    return { names, known: new Set(names), readAt };
  }
}

/** The repository names of one catalog page; anything else than a list of names is the registry talking nonsense. */
function parsePage(body: Buffer): string[] {
  let repositories: unknown;
  try {
    repositories = (JSON.parse(body.toString('utf8')) as { repositories?: unknown }).repositories;
  } catch {
    throw new RegistryUnavailable('the registry sent a malformed catalog');
  }
  if (repositories === null || repositories === undefined) return [];
  if (!Array.isArray(repositories)) throw new RegistryUnavailable('the registry sent a malformed catalog');
  // A name the gateway could not route is never shown (nor could it be opened).
  return repositories.filter((name): name is string => typeof name === 'string' && isRepositoryName(name));
}

/**
 * The names matching `search` that `visible` allows, best first: names starting with it, then names
 * with a path component starting with it, then the other names containing it (each group in
 * catalog order). An empty search matches everything, in catalog order.
 */
export function searchNames(names: readonly string[], search: string, visible: (name: string) => boolean): string[] {
  const query = search.trim().toLowerCase();
  if (query === '') return names.filter(visible);
  const prefix: string[] = [];
  const component: string[] = [];
  const rest: string[] = [];
  for (const name of names) {
    const at = name.indexOf(query);
    if (at === -1 || !visible(name)) continue;
    if (at === 0) prefix.push(name);
    else if (name.includes(`/${query}`)) component.push(name);
    else rest.push(name);
  }
  return [...prefix, ...component, ...rest];
}
