// The rows of a repository page: per tag its digest, type, size, created time and platforms, each read within bounds, a failed part said on its row.

import type { Authorizer } from '../../access/access.js';
import type { ManifestStore } from './manifests.js';
import { configView, hasImageConfig, isoTime, isPlatformEntry, layersSize, platformText, type ParsedManifest } from './manifest-parts.js';
import type { ImageConfigView, PlatformRow, TagRow } from './model.js';
import { mapLimit } from '../../map-limit.js';
import { problemText } from './upstream-reads.js';

/** Runs one registry read under the page's concurrency limit. */
export type Limit = <T>(read: () => Promise<T>) => Promise<T>;

/** Platforms of one index read at most; the rest are listed without size and created time. */
const maxPlatformsRead = 32;

export interface ImageFacts {
  size?: number;
  created?: string;
  platform?: string;
  config?: ImageConfigView;
}

/** Size, created time and platform of a single image, its config read when it is an image config. */
export async function imageFacts(store: ManifestStore, limit: Limit, repository: string, manifest: ParsedManifest): Promise<ImageFacts> {
  const facts: ImageFacts = {};
  const size = layersSize(manifest);
  if (size !== undefined) facts.size = size;
  if (!hasImageConfig(manifest)) return facts;
  const json = await limit(() => store.config(repository, manifest.config!));
  if (json === undefined) return facts;
  const config = configView(json);
  facts.config = config;
  const created = isoTime(config.created);
  if (created !== undefined) facts.created = created;
  if (config.os !== undefined || config.architecture !== undefined) facts.platform = platformText(config);
  return facts;
}

/**
 * One row per platform of an index (attestations and unknown/unknown left out), each with the
 * size and created time of its image; a platform that cannot be read adds a problem and keeps its row.
 */
export async function platformRows(store: ManifestStore, limit: Limit, repository: string, index: ParsedManifest, problems: string[]): Promise<PlatformRow[]> {
  const entries = index.manifests.filter(isPlatformEntry);
  return mapLimit(entries, 4, async (entry, position) => {
    const row: PlatformRow = { platform: platformText(entry.platform), digest: entry.digest };
    if (position >= maxPlatformsRead) return row;
    try {
      const child = await limit(() => store.manifest(repository, entry.digest, entry.size));
      if (child === undefined) {
        problems.push(`The manifest of platform ${row.platform} is missing from the registry.`);
        return row;
      }
      const facts = await imageFacts(store, limit, repository, child);
      if (facts.size !== undefined) row.size = facts.size;
      if (facts.created !== undefined) row.created = facts.created;
      if (row.platform === 'unknown' && facts.platform !== undefined) row.platform = facts.platform;
    } catch (error) {
      problems.push(`Platform ${row.platform}: ${problemText(error)}`);
    }
    return row;
  });
}

/** The newest created time of the rows, for an index's own row. */
export function newest(rows: readonly PlatformRow[]): string | undefined {
  let latest: string | undefined;
  for (const row of rows) if (row.created !== undefined && (latest === undefined || row.created > latest)) latest = row.created;
  return latest;
}

/** The row of one tag; what could not be read is said in `problem`, never thrown (RegistryUnavailable included). */
export async function tagRow(store: ManifestStore, authorizer: Authorizer, limit: Limit, repository: string, tag: string): Promise<TagRow> {
  const row: TagRow = { tag, platforms: [], immutable: authorizer.isImmutableTag(repository, tag) };
  const problems: string[] = [];
  try {
    const resolved = await limit(() => store.resolve(repository, tag));
    if (resolved === undefined) {
      row.problem = 'The tag was deleted meanwhile.';
      return row;
    }
    row.digest = resolved.digest;
    if (resolved.mediaType !== '') row.mediaType = resolved.mediaType;
    const manifest = await limit(() => store.manifest(repository, resolved.digest, resolved.size));
    if (manifest === undefined) {
      row.problem = 'The tag names a manifest the registry no longer has.';
      return row;
    }
    row.mediaType = manifest.mediaType;
    if (manifest.kind === 'index') {
      row.platforms = await platformRows(store, limit, repository, manifest, problems);
      const created = newest(row.platforms);
      if (created !== undefined) row.created = created;
    } else if (manifest.kind === 'image') {
      const facts = await imageFacts(store, limit, repository, manifest).catch((error: unknown) => {
        problems.push(problemText(error));
        return { size: layersSize(manifest) } as ImageFacts;
      });
      if (facts.size !== undefined) row.size = facts.size;
      if (facts.created !== undefined) row.created = facts.created;
      row.platforms = [{ platform: facts.platform ?? 'unknown', digest: resolved.digest, ...(facts.size !== undefined ? { size: facts.size } : {}), ...(facts.created !== undefined ? { created: facts.created } : {}) }];
    }
  } catch (error) {
    problems.push(problemText(error));
  }
  if (problems.length > 0) row.problem = problems.join(' ');
  return row;
}
