// GET /v2/<name>/tags/list answered by the gateway: every tag in byte order, paged by `n` and `last` as the OCI distribution spec says.

import type { Response } from 'express';
import { RegistryError } from '../errors.js';
import { isTag } from '../access/reference.js';
import type { UpstreamAnswer, UpstreamPool } from './upstreams.js';

/** What a caller asked for: at most `limit` tags (every one when undefined), after `last` (from the start when undefined). */
export interface TagPageRequest {
  limit: number | undefined;
  last: string | undefined;
}

export interface TagPage {
  tags: string[];
  /** The `last` of the next page, when tags remain after this one. */
  next: string | undefined;
}

/** Pages of tags read from the registry at most (registry 2.8 sends every tag in one page; later ones may page). */
const maxUpstreamPages = 100;
/** One upstream page is at most this large: a million short tags, or 128,000 of the longest. */
const maxTagListBytes = 16 * 1024 * 1024;

/**
 * Reads `n` and `last` as the spec has them: `n` a non-negative integer (absent or empty: every tag),
 * `last` a tag (absent or empty: from the start). Anything else is refused with 400, as distribution 3
 * refuses an `n` it cannot read; an `n` beyond any list is simply every tag.
 */
export function parseTagPageRequest(n: string | undefined, last: string | undefined): TagPageRequest {
  let limit: number | undefined;
  if (n !== undefined && n !== '') {
    const value = Number(n);
    if (!/^[0-9]+$/.test(n) || !Number.isSafeInteger(value)) {
      throw new RegistryError('PAGINATION_NUMBER_INVALID', 'invalid number of results requested: n must be a non-negative integer', { n: n.slice(0, 40) });
    }
    limit = value;
  }
  if (last !== undefined && last !== '' && !isTag(last)) {
    throw new RegistryError('UNSUPPORTED', 'last must be a tag (the last tag of the previous page)', { last: last.slice(0, 140) }, 400);
  }
  return { limit, last: last === '' ? undefined : last };
}

/** Byte order: tags are ASCII, so comparing UTF-16 code units is comparing bytes. */
export function compareTags(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The tags sorted in byte order, each once. */
export function sortTags(tags: Iterable<string>): string[] {
  return [...new Set(tags)].sort(compareTags);
}

/** Index of the first tag after `last` in a sorted list (binary search; `last` need not be in the list). */
function firstAfter(sorted: readonly string[], last: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareTags(sorted[middle]!, last) <= 0) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** One page of a sorted tag list: `last` itself excluded, and `next` set only when tags remain (never for n=0). */
export function tagPage(sorted: readonly string[], request: TagPageRequest): TagPage {
  if (request.limit === 0) return { tags: [], next: undefined };
  const start = request.last === undefined ? 0 : firstAfter(sorted, request.last);
  const end = request.limit === undefined ? sorted.length : Math.min(sorted.length, start + request.limit);
  const tags = sorted.slice(start, end);
  return { tags, next: end < sorted.length && tags.length > 0 ? tags[tags.length - 1] : undefined };
}

/** The Link header of the next page (RFC 5988, rel="next"), relative to this origin. */
export function nextPageLink(repository: string, limit: number, next: string): string {
  return `</v2/${repository}/tags/list?n=${limit}&last=${encodeURIComponent(next)}>; rel="next"`;
}

const unavailable = (why: string) => new RegistryError('UNAVAILABLE', `the backend registry did not list the tags (${why})`).withHeader('Retry-After', '5');

/** The tags of one upstream page; null for the registry's `"tags": null` (a repository whose tags were all deleted). */
function tagsOfPage(answer: UpstreamAnswer): string[] {
  let names: unknown;
  try {
    names = (JSON.parse(answer.body.toString('utf8')) as { tags?: unknown }).tags;
  } catch {
    throw unavailable('malformed tag list');
  }
  if (names === null || names === undefined) return [];
  if (!Array.isArray(names) || !names.every((name): name is string => typeof name === 'string' && isTag(name))) throw unavailable('malformed tag list');
  return names;
}

/** The registry's own JSON error (a 404 NAME_UNKNOWN), passed on as it is; anything else is our own. */
function upstreamError(answer: UpstreamAnswer): RegistryError | { status: number; body: Buffer } {
  const type = String(answer.headers['content-type'] ?? '');
  if (answer.status === 404 && type.startsWith('application/json')) return { status: 404, body: answer.body };
  if (answer.status === 404) return new RegistryError('NAME_UNKNOWN', 'repository name not known to registry');
  return unavailable(`it answered ${answer.status}`);
}

/**
 * Every tag of `repository`, sorted: one request without `n` (registry 2.8 ignores paging and sends
 * all; distribution 3 sends all when no `n` is given), following `Link` pages from registries that page
 * anyway, each page rebuilt from its last tag rather than the registry's URL. Bounded by page count and size.
 */
export async function readAllTags(upstreams: UpstreamPool, repository: string): Promise<string[] | { status: number; body: Buffer }> {
  const found: string[] = [];
  let last: string | undefined;
  for (let page = 0; page < maxUpstreamPages; page++) {
    const query = last === undefined ? '' : `?last=${encodeURIComponent(last)}`;
    let answer: UpstreamAnswer;
    try {
      answer = await upstreams.fetch(`/v2/${repository}/tags/list${query}`, { maxBytes: maxTagListBytes });
    } catch {
      throw unavailable('no registry answered');
    }
    if (answer.status !== 200) {
      const error = upstreamError(answer);
      if (error instanceof RegistryError) throw error;
      return error;
    }
    const names = tagsOfPage(answer);
    found.push(...names);
    if (answer.headers.link === undefined || names.length === 0) return sortTags(found);
    const next = names[names.length - 1]!;
    // A registry that pages must move forward; one that repeats itself is not followed in circles.
    if (last !== undefined && compareTags(next, last) <= 0) return sortTags(found);
    last = next;
  }
  throw unavailable(`more than ${maxUpstreamPages} pages of tags`);
}

/** Answers GET /v2/<name>/tags/list from the registry's complete tag list. */
export async function sendTagList(res: Response, upstreams: UpstreamPool, route: { name: string; n?: string; last?: string }): Promise<void> {
  const request = parseTagPageRequest(route.n, route.last);
  const all = await readAllTags(upstreams, route.name);
  if (!Array.isArray(all)) {
    res.status(all.status).set('Content-Type', 'application/json; charset=utf-8').send(all.body);
    return;
  }
  const page = tagPage(all, request);
  if (page.next !== undefined && request.limit !== undefined) res.set('Link', nextPageLink(route.name, request.limit, page.next));
  res.status(200).json({ name: route.name, tags: page.tags });
}
