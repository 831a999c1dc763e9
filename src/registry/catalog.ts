// GET /v2/_catalog for callers who may not list everything: only what they may pull, with honest pagination.

import type { Request, Response } from 'express';
import { RegistryError } from '../errors.js';
import { isRepositoryName } from '../access/reference.js';
import type { UpstreamPool } from './upstreams.js';
import { queryOf } from '../access/v2-route.js';

/** The registry's own default page size. */
const defaultPageSize = 100;
/** The most the registry returns in one page (its catalog.maxentries): it refuses a larger n with 400. */
const maxPageSize = 1000;
/** Upstream pages read for one answer at most, so a caller who may see little cannot make the gateway walk forever. */
const maxUpstreamPages = 200;

interface CatalogPage {
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
async function filteredCatalogPage(upstreams: UpstreamPool, query: URLSearchParams, visible: (repository: string) => boolean): Promise<CatalogPage> {
  const n = pageSize(query);
  const last = query.get('last') ?? '';
  if (last !== '' && !isRepositoryName(last)) throw new RegistryError('NAME_INVALID', 'invalid repository name in last');
  if (n === 0) return { repositories: [], next: undefined };
  const found: string[] = [];
  let cursor = last;
  // One more than a page when the registry allows it, so that one upstream page usually tells whether another exists.
  const batch = Math.min(Math.max(n + 1, defaultPageSize), maxPageSize);
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
  const repositories = found.slice(0, n);
  return { repositories, next: found.length > n ? repositories[repositories.length - 1] : undefined };
}

export async function sendFilteredCatalog(req: Request, res: Response, upstreams: UpstreamPool, visible: (repository: string) => boolean): Promise<void> {
  const query = queryOf(req.url);
  const page = await filteredCatalogPage(upstreams, query, visible);
  if (page.next !== undefined) {
    const n = pageSize(query);
    res.set('Link', `</v2/_catalog?last=${encodeURIComponent(page.next)}&n=${n}>; rel="next"`);
  }
  res.status(200).json({ repositories: page.repositories });
}
