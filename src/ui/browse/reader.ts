// The web UI's browse reader: the repository list, repository and image pages, and deletes, each decided by the API's own access rules.

import type { Logger } from 'pino';
import { LRUCache } from 'lru-cache';
import { mayDo, type Authorizer, type Identity } from '../../access/access.js';
import { isDigest, isRepositoryName, isTag } from '../../access/reference.js';
import { RegistryError } from '../../errors.js';
import type { EventBus } from '../../ops/events.js';
import { ReferrersStore } from '../../registry/referrers-store.js';
import { readAllTags } from '../../registry/tag-list.js';
import type { UpstreamPool } from '../../registry/upstreams.js';
import { CatalogIndex, searchNames } from './catalog-index.js';
import { createDeleter, type WriteGate } from './deletes.js';
import { readImage } from './image-view.js';
import { LastPush } from './last-push.js';
import { ManifestStore } from './manifests.js';
import { RegistryUnavailable, type BrowseReader, type RepositoryList, type RepositoryView, type Viewer } from './model.js';
import { sortTagsForDisplay } from './tag-sort.js';
import { tagRow } from './tag-rows.js';
import { mapLimit } from '../../map-limit.js';
import { limiter } from './upstream-reads.js';

export interface BrowseReaderDeps {
  /** The gateway's registry pool: every read and delete goes through it. */
  upstreams: UpstreamPool;
  /** The API's access rules (the current rules object, so reloads apply at once). */
  authorizer: Authorizer;
  logger: Logger;
  /** The gateway's event bus: pushes seen there give last-push times and show new repositories at once; UI deletes are told there. */
  events?: EventBus;
  /** Read-only maintenance (maintenanceGate(maintenanceMode) from deletes.ts): deletes are refused while it is on. */
  maintenance?: WriteGate;
  /** The embedded registry's filesystem storage root (config.dataDir + '/registry'), for last-push times; absent with an external registry. */
  storageRoot?: string;
  now?: () => number;
  /** Bounds (tests lower them): manifest and config bytes read at most, cache bytes, catalog snapshot ages. */
  limits?: { maxManifestBytes?: number; maxConfigBytes?: number; cacheBytes?: number; catalogFreshMs?: number; catalogStaleMs?: number };
}

/** Repositories or tags per page at most, whatever the caller asks. */
const maxPerPage = 100;
/** Registry reads in flight for one page view at most. */
const readsPerPage = 8;
/** How long a repository's tag count is reused (a push or delete through this gateway drops it at once). */
const tagCountMs = 5000;

/** The referrers API's fallback tags (sha256-<hex>): the gateway's own bookkeeping, shown as referrers, not as tags. */
const fallbackTagPattern = /^sha(256|512)-[a-f0-9]{64}$/;

function clampPage(page: { page: number; perPage: number }): { page: number; perPage: number } {
  const perPage = Number.isSafeInteger(page.perPage) ? Math.min(maxPerPage, Math.max(1, page.perPage)) : 50;
  return { page: Number.isSafeInteger(page.page) && page.page > 0 ? page.page : 1, perPage };
}

/** The tags people see: every tag but the referrers fallback tags, unsorted. */
const visibleTags = (tags: readonly string[]): string[] => tags.filter((tag) => !fallbackTagPattern.test(tag));

/** The tags people see, sorted for display. */
export function shownTags(tags: readonly string[]): string[] {
  return sortTagsForDisplay(visibleTags(tags));
}

/**
 * The BrowseReader over the registry pool. Visibility is grantFor(authorizer, identity, pull) (a CI
 * token's scope limit included), asked per repository on every call; hidden answers like missing.
 * The catalog is one snapshot shared by all viewers (read in pages of 1000 from the start, at most
 * one read at a time, fresh for 15 s and served while re-read in the background up to 10 min;
 * repositories pushed through this gateway join it at once), filtered per viewer; tag counts (kept
 * 5 s), last pushes and manifests are read for the shown page only, a few at a time. Manifests and
 * configs are read by digest within byte bounds and kept in a small LRU; what a tag names is asked
 * every time. Refusals and failures: see model.ts. close() stops listening to events.
 */
export function createBrowseReader(deps: BrowseReaderDeps): BrowseReader & { close(): void } {
  const { upstreams, authorizer, logger } = deps;
  const now = deps.now ?? Date.now;
  const limits = deps.limits ?? {};
  const catalog = new CatalogIndex({ upstreams, logger, now, freshMs: limits.catalogFreshMs, staleMs: limits.catalogStaleMs });
  const store = new ManifestStore({ upstreams, maxManifestBytes: limits.maxManifestBytes, maxConfigBytes: limits.maxConfigBytes, cacheBytes: limits.cacheBytes });
  const referrers = new ReferrersStore({ upstreams, authorizer, logger });
  const lastPush = new LastPush({ events: deps.events, storageRoot: deps.storageRoot, now });
  const tagCounts = new LRUCache<string, { count: number; at: number }>({ max: 10_000 });
  const stopListening = deps.events?.on((event) => {
    if (event.type === 'manifest.pushed' || event.type === 'manifest.deleted') tagCounts.delete(event.repository);
    if (event.type === 'manifest.pushed') catalog.noteRepository(event.repository);
  });
  // Registry 2.8 takes seconds to list 10,000 repositories: read them now, not on the first view.
  catalog.prefetch();
  const deleter = createDeleter({ upstreams, authorizer, logger, store, events: deps.events, maintenance: deps.maintenance, onDeleted: (name) => tagCounts.delete(name) });

  function mayPull(identity: Identity, name: string): boolean {
    if (identity.user === null && !authorizer.allowsAnonymous()) return false;
    return mayDo(authorizer, identity, name, 'pull');
  }

  const mayDelete = (identity: Identity, name: string): boolean => mayDo(authorizer, identity, name, 'delete');

  /** Every shown tag of a visible repository, unsorted (a count needs no order); undefined when the registry does not know it. */
  async function tagsOf(name: string): Promise<string[] | undefined> {
    let all;
    try {
      all = await readAllTags(upstreams, name);
    } catch (error) {
      if (error instanceof RegistryError && error.code === 'NAME_UNKNOWN') return undefined;
      throw new RegistryUnavailable('the registry did not list the tags');
    }
    if (!Array.isArray(all)) return undefined;
    const shown = visibleTags(all);
    tagCounts.set(name, { count: shown.length, at: now() });
    return shown;
  }

  async function tagCount(name: string): Promise<number | undefined> {
    const known = tagCounts.get(name);
    if (known !== undefined && now() - known.at < tagCountMs) return known.count;
    try {
      return (await tagsOf(name))?.length ?? 0;
    } catch {
      return undefined;
    }
  }

  async function listRepositories(viewer: Viewer, query: { search?: string; page: number; perPage: number }): Promise<RepositoryList> {
    const { page, perPage } = clampPage(query);
    const names = await catalog.names();
    const matching = searchNames(names, query.search ?? '', (name) => mayPull(viewer.identity, name));
    const shown = matching.slice((page - 1) * perPage, page * perPage);
    const [counts, pushes] = await Promise.all([mapLimit(shown, readsPerPage, tagCount), lastPush.of(shown)]);
    const repositories = shown.map((name, i) => ({
      name,
      ...(counts[i] !== undefined ? { tagCount: counts[i] } : {}),
      ...(pushes[i] !== undefined ? { lastPush: pushes[i] } : {}),
    }));
    return { repositories, page, perPage, total: matching.length };
  }

  async function repository(viewer: Viewer, name: string, paging: { page: number; perPage: number }): Promise<RepositoryView | undefined> {
    if (!isRepositoryName(name) || !mayPull(viewer.identity, name)) return undefined;
    const { page, perPage } = clampPage(paging);
    const found = await tagsOf(name);
    if (found === undefined) return undefined;
    const tags = sortTagsForDisplay(found);
    const limit = limiter(readsPerPage);
    const shown = tags.slice((page - 1) * perPage, page * perPage);
    const rows = await Promise.all(shown.map((tag) => tagRow(store, authorizer, limit, name, tag)));
    return { name, tags: rows, totalTags: tags.length, page, perPage, mayDelete: mayDelete(viewer.identity, name) };
  }

  async function image(viewer: Viewer, name: string, reference: string) {
    if (!isRepositoryName(name) || !(isTag(reference) || isDigest(reference)) || !mayPull(viewer.identity, name)) return undefined;
    const view = await readImage({ store, referrers, authorizer, limit: limiter(readsPerPage) }, name, reference);
    if (view === undefined) return undefined;
    return { ...view, mayDelete: mayDelete(viewer.identity, name) };
  }

  return {
    listRepositories,
    repository,
    image,
    deleteTag: (viewer, name, tag) => deleter.deleteTag(viewer, name, tag),
    deleteManifest: (viewer, name, digest) => deleter.deleteManifest(viewer, name, digest),
    close() {
      stopListening?.();
      lastPush.close();
    },
  };
}
