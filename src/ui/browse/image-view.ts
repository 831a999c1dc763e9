// The image page's data: the manifest as pretty JSON, config, layers, platforms of an index, and referrers from the gateway's own referrers store.

import type { Authorizer } from '../../access/access.js';
import { isTag } from '../../access/reference.js';
import { descriptorOf } from '../../registry/referrers-index.js';
import type { ReferrersStore } from '../../registry/referrers-store.js';
import { layerRows, layersSize, prettyJson, type ParsedManifest } from './manifest-parts.js';
import type { ManifestStore, Resolved } from './manifests.js';
import { RegistryUnavailable, type ImageView, type ReferrerRow } from './model.js';
import { imageFacts, platformRows, type Limit } from './tag-rows.js';
import { problemText, ReadProblem } from './upstream-reads.js';

export interface ImageReadContext {
  store: ManifestStore;
  referrers: ReferrersStore;
  authorizer: Authorizer;
  limit: Limit;
}

/** The referrers of `digest` as the API's referrers answer lists them; a problem when they cannot be read. */
async function referrersOf(context: ImageReadContext, repository: string, digest: string, problems: string[]): Promise<ReferrerRow[]> {
  try {
    const index = await context.limit(() => context.referrers.list(repository, digest));
    return index.entries.map(descriptorOf).filter((row): row is ReferrerRow => row !== undefined);
  } catch {
    problems.push('The referrers (signatures, SBOMs, attestations) could not be read.');
    return [];
  }
}

/**
 * The image `reference` (a tag or a digest) of a repository the viewer may pull; undefined when the
 * registry has no such tag or manifest. The registry being down throws RegistryUnavailable; a part
 * that is too large or malformed is said in `problems` (a manifest that cannot be shown leaves
 * manifestJson empty). mayDelete is false here: the reader sets it from the viewer's grant.
 */
export async function readImage(context: ImageReadContext, repository: string, reference: string): Promise<ImageView | undefined> {
  const { store, limit } = context;
  const tag = isTag(reference) ? reference : undefined;
  let resolved: Resolved | undefined;
  try {
    resolved = await limit(() => store.resolve(repository, reference));
  } catch (error) {
    if (error instanceof ReadProblem) throw new RegistryUnavailable(error.message);
    throw error;
  }
  if (resolved === undefined) return undefined;
  const problems: string[] = [];
  const view: ImageView = {
    repository,
    reference,
    ...(tag !== undefined ? { tag } : {}),
    digest: resolved.digest,
    mediaType: resolved.mediaType,
    manifestJson: '',
    layers: [],
    platforms: [],
    referrers: [],
    immutable: tag !== undefined && context.authorizer.isImmutableTag(repository, tag),
    mayDelete: false,
    problems,
  };
  let manifest: ParsedManifest | undefined;
  try {
    manifest = await limit(() => store.manifest(repository, resolved.digest, resolved.size));
  } catch (error) {
    if (!(error instanceof ReadProblem)) throw error;
    problems.push(error.message);
  }
  if (manifest !== undefined) {
    view.mediaType = manifest.mediaType;
    view.manifestJson = prettyJson(manifest.body);
    if (manifest.kind === 'image') {
      view.layers = layerRows(manifest);
      const size = layersSize(manifest);
      if (size !== undefined) view.size = size;
      try {
        const facts = await imageFacts(store, limit, repository, manifest);
        if (facts.config !== undefined) view.config = facts.config;
      } catch (error) {
        problems.push(`Configuration: ${problemText(error)}`);
      }
    } else if (manifest.kind === 'index') {
      view.platforms = await platformRows(store, limit, repository, manifest, problems);
    }
  } else if (problems.length === 0) {
    // Deleted between the HEAD and the GET.
    return undefined;
  }
  view.referrers = await referrersOf(context, repository, resolved.digest, problems);
  return view;
}
