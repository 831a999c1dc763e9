// When a repository was last pushed, where known: pushes this gateway saw on its event bus, and the tag links of an embedded registry's filesystem storage.

import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import type { EventBus } from '../../ops/events.js';
import { mapLimit } from '../../map-limit.js';

/** Repositories remembered from events at most (the oldest pushes are forgotten first). */
const maxRemembered = 100_000;
/** Tag links looked at per repository at most; beyond that the storage says nothing about the repository. */
const maxTagsStatted = 500;
/** How long what the storage said of a repository is reused. */
const storageReuseMs = 5000;

export interface LastPushOptions {
  events?: EventBus;
  /** The registry's filesystem storage root (the embedded registry's DATA_DIR/registry); absent: events only. */
  storageRoot?: string;
  now: () => number;
}

/**
 * Last push times. Registry 2.8's filesystem driver rewrites a tag's `current/link` on every push of
 * that tag, so the newest link mtime of a repository is its last tag push (pushes by digest alone
 * leave no mark there). Events cover pushes through this gateway since it started.
 */
export class LastPush {
  readonly #seen = new Map<string, number>();
  readonly #stored = new LRUCache<string, { at: number; time: number | undefined }>({ max: 10_000 });
  readonly #options: LastPushOptions;
  readonly #stop: (() => void) | undefined;

  constructor(options: LastPushOptions) {
    this.#options = options;
    this.#stop = options.events?.on((event) => {
      if (event.type === 'manifest.pushed') this.note(event.repository);
    });
  }

  /** A push of `repository` just now. */
  note(repository: string): void {
    this.#stored.delete(repository);
    this.#seen.delete(repository);
    this.#seen.set(repository, this.#options.now());
    if (this.#seen.size > maxRemembered) this.#seen.delete(this.#seen.keys().next().value!);
  }

  /** ISO time of the last push of each repository, undefined where nothing is known. */
  async of(repositories: readonly string[]): Promise<(string | undefined)[]> {
    return mapLimit(repositories, 8, async (repository) => {
      const seen = this.#seen.get(repository);
      const stored = await this.#storageTime(repository);
      const latest = Math.max(seen ?? 0, stored ?? 0);
      return latest > 0 ? new Date(latest).toISOString() : undefined;
    });
  }

  close(): void {
    this.#stop?.();
  }

  async #storageTime(repository: string): Promise<number | undefined> {
    const known = this.#stored.get(repository);
    if (known !== undefined && this.#options.now() - known.at < storageReuseMs) return known.time;
    const time = await this.#fromStorage(repository);
    this.#stored.set(repository, { at: this.#options.now(), time });
    return time;
  }

  /** The newest tag link mtime in milliseconds; undefined without storage, tags, or when reading fails. */
  async #fromStorage(repository: string): Promise<number | undefined> {
    const root = this.#options.storageRoot;
    if (root === undefined) return undefined;
    // The name is checked (isRepositoryName) before it gets here: no component is `..` or empty.
    const tagsDir = path.join(root, 'docker', 'registry', 'v2', 'repositories', ...repository.split('/'), '_manifests', 'tags');
    let tags: string[];
    try {
      tags = await readdir(tagsDir);
    } catch {
      return undefined;
    }
    if (tags.length > maxTagsStatted) return undefined;
    const times = await mapLimit(tags, 16, async (tag) => {
      try {
        return (await stat(path.join(tagsDir, tag, 'current', 'link'))).mtimeMs;
      } catch {
        return 0;
      }
    });
    const latest = Math.max(0, ...times);
    return latest > 0 ? latest : undefined;
  }
}
