// Keeps immutable tags where they point: refuses moving them by a manifest PUT, deleting them, and deleting the manifest they name.

import { createHash } from 'node:crypto';
import type { Request, Response } from 'express';
import type { Authorizer } from '../access/access.js';
import { RegistryError } from '../errors.js';
import { isTag } from '../access/reference.js';
import { keyedLock, runHoldingUntilResponseEnds } from './tag-locks.js';
import { mapLimit } from '../map-limit.js';
import { manifestAccept, type UpstreamPool } from './upstreams.js';

/** The registry refuses manifests over 4 MiB itself; reading that much to compare digests is cheap. */
const maxManifestBytes = 4 * 1024 * 1024;


/** The registry's own answer to a manifest over its limit (MANIFEST_INVALID, 400); the rest of the body is never read, so the connection ends. */
const tooLarge = () => new RegistryError('MANIFEST_INVALID', `manifest too large (the limit is ${maxManifestBytes} bytes)`).withHeader('Connection', 'close');

/**
 * Reads a manifest body (small by the registry's own limit); anything larger is refused, never
 * buffered. A body that sends nothing for `idleMs` is cut off, as the proxy cuts off a stalled one.
 */
export async function readManifestBody(req: Request, idleMs?: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxManifestBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  const idle = idleMs === undefined ? undefined : setTimeout(() => req.destroy(), idleMs);
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      idle?.refresh();
      size += chunk.length;
      if (size > maxManifestBytes) throw tooLarge();
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof RegistryError) throw error;
    // The client left or stalled: its connection is gone, the answer is only for the log.
    throw new RegistryError('MANIFEST_INVALID', 'the manifest body ended early or stalled').withHeader('Connection', 'close');
  } finally {
    clearTimeout(idle);
  }
  return Buffer.concat(chunks);
}

/** Throws DENIED when `tag` already names a manifest other than `body` in `repository`. */
export async function refuseTagMove(upstreams: UpstreamPool, repository: string, tag: string, body: Buffer): Promise<void> {
  const unchecked = () => new RegistryError('UNAVAILABLE', 'could not check whether the tag exists').withHeader('Retry-After', '5');
  const answer = await upstreams.fetch(`/v2/${repository}/manifests/${tag}`, { method: 'HEAD', headers: { Accept: manifestAccept } }).catch(() => {
    throw unchecked();
  });
  if (answer.status === 404) return;
  if (answer.status !== 200) throw unchecked();
  const existing = answer.headers['docker-content-digest'];
  const pushed = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  if (existing === pushed) return;
  throw new RegistryError('DENIED', `tag ${tag} of ${repository} is immutable and already exists`, { repository, tag, existing });
}

/** Pages of the tag list read at most (the registry's own page limit is 1000 per page where it paginates). */
const maxTagPages = 100;
const tagPageSize = 1000;
/** A tag list page is at most this large: 2.8 sends every tag in one page, up to 128 bytes each. */
const maxTagListBytes = 16 * 1024 * 1024;
/** Immutable tags one delete may look up; beyond that the delete is refused rather than half-checked. */
const maxImmutableTagsChecked = 5000;
const tagLookupsInParallel = 16;
/** How long a push or delete waits for the one before it in the same repository. */
const lockWaitMs = 60_000;

const lookupFailed = (why: string) => new RegistryError('UNAVAILABLE', `could not check the repository's immutable tags (${why}); nothing was deleted`).withHeader('Retry-After', '5');

/** Every tag of `repository` (none when the registry does not know it), following pagination where the registry paginates. */
export async function listTags(upstreams: UpstreamPool, repository: string): Promise<string[]> {
  const tags: string[] = [];
  let last = '';
  for (let page = 0; page < maxTagPages; page++) {
    const params = new URLSearchParams({ n: String(tagPageSize) });
    if (last !== '') params.set('last', last);
    const answer = await upstreams.fetch(`/v2/${repository}/tags/list?${params}`, { maxBytes: maxTagListBytes });
    if (answer.status === 404) return tags;
    if (answer.status !== 200) throw lookupFailed(`tag list answered ${answer.status}`);
    let names: unknown;
    try {
      names = (JSON.parse(answer.body.toString('utf8')) as { tags?: unknown }).tags;
    } catch {
      throw lookupFailed('malformed tag list');
    }
    if (names === null || names === undefined) return tags;
    if (!Array.isArray(names) || !names.every((name): name is string => typeof name === 'string' && isTag(name))) throw lookupFailed('malformed tag list');
    tags.push(...names);
    if (answer.headers.link === undefined || names.length === 0) return tags;
    last = names[names.length - 1]!;
  }
  throw lookupFailed(`more than ${maxTagPages} pages of tags`);
}

/** The digest `tag` names now, or undefined when it names nothing. */
async function tagDigest(upstreams: UpstreamPool, repository: string, tag: string): Promise<string | undefined> {
  const answer = await upstreams.fetch(`/v2/${repository}/manifests/${tag}`, { method: 'HEAD', headers: { Accept: manifestAccept } });
  if (answer.status === 404) return undefined;
  const digest = answer.headers['docker-content-digest'];
  if (answer.status !== 200 || typeof digest !== 'string') throw lookupFailed(`tag ${tag} answered ${answer.status}`);
  return digest;
}

/**
 * Throws DENIED when an immutable tag of `repository` names `digest`: the registry deletes every
 * tag of a manifest deleted by digest, after which the tag could be pushed anew to anything.
 * Any doubt (registry error, too many tags to check) refuses the delete with UNAVAILABLE.
 */
export async function refuseDeleteOfTagged(upstreams: UpstreamPool, authorizer: Authorizer, repository: string, digest: string): Promise<void> {
  let immutable: string[];
  try {
    immutable = (await listTags(upstreams, repository)).filter((tag) => authorizer.isImmutableTag(repository, tag));
  } catch (error) {
    throw error instanceof RegistryError ? error : lookupFailed('registry unreachable');
  }
  if (immutable.length > maxImmutableTagsChecked) throw lookupFailed(`more than ${maxImmutableTagsChecked} immutable tags`);
  let digests: (string | undefined)[];
  try {
    digests = await mapLimit(immutable, tagLookupsInParallel, (tag) => tagDigest(upstreams, repository, tag));
  } catch (error) {
    throw error instanceof RegistryError ? error : lookupFailed('registry unreachable');
  }
  const naming = immutable.filter((_tag, index) => digests[index] === digest);
  if (naming.length === 0) return;
  naming.sort();
  const shown = naming.slice(0, 10).join(', ') + (naming.length > 10 ? `, and ${naming.length - 10} more` : '');
  const which = naming.length === 1 ? 'an immutable tag' : 'immutable tags';
  throw new RegistryError('DENIED', `manifest is tagged ${shown}, ${which}; it cannot be deleted`, { repository, digest, tags: naming });
}

/** Runs `work` holding the repository's lock that the API's immutable-tag pushes and digest deletes take (the web UI's deletes). */
export async function withImmutableTagLock<T>(repository: string, work: () => Promise<T>): Promise<T> {
  const release = await keyedLock('immutable-tags').acquire(repository, lockWaitMs);
  try {
    return await work();
  } finally {
    release();
  }
}

export interface ImmutableTagGuardOptions {
  upstreams: UpstreamPool;
  authorizer: Authorizer;
}

/**
 * The manifest requests that could move an immutable tag, checked and forwarded one at a time per
 * repository: a tag PUT of an immutable tag, and a delete by digest (which may drop such a tag).
 * One lock per repository covers both, so a delete's check cannot miss a tag pushed meanwhile;
 * pushes of mutable tags never wait. The locks live in this process (a cluster's workers share
 * their primary's): gateways sharing one registry do not see each other's, so across gateways a first push can still race.
 * Answers true when it took the request (forwarded or threw), false when it is none of its business.
 */
export function createImmutableTagGuard(options: ImmutableTagGuardOptions) {
  const locks = keyedLock('immutable-tags');
  return async function guardImmutableTags(req: Request, res: Response, route: { name: string; reference: string }, forward: (body?: Buffer) => void, read?: Buffer): Promise<boolean> {
    const { name, reference } = route;
    const immutableTag = isTag(reference) && options.authorizer.isImmutableTag(name, reference);
    if (req.method === 'PUT' && immutableTag) {
      // Read before queueing (unless the caller already has), so a slow upload never holds the repository's lock.
      const body = read ?? (await readManifestBody(req));
      await runHoldingUntilResponseEnds(locks, name, lockWaitMs, res, () => refuseTagMove(options.upstreams, name, reference, body), () => forward(body));
      return true;
    }
    if (req.method !== 'DELETE') return false;
    if (immutableTag) throw new RegistryError('DENIED', `tag ${reference} of ${name} is immutable; it cannot be deleted`, { repository: name, tag: reference });
    // Only repositories an immutable-tag rule covers pay for the tag lookup and the lock.
    if (isTag(reference) || !options.authorizer.hasImmutableTags(name)) return false;
    await runHoldingUntilResponseEnds(locks, name, lockWaitMs, res, () => refuseDeleteOfTagged(options.upstreams, options.authorizer, name, reference), () => forward());
    return true;
  };
}
