// What the web UI shows of the registry, as the browse reader returns it: only what the viewer may see.

import type { Identity } from '../../access/access.js';

/** Who looks: a signed-in identity, or anonymous ({ user: null }). */
export interface Viewer {
  identity: Identity;
  /** The address group the request came from (for logs and events). */
  address?: string;
}

export interface RepositoryListQuery {
  /** Filter: repositories whose name contains it (prefix matches listed first); empty or undefined: all. */
  search?: string;
  /** 1-based page number. */
  page: number;
  /** Repositories per page (the reader caps it, e.g. at 100). */
  perPage: number;
}

export interface RepositorySummary {
  name: string;
  /** Number of tags, when it could be read for this page. */
  tagCount?: number;
  /** ISO time of the last push, where known (undefined otherwise). */
  lastPush?: string;
}

export interface RepositoryList {
  repositories: RepositorySummary[];
  page: number;
  perPage: number;
  /** Visible repositories matching the search, over all pages. */
  total: number;
}

/** One platform of an image: the image itself for a single-platform manifest, or one entry of an index. */
export interface PlatformRow {
  /** e.g. linux/amd64, linux/arm64/v8; "unknown" when the manifest does not say. */
  platform: string;
  digest: string;
  /** Sum of the layers' sizes (compressed), in bytes, when known. */
  size?: number;
  /** ISO creation time from the image config, when it has one. */
  created?: string;
}

export interface TagRow {
  tag: string;
  /** The tag's manifest digest (sha256:...); undefined when the manifest could not be read. */
  digest?: string;
  mediaType?: string;
  /** For a single image: its layers' total size; for an index: undefined (see platforms). */
  size?: number;
  created?: string;
  /** One row per platform (one for a single image). */
  platforms: PlatformRow[];
  /** An immutable-tag rule covers it: it cannot be deleted or moved. */
  immutable: boolean;
  /** Why the row is incomplete, when reading its manifest failed or was too large. */
  problem?: string;
}

export interface RepositoryView {
  name: string;
  /** Sorted: version-like tags by semantic version, newest first, then the others by name. */
  tags: TagRow[];
  /** All tags (before paging). */
  totalTags: number;
  page: number;
  perPage: number;
  /** The viewer may delete in this repository (the access rules grant `delete`). */
  mayDelete: boolean;
}

export interface LayerRow {
  digest: string;
  mediaType: string;
  size: number;
}

export interface ImageConfigView {
  os?: string;
  architecture?: string;
  variant?: string;
  created?: string;
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
  labels?: Record<string, string>;
  history?: { created?: string; createdBy?: string; comment?: string; emptyLayer?: boolean }[];
}

export interface ReferrerRow {
  digest: string;
  mediaType: string;
  artifactType?: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface ImageView {
  repository: string;
  /** As asked: a tag or a digest. */
  reference: string;
  /** The tag, when the reference is one. */
  tag?: string;
  digest: string;
  mediaType: string;
  /** The manifest, pretty-printed JSON (bounded: a huge manifest is refused before this). */
  manifestJson: string;
  /** Single image: its config and layers. */
  config?: ImageConfigView;
  layers: LayerRow[];
  /** Sum of layer sizes, for a single image. */
  size?: number;
  /** Index: one row per platform, each linking to its manifest by digest. */
  platforms: PlatformRow[];
  /** Signatures, SBOMs, attestations that refer to this digest (empty when none or unsupported). */
  referrers: ReferrerRow[];
  /** The tag is immutable (cannot be deleted or moved). */
  immutable: boolean;
  mayDelete: boolean;
  /** Parts that could not be read (config too large, referrers unavailable...), said on the page. */
  problems: string[];
}

export type DeleteOutcome =
  | { ok: true }
  /** status: 403 not allowed / immutable, 404 gone or hidden, 409 tagged manifest etc., 503 registry down or read-only maintenance. */
  | { ok: false; status: number; reason: string };

/** The registry is down or answered nonsense: pages say so (503), never a stack trace. */
export class RegistryUnavailable extends Error {}

/**
 * The UI's only way to the registry. Every method decides visibility with the same Authorizer as the API
 * (pull for reading, delete for deleting, a CI token's scope limit included); a repository or image the viewer
 * may not see is answered exactly like one that does not exist (undefined / 404).
 */
export interface BrowseReader {
  listRepositories(viewer: Viewer, query: RepositoryListQuery): Promise<RepositoryList>;
  repository(viewer: Viewer, name: string, page: { page: number; perPage: number }): Promise<RepositoryView | undefined>;
  image(viewer: Viewer, name: string, reference: string): Promise<ImageView | undefined>;
  deleteTag(viewer: Viewer, name: string, tag: string): Promise<DeleteOutcome>;
  deleteManifest(viewer: Viewer, name: string, digest: string): Promise<DeleteOutcome>;
}
