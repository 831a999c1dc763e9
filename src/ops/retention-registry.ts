// What retention asks the registry: which repositories exist, which digest a tag names, and when that image was created.

import { isRepositoryName } from '../access/reference.js';
import { manifestAccept, type UpstreamAnswer, type UpstreamPool } from '../registry/upstreams.js';


const maxManifestBytes = 4 * 1024 * 1024;
const maxConfigBytes = 8 * 1024 * 1024;
const maxCatalogPages = 10_000;
/** Platform manifests of an index read for their dates; the newest counts. */
const maxIndexChildren = 32;

/** A registry answer retention cannot work with: the step and what came back. */
export class RegistryReadError extends Error {
  override readonly name = 'RegistryReadError';
}

function failed(step: string, answer: UpstreamAnswer): RegistryReadError {
  return new RegistryReadError(`the registry answered ${answer.status} when ${step}`);
}

/** Every repository in the catalog, page by page. */
export async function listRepositories(upstreams: UpstreamPool): Promise<string[]> {
  const names: string[] = [];
  let last = '';
  for (let page = 0; page < maxCatalogPages; page++) {
    const params = new URLSearchParams({ n: '1000' });
    if (last !== '') params.set('last', last);
    const answer = await upstreams.fetch(`/v2/_catalog?${params}`, { maxBytes: 16 * 1024 * 1024 });
    if (answer.status !== 200) throw failed('listing repositories', answer);
    const found = (JSON.parse(answer.body.toString('utf8')) as { repositories?: unknown }).repositories;
    if (!Array.isArray(found)) throw new RegistryReadError('the registry sent a malformed catalog');
    const valid = found.filter((name): name is string => typeof name === 'string' && isRepositoryName(name));
    names.push(...valid);
    if (answer.headers.link === undefined || valid.length === 0) return names;
    last = valid[valid.length - 1]!;
  }
  throw new RegistryReadError(`more than ${maxCatalogPages} catalog pages`);
}

/** The digest `tag` names now, or undefined when there is no such tag (any more). */
export async function digestOfTag(upstreams: UpstreamPool, repository: string, tag: string): Promise<string | undefined> {
  const answer = await upstreams.fetch(`/v2/${repository}/manifests/${tag}`, { method: 'HEAD', headers: { accept: manifestAccept } });
  if (answer.status === 404) return undefined;
  const digest = answer.headers['docker-content-digest'];
  if (answer.status !== 200 || typeof digest !== 'string') throw failed(`reading tag ${repository}:${tag}`, answer);
  return digest;
}

function parseDate(value: unknown): Date | undefined {
  if (typeof value !== 'string') return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** A blob's bytes; a redirect to object storage (S3, Swift temporary URLs) is followed once. */
async function readBlob(upstreams: UpstreamPool, repository: string, digest: string): Promise<Buffer | undefined> {
  const answer = await upstreams.fetch(`/v2/${repository}/blobs/${digest}`, { maxBytes: maxConfigBytes });
  if (answer.status === 200) return answer.body;
  const location = answer.headers.location;
  if (answer.status >= 300 && answer.status < 400 && typeof location === 'string') {
    const redirected = await fetch(location, { redirect: 'follow' });
    const declared = Number(redirected.headers.get('content-length'));
    if (!redirected.ok || declared > maxConfigBytes) return undefined;
    const body = Buffer.from(await redirected.arrayBuffer());
    return body.length > maxConfigBytes ? undefined : body;
  }
  if (answer.status === 404) return undefined;
  throw failed(`reading blob ${digest} of ${repository}`, answer);
}

interface ManifestShape {
  config?: { digest?: unknown };
  manifests?: { digest?: unknown }[];
  history?: { v1Compatibility?: unknown }[];
}

/**
 * When the image `digest` names was created: its config's `created` (an index: the newest of its
 * platform images'; schema 1: the top history entry's). Undefined when there is none to read:
 * artifacts without a config date, a missing config blob.
 */
export async function createdOf(upstreams: UpstreamPool, repository: string, digest: string, depth = 0): Promise<Date | undefined> {
  const answer = await upstreams.fetch(`/v2/${repository}/manifests/${digest}`, { headers: { accept: manifestAccept }, maxBytes: maxManifestBytes });
  if (answer.status === 404) return undefined;
  if (answer.status !== 200) throw failed(`reading manifest ${digest} of ${repository}`, answer);
  let manifest: ManifestShape;
  try {
    manifest = JSON.parse(answer.body.toString('utf8')) as ManifestShape;
  } catch {
    return undefined;
  }
  if (typeof manifest.config?.digest === 'string') {
    const config = await readBlob(upstreams, repository, manifest.config.digest);
    if (config === undefined) return undefined;
    try {
      return parseDate((JSON.parse(config.toString('utf8')) as { created?: unknown }).created);
    } catch {
      return undefined;
    }
  }
  if (Array.isArray(manifest.manifests) && depth === 0) {
    let newest: Date | undefined;
    for (const child of manifest.manifests.slice(0, maxIndexChildren)) {
      if (typeof child.digest !== 'string') continue;
      const created = await createdOf(upstreams, repository, child.digest, depth + 1);
      if (created !== undefined && (newest === undefined || created > newest)) newest = created;
    }
    return newest;
  }
  const top = manifest.history?.[0]?.v1Compatibility;
  if (typeof top === 'string') {
    try {
      return parseDate((JSON.parse(top) as { created?: unknown }).created);
    } catch {
      return undefined;
    }
  }
  return undefined;
}
