// GET /v2/_catalog for callers who may not list everything: only what they may pull, with honest pagination.

import type { Request, Response } from 'express';
import { RegistryError } from './errors.js';
import { isRepositoryName } from './reference.js';
import type { UpstreamPool } from './upstreams.js';

/** The registry's own default page size, and the most a caller may ask for. */
const defaultPageSize = 100;
const maxPageSize = 1000;
/** Upstream pages read for one answer at most, so a caller who may see little cannot make the gateway walk forever. */
const maxUpstreamPages = 200;

export interface CatalogPage {
  repositories: string[];
  /** The `last` of the next page, when more visible repositories exist. */
  next: string | undefined;
}

function pageSize(query: URLSearchParams): number {
  const raw = query.get('n');
  if (raw === null || raw === '') return defaultPageSize;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new RegistryError('PAGINATION_NUMBER_INVALID', 'invalid number of results requested', { n: raw.slice(0, 20) });
  return Math.min(n, maxPageSize);
}

/**
 * Reads upstream pages from `last` on, keeping what `visible` allows, until one more than a page
 * is found (so the caller learns truthfully whether another page exists) or the catalog ends.
 */
export async function filteredCatalogPage(upstreams: UpstreamPool, query: URLSearchParams, visible: (repository: string) => boolean): Promise<CatalogPage> {
  const n = pageSize(query);
  const last = query.get('last') ?? '';
  if (last !== '' && !isRepositoryName(last)) throw new RegistryError('NAME_INVALID', 'invalid repository name in last');
  const found: string[] = [];
  let cursor = last;
  const batch = Math.max(n + 1, defaultPageSize);
  for (let page = 0; page < maxUpstreamPages && found.length <= n; page++) {
    const params = new URLSearchParams({ n: String(batch) });
    if (cursor !== '') params.set('last', cursor);
    const answer = await upstreams.fetch(`/v2/_catalog?${params}`);
    if (answer.status !== 200) throw new RegistryError('UNAVAILABLE', 'the backend registry did not list its catalog');
    const names = (JSON.parse(answer.body.toString('utf8')) as { repositories?: unknown }).repositories;
    if (!Array.isArray(names)) throw new RegistryError('UNAVAILABLE', 'the backend registry sent a malformed catalog');
    for (const name of names) {
      if (typeof name === 'string' && visible(name)) found.push(name);
    }
    if (names.length === 0 || answer.headers.link === undefined) break;
    cursor = String(names[names.length - 1]);
  }
  if (n === 0) return { repositories: [], next: undefined };
  const repositories = found.slice(0, n);
  return { repositories, next: found.length > n ? repositories[repositories.length - 1] : undefined };
}

export async function sendFilteredCatalog(req: Request, res: Response, upstreams: UpstreamPool, visible: (repository: string) => boolean): Promise<void> {
  const at = req.url.indexOf('?');
  const query = new URLSearchParams(at === -1 ? '' : req.url.slice(at + 1));
  const page = await filteredCatalogPage(upstreams, query, visible);
  res.set('Docker-Distribution-Api-Version', 'registry/2.0');
  if (page.next !== undefined) {
    const n = pageSize(query);
    res.set('Link', `</v2/_catalog?last=${encodeURIComponent(page.next)}&n=${n}>; rel="next"`);
  }
  res.status(200).json({ repositories: page.repositories });
}
