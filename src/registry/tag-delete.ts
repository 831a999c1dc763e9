// DELETE /v2/<name>/manifests/<tag> on a registry that deletes only by digest: the tag is pointed at a throwaway manifest, which is then deleted by digest.

import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Response } from 'express';
import type { Authorizer } from '../access/access.js';
import { RegistryError } from '../errors.js';
import { refuseDeleteOfTagged } from './immutable-tags.js';
import { keyedLock } from './tag-locks.js';
import { manifestAccept, type UpstreamAnswer, type UpstreamFetchOptions, type UpstreamPool } from './upstreams.js';

/** The OCI empty descriptor's content: the config of every throwaway manifest. */
const emptyConfig = Buffer.from('{}');
export const emptyConfigDescriptor = {
  mediaType: 'application/vnd.oci.empty.v1+json',
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
} as const;
const ociManifestMediaType = 'application/vnd.oci.image.manifest.v1+json';
/** The annotation naming a throwaway manifest; its value (the tag and a random id) makes each one unique. */
export const throwawayAnnotation = 'org.registry-gateway.tag-delete';
/** A throwaway manifest is about 300 bytes: a tag naming anything larger is not read to check. */
const maxThrowawayBytes = 1024;
/** The most of a registry error body read (a 404's JSON). */
const maxManifestBytes = 64 * 1024;


const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** UNAVAILABLE naming the step that failed and what the registry answered (status and error code, when it sent one). */
function failed(step: string, answer?: UpstreamAnswer | number): RegistryError {
  const status = typeof answer === 'number' ? answer : answer?.status;
  const code = typeof answer === 'object' ? codeOf(answer) : undefined;
  const said = status === undefined ? 'did not answer' : `answered ${status}${code === undefined ? '' : ` ${code}`}`;
  return new RegistryError('UNAVAILABLE', `could not delete the tag: the backend registry ${said} when ${step}`).withHeader('Retry-After', '5');
}

/** Registry 2.8's filesystem driver answers 500 when two requests write one link at once: such a step is tried again, a few times. */
const maxAttempts = 4;
const retryDelayMs = 25;

/** One request of a step; a 500 to a request that may be repeated (GET, HEAD, a manifest PUT) is tried again after a short wait. */
async function ask(upstreams: UpstreamPool, step: string, path: string, options: UpstreamFetchOptions): Promise<UpstreamAnswer> {
  const repeatable = options.method === undefined || options.method === 'GET' || options.method === 'HEAD' || (options.method === 'PUT' && path.includes('/manifests/'));
  for (let attempt = 1; ; attempt++) {
    let answer: UpstreamAnswer;
    try {
      answer = await upstreams.fetch(path, options);
    } catch {
      throw failed(step);
    }
    if (answer.status !== 500 || !repeatable || attempt === maxAttempts) return answer;
    await delay(retryDelayMs * 2 ** attempt);
  }
}

/** A throwaway manifest for `tag`: an OCI image manifest with the empty config, no layers, and a unique annotation. */
export function throwawayManifest(tag: string): Buffer {
  return Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: ociManifestMediaType, config: emptyConfigDescriptor, layers: [], annotations: { [throwawayAnnotation]: `${tag} ${randomUUID()}` } }),
  );
}

/** Whether `body` is a throwaway manifest (one a delete left behind when the registry failed half-way). */
export function isThrowawayManifest(body: Buffer): boolean {
  try {
    const manifest = JSON.parse(body.toString('utf8')) as { config?: { digest?: unknown }; layers?: unknown; annotations?: Record<string, unknown> };
    return manifest.config?.digest === emptyConfigDescriptor.digest && Array.isArray(manifest.layers) && manifest.layers.length === 0 && typeof manifest.annotations?.[throwawayAnnotation] === 'string';
  } catch {
    return false;
  }
}

/** The registry's error code in a JSON error body, if it sent one. */
function codeOf(answer: UpstreamAnswer): string | undefined {
  try {
    const code = (JSON.parse(answer.body.toString('utf8')) as { errors?: { code?: unknown }[] }).errors?.[0]?.code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

/** The empty config blob must exist in the repository before a manifest may name it; an upload that fails is started again. */
async function ensureEmptyConfig(upstreams: UpstreamPool, repository: string): Promise<void> {
  const step = 'storing the empty config blob';
  for (let attempt = 1; ; attempt++) {
    const head = await ask(upstreams, step, `/v2/${repository}/blobs/${emptyConfigDescriptor.digest}`, { method: 'HEAD' });
    if (head.status === 200) return;
    if (head.status !== 404) throw failed(step, head);
    const started = await ask(upstreams, step, `/v2/${repository}/blobs/uploads/`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(0) });
    const location = started.headers.location;
    if (started.status !== 202 || typeof location !== 'string') throw failed(step, started);
    // Only the path and query of the registry's Location are used, sent to the registry pool as any other request.
    const upload = new URL(location, 'http://registry.invalid');
    if (!upload.pathname.startsWith(`/v2/${repository}/blobs/uploads/`)) throw failed(step, started);
    upload.searchParams.set('digest', emptyConfigDescriptor.digest);
    const put = await ask(upstreams, step, `${upload.pathname}${upload.search}`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: emptyConfig });
    if (put.status === 201) return;
    if (put.status !== 500 || attempt === maxAttempts) throw failed(step, put);
  }
}

/**
 * The digest of the throwaway manifest `tag` names, when an earlier delete failed half-way; undefined
 * when the tag names anything else. Throws MANIFEST_UNKNOWN (or NAME_UNKNOWN) when there is no such tag.
 */
async function leftOverThrowaway(upstreams: UpstreamPool, repository: string, tag: string): Promise<Throwaway | undefined> {
  const step = 'reading the tag';
  const head = await ask(upstreams, step, `/v2/${repository}/manifests/${tag}`, { method: 'HEAD', headers: { accept: manifestAccept } });
  if (head.status === 404) {
    // A HEAD answer has no body: the registry's error code comes with a GET.
    const again = await ask(upstreams, step, `/v2/${repository}/manifests/${tag}`, { headers: { accept: manifestAccept }, maxBytes: maxManifestBytes });
    if (again.status === 404 && codeOf(again) === 'NAME_UNKNOWN') throw new RegistryError('NAME_UNKNOWN', 'repository name not known to registry', { name: repository });
    if (again.status === 404) throw new RegistryError('MANIFEST_UNKNOWN', 'manifest unknown', { tag });
    // Pushed in the meantime: deleted like any other tag.
    if (again.status === 200) return undefined;
    throw failed(step, again);
  }
  const digest = head.headers['docker-content-digest'];
  if (head.status !== 200 || typeof digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(digest)) throw failed(step, head);
  const size = Number(head.headers['content-length']);
  if (head.headers['content-type'] !== ociManifestMediaType || !(size <= maxThrowawayBytes)) return undefined;
  const body = await ask(upstreams, step, `/v2/${repository}/manifests/${digest}`, { headers: { accept: ociManifestMediaType }, maxBytes: maxThrowawayBytes });
  // Gone since the HEAD: another delete of this tag (through another gateway) just deleted its throwaway.
  if (body.status === 404) throw new RegistryError('MANIFEST_UNKNOWN', 'manifest unknown', { tag });
  return body.status === 200 && isThrowawayManifest(body.body) && sha256(body.body) === digest ? { digest, body: body.body } : undefined;
}

/** Points `tag` at a new throwaway manifest. */
async function moveOntoThrowaway(upstreams: UpstreamPool, repository: string, tag: string): Promise<Throwaway> {
  await ensureEmptyConfig(upstreams, repository);
  const body = throwawayManifest(tag);
  const put = await ask(upstreams, 'moving the tag', `/v2/${repository}/manifests/${tag}`, { method: 'PUT', headers: { 'content-type': ociManifestMediaType }, body });
  if (put.status !== 201) throw failed('moving the tag', put);
  return { digest: sha256(body), body };
}

/**
 * Deletes the throwaway by digest, which untags every tag naming it. Registry 2.8 deletes the
 * manifest first and then looks up its tags; when another untag in the repository races that
 * lookup it answers 500 with the tags left in place, naming a manifest it no longer has. The
 * manifest is then put back by digest (moving no tag) and deleted again, a few times at most.
 */
async function deleteThrowaway(upstreams: UpstreamPool, repository: string, throwaway: Throwaway): Promise<void> {
  const step = 'deleting the throwaway manifest';
  for (let attempt = 1; ; attempt++) {
    const deleted = await ask(upstreams, step, `/v2/${repository}/manifests/${throwaway.digest}`, { method: 'DELETE' });
    // 404: another delete of the same tag found this throwaway and deleted it first; the tag is gone either way.
    if (deleted.status === 202 || deleted.status === 404) return;
    if (deleted.status !== 500 || attempt === maxAttempts) throw failed(step, deleted);
    const restored = await ask(upstreams, step, `/v2/${repository}/manifests/${throwaway.digest}`, { method: 'PUT', headers: { 'content-type': ociManifestMediaType }, body: throwaway.body });
    if (restored.status !== 201) throw failed(step, restored);
  }
}

interface Throwaway {
  digest: string;
  body: Buffer;
}

export interface TagDeleteOptions {
  upstreams: UpstreamPool;
  authorizer: Authorizer;
}

/** How long a tag delete waits for another delete of the same tag through this gateway. */
const lockWaitMs = 30_000;

/**
 * Deletes one tag, leaving every other tag and the manifest it named: the tag is moved onto a new,
 * unique throwaway manifest, and that manifest is deleted by digest, which untags it. A push of the
 * same tag that lands meanwhile either comes first (and is then deleted with the tag) or after
 * (and stays): never half of each. A throwaway left by an earlier, failed delete is deleted directly.
 * Deletes of one tag through one gateway take turns (the registry's storage races with itself);
 * through several gateways they may overlap, and end the same way.
 */
export function createTagDeleter(options: TagDeleteOptions) {
  const removeTag = createTagRemover(options);
  return async function deleteTag(res: Response, repository: string, tag: string): Promise<void> {
    await removeTag(repository, tag);
    res.status(202).set('Content-Length', '0').end();
  };
}

/** The delete of createTagDeleter without the HTTP answer (the web UI's deletes); throws RegistryError as the API answers it. */
export function createTagRemover(options: TagDeleteOptions) {
  const { upstreams } = options;
  const locks = keyedLock('tag-delete');
  return async function removeTag(repository: string, tag: string): Promise<void> {
    let release: () => void;
    try {
      release = await locks.acquire(`${repository}:${tag}`, lockWaitMs);
    } catch {
      throw new RegistryError('UNAVAILABLE', `another delete of tag ${tag} is still in progress; try again`).withHeader('Retry-After', '5');
    }
    try {
      const throwaway = (await leftOverThrowaway(upstreams, repository, tag)) ?? (await moveOntoThrowaway(upstreams, repository, tag));
      // A tag an immutable rule covers may have been pushed onto the throwaway meanwhile: that one stays.
      if (options.authorizer.hasImmutableTags(repository)) await refuseDeleteOfTagged(upstreams, options.authorizer, repository, throwaway.digest);
      await deleteThrowaway(upstreams, repository, throwaway);
    } finally {
      release();
    }
  };
}
