// A subject's referrers as the registry keeps them, in its fallback tag: read, and changed without losing concurrent changes.

import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Authorizer } from '../access/access.js';
import { RegistryError } from '../errors.js';
import { keyedLock } from './tag-locks.js';
import type { UpstreamAnswer, UpstreamFetchOptions, UpstreamPool } from './upstreams.js';
import {
  applyChange,
  emptyIndex,
  fallbackTag,
  isReflected,
  isSubjectDigest,
  maxIndexBytes,
  ociIndexMediaType,
  parseIndex,
  serializeIndex,
  withoutDigests,
  type IndexChange,
  type ReferrersIndex,
} from './referrers-index.js';

/** Every manifest type, so a tag naming something other than an index is seen as such (2.8 answers 404 for a type not accepted). */
const anyManifest = [
  'application/vnd.oci.image.manifest.v1+json',
  ociIndexMediaType,
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

export type IndexRead = { state: 'absent' } | { state: 'index'; index: ReferrersIndex } | { state: 'foreign'; contentType: string };

/** Why a change was not made; the caller logs it (the push or delete itself stands). */
export class ReferrersUpdateError extends Error {
  override readonly name = 'ReferrersUpdateError';
}

export interface ReferrersStoreOptions {
  upstreams: UpstreamPool;
  authorizer: Authorizer;
  logger: Logger;
  /** The least time between writing the index and reading it back to check (default 250 ms). */
  minSettleMs?: number;
  /** Read-write-check rounds before giving up (default 6). */
  maxAttempts?: number;
}

/** The longest a check waits, however slow the registry was. */
const maxSettleMs = 5_000;
const backoffBaseMs = 40;
/** How long one change waits for the change before it to the same index in this process. */
const lockWaitMs = 60_000;

async function ask(upstreams: UpstreamPool, what: string, path: string, options: UpstreamFetchOptions = {}): Promise<UpstreamAnswer> {
  try {
    return await upstreams.fetch(path, options);
  } catch (error) {
    throw new ReferrersUpdateError(`${what}: ${(error as Error).message}`);
  }
}

/** The fallback tag's content: absent, an index, or something else (left alone). */
export async function readIndex(upstreams: UpstreamPool, repository: string, tag: string): Promise<IndexRead> {
  const answer = await ask(upstreams, `reading ${tag}`, `/v2/${repository}/manifests/${tag}`, { headers: { accept: anyManifest }, maxBytes: maxIndexBytes });
  if (answer.status === 404) return { state: 'absent' };
  if (answer.status !== 200) throw new ReferrersUpdateError(`reading ${tag}: the registry answered ${answer.status}`);
  const contentType = String(answer.headers['content-type'] ?? '');
  const index = parseIndex(answer.body, contentType);
  return index ? { state: 'index', index } : { state: 'foreign', contentType };
}

/** Digests the registry's MANIFEST_BLOB_UNKNOWN errors name (2.8 puts each missing manifest's digest in `detail`). */
function unknownManifests(answer: UpstreamAnswer): string[] | undefined {
  try {
    const errors = (JSON.parse(answer.body.toString('utf8')) as { errors?: { code?: unknown; detail?: unknown }[] }).errors ?? [];
    const missing = errors.filter((error) => error.code === 'MANIFEST_BLOB_UNKNOWN');
    if (missing.length === 0) return undefined;
    return missing.map((error) => error.detail).filter((detail): detail is string => typeof detail === 'string' && isSubjectDigest(detail));
  } catch {
    return undefined;
  }
}

/**
 * The referrers of each subject live in the registry, in the subject's fallback tag (`sha256-<hex>`,
 * the spec's referrers tag schema), which older clients read too; the gateway keeps nothing.
 *
 * Registry 2.8 has no conditional write, so a change is a read-modify-write checked afterwards:
 *   1. read the index (absent: empty); if it already says what the change says, done;
 *   2. write the changed index;
 *   3. wait a settle time S, read the index again: if the change is there, done; else back off and
 *      start again (another writer overwrote it), up to a few rounds.
 * Within one gateway, changes to one index take turns (a lock per repository and tag), so they
 * never race each other. Across gateways sharing a registry, a change C can be lost only when
 * another writer read the index before C was written and wrote after C's check: its own
 * read-to-write time (its "window") was longer than C's settle time. S is at least 250 ms and twice
 * the writer's own window (a slow registry makes everyone wait longer), so a loss needs a registry
 * stall of that length inside one write; and every writer whose window exceeds the least settle
 * time logs a warning, so no change is lost without a warning naming the subject. The referrer
 * itself is never lost: pushing it again through the gateway lists it again.
 * This holds as long as the storage reads back its own writes (the filesystem does; Swift does for
 * a cluster answering from one region). A client writing the fallback tag itself (spec fallback
 * mode) is a writer outside this scheme: its overwrite is caught by the check only within S.
 */
export class ReferrersStore {
  readonly #locks = keyedLock('referrers');
  readonly #upstreams: UpstreamPool;
  readonly #authorizer: Authorizer;
  readonly #logger: Logger;
  readonly #minSettleMs: number;
  readonly #maxAttempts: number;

  constructor(options: ReferrersStoreOptions) {
    this.#upstreams = options.upstreams;
    this.#authorizer = options.authorizer;
    this.#logger = options.logger;
    this.#minSettleMs = options.minSettleMs ?? 250;
    this.#maxAttempts = options.maxAttempts ?? 6;
  }

  /** The referrers index of `subject` for the API: empty when there is none, or the tag holds no index. */
  async list(repository: string, subject: string): Promise<ReferrersIndex> {
    let read: IndexRead;
    try {
      read = await readIndex(this.#upstreams, repository, fallbackTag(subject));
    } catch (error) {
      this.#logger.warn({ repository, subject, err: (error as Error).message }, 'could not read a referrers index');
      throw new RegistryError('UNAVAILABLE', 'could not read the referrers from the backend registry; try again').withHeader('Retry-After', '5');
    }
    return read.state === 'index' ? read.index : emptyIndex();
  }

  /** Makes `change` to the index of `subject`; throws ReferrersUpdateError when it could not be made (nothing is left half-done). */
  async change(repository: string, subject: string, change: IndexChange): Promise<void> {
    const tag = fallbackTag(subject);
    let release: () => void;
    try {
      release = await this.#locks.acquire(`${repository}:${tag}`, lockWaitMs);
    } catch {
      throw new ReferrersUpdateError(`another change of ${tag} in this gateway took longer than ${lockWaitMs / 1000} s`);
    }
    try {
      await this.#changeHolding(repository, tag, change);
    } finally {
      release();
    }
  }

  async #changeHolding(repository: string, tag: string, change: IndexChange): Promise<void> {
    const log = { repository, tag, change: change.kind, digest: change.kind === 'add' ? change.descriptor.digest : change.digest };
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      const started = performance.now();
      const read = await readIndex(this.#upstreams, repository, tag);
      if (read.state === 'foreign') throw new ReferrersUpdateError(`${tag} names a ${read.contentType || 'manifest'}, not an image index; it is left as it is`);
      const current = read.state === 'index' ? read.index : emptyIndex();
      if (isReflected(current, change)) return;
      if (read.state === 'index' && this.#authorizer.isImmutableTag(repository, tag)) {
        throw new ReferrersUpdateError(`${tag} is an immutable tag (an immutable_tags rule names it) and already exists`);
      }
      const written = await this.#write(repository, tag, applyChange(current, change), change);
      // Measured for every write that may have landed, a refused one (500) included.
      const window = performance.now() - started;
      if (window > this.#minSettleMs) {
        this.#logger.warn({ ...log, window_ms: Math.round(window) }, 'slow referrers index write: a referrer recorded through another gateway at this moment may have been dropped from this index; pushing it again lists it again');
      }
      if (written === 'moot') return;
      if (written === 'retry') {
        await this.#backoff(attempt);
        continue;
      }
      await delay(Math.min(maxSettleMs, Math.max(this.#minSettleMs, 2 * window)));
      const check = await readIndex(this.#upstreams, repository, tag);
      if (check.state === 'index' && isReflected(check.index, change)) return;
      this.#logger.debug({ ...log, attempt }, 'referrers index changed meanwhile; trying again');
      await this.#backoff(attempt);
    }
    throw new ReferrersUpdateError(`${tag} kept changing; gave up after ${this.#maxAttempts} attempts`);
  }

  /**
   * Writes the index: 'done', 'retry' (the registry's storage raced another write: 500), or 'moot'
   * (the referrer being added is itself gone). Entries naming manifests the registry no longer has
   * (deleted around the gateway) are dropped: 2.8 refuses an index that names a missing manifest.
   */
  async #write(repository: string, tag: string, index: ReferrersIndex, change: IndexChange): Promise<'done' | 'retry' | 'moot'> {
    for (let pruned = false; ; pruned = true) {
      const body = serializeIndex(index);
      if (body.length > maxIndexBytes) throw new ReferrersUpdateError(`${tag} would be larger than the registry's ${maxIndexBytes}-byte manifest limit`);
      const answer = await ask(this.#upstreams, `writing ${tag}`, `/v2/${repository}/manifests/${tag}`, { method: 'PUT', headers: { 'content-type': ociIndexMediaType }, body });
      if (answer.status === 201) return 'done';
      if (answer.status >= 500) return 'retry';
      const named = unknownManifests(answer);
      if (named === undefined || pruned) throw new ReferrersUpdateError(`writing ${tag}: the registry answered ${answer.status} ${answer.body.toString('utf8').slice(0, 200)}`);
      const missing = new Set(named.length > 0 ? named : await this.#missingEntries(repository, index));
      if (change.kind === 'add' && missing.has(change.descriptor.digest)) return 'moot';
      this.#logger.info({ repository, tag, dropped: [...missing] }, 'referrers index named manifests the registry no longer has; dropped them');
      index = withoutDigests(index, missing);
    }
  }

  async #missingEntries(repository: string, index: ReferrersIndex): Promise<string[]> {
    const missing: string[] = [];
    for (const entry of index.entries) {
      if (typeof entry.digest !== 'string' || !isSubjectDigest(entry.digest)) continue;
      const head = await ask(this.#upstreams, 'checking a listed referrer', `/v2/${repository}/manifests/${entry.digest}`, { method: 'HEAD', headers: { accept: anyManifest } });
      if (head.status === 404) missing.push(entry.digest);
    }
    return missing;
  }

  /** Exponential, with jitter so two gateways that collided once do not collide again in step. */
  #backoff(attempt: number): Promise<void> {
    return delay(backoffBaseMs * 2 ** attempt * (0.5 + Math.random()));
  }
}
