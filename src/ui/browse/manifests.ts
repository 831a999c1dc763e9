// Manifests and image configs as the pages read them: tags resolved live, content fetched by digest with bounded reads, checked, and kept in a small LRU.

import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { isSubjectDigest } from '../../registry/referrers-index.js';
import { manifestAccept, type UpstreamPool } from '../../registry/upstreams.js';
import { parseManifest, type Descriptor, type ParsedManifest } from './manifest-parts.js';
import { fetchBounded, ReadProblem, tooLargeText, unexpected } from './upstream-reads.js';

export interface ManifestStoreOptions {
  upstreams: UpstreamPool;
  /** Manifests larger than this are reported, never read (default 4 MiB: the registry's own limit). */
  maxManifestBytes?: number;
  /** Image configs larger than this are reported, never read (default 4 MiB). */
  maxConfigBytes?: number;
  /** Bytes of manifests and configs kept (default 32 MiB). */
  cacheBytes?: number;
}

/** What a tag or digest names right now, as the registry's HEAD says. */
export interface Resolved {
  digest: string;
  mediaType: string;
  size: number | undefined;
}

const schema1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws';

function digestOf(bytes: Buffer, algorithm: string): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/** The sha256 or sha512 the content must have; a digest of another algorithm is not read. */
function checkedAlgorithm(digest: string): string {
  if (!isSubjectDigest(digest)) throw new ReadProblem(`The digest ${digest.slice(0, 80)} is not a sha256 or sha512 digest; its content is not shown.`);
  return digest.slice(0, digest.indexOf(':'));
}

type Cached = { kind: 'manifest'; manifest: ParsedManifest } | { kind: 'config'; json: unknown; bytes: number };

/**
 * Reads manifests and configs. Content fetched by digest never changes, so it is kept by digest
 * (after its digest is checked); what a tag names is asked of the registry every time. The cache
 * serves only content whose presence in the repository was just established (a tag's HEAD, an
 * index that names it), so it never shows one repository's content under another's name.
 */
export class ManifestStore {
  readonly #upstreams: UpstreamPool;
  readonly maxManifestBytes: number;
  readonly maxConfigBytes: number;
  readonly #cache: LRUCache<string, Cached>;

  constructor(options: ManifestStoreOptions) {
    this.#upstreams = options.upstreams;
    this.maxManifestBytes = options.maxManifestBytes ?? 4 * 1024 * 1024;
    this.maxConfigBytes = options.maxConfigBytes ?? 4 * 1024 * 1024;
    const maxSize = options.cacheBytes ?? 32 * 1024 * 1024;
    // Parsed JSON takes a few times its text: each entry counts three times its bytes.
    this.#cache = new LRUCache<string, Cached>({
      maxSize,
      maxEntrySize: maxSize,
      sizeCalculation: (value) => Math.max(1, 3 * (value.kind === 'manifest' ? value.manifest.body.length : value.bytes)),
    });
  }

  /** What `reference` (a tag or a digest) of `repository` names now; undefined when nothing. */
  async resolve(repository: string, reference: string): Promise<Resolved | undefined> {
    const answer = await fetchBounded(this.#upstreams, `/v2/${repository}/manifests/${reference}`, 'manifest', {
      method: 'HEAD',
      headers: { accept: manifestAccept },
      maxBytes: 0,
    });
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) throw unexpected(answer, `the manifest ${reference}`);
    const digest = answer.headers['docker-content-digest'];
    if (typeof digest !== 'string' || !isSubjectDigest(digest)) throw new ReadProblem('The registry named the manifest without a usable digest.');
    if (reference.includes(':') && digest !== reference) throw new ReadProblem('The registry answered with another manifest than the one asked for.');
    const length = Number(answer.headers['content-length']);
    return { digest, mediaType: String(answer.headers['content-type'] ?? '').split(';', 1)[0]!.trim(), size: Number.isSafeInteger(length) ? length : undefined };
  }

  /** The manifest `digest` of `repository` (known to be there); undefined when the registry no longer has it. */
  async manifest(repository: string, digest: string, declaredSize?: number): Promise<ParsedManifest | undefined> {
    const cached = this.#cache.get(`m:${digest}`);
    if (cached?.kind === 'manifest') return cached.manifest;
    const algorithm = checkedAlgorithm(digest);
    if (declaredSize !== undefined && declaredSize > this.maxManifestBytes) throw new ReadProblem(tooLargeText('manifest', this.maxManifestBytes));
    const answer = await fetchBounded(this.#upstreams, `/v2/${repository}/manifests/${digest}`, 'manifest', { headers: { accept: manifestAccept }, maxBytes: this.maxManifestBytes });
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) throw unexpected(answer, `the manifest ${digest}`);
    const contentType = String(answer.headers['content-type'] ?? '').split(';', 1)[0]!.trim();
    // A schema 1 manifest's digest covers its payload without the signatures: it is not checked, and only shown as text.
    if (contentType !== schema1 && digestOf(answer.body, algorithm) !== digest) throw new ReadProblem('The registry sent a manifest that does not match its digest; it is not shown.');
    const manifest = parseManifest(digest, answer.body, contentType);
    this.#cache.set(`m:${digest}`, { kind: 'manifest', manifest });
    return manifest;
  }

  /** The image config `descriptor` names, parsed; undefined when the registry does not have it. */
  async config(repository: string, descriptor: Descriptor): Promise<unknown> {
    const key = `c:${descriptor.digest}`;
    const cached = this.#cache.get(key);
    if (cached?.kind === 'config') return cached.json;
    const algorithm = checkedAlgorithm(descriptor.digest);
    if (descriptor.size > this.maxConfigBytes) throw new ReadProblem(tooLargeText('image configuration', this.maxConfigBytes));
    const answer = await fetchBounded(this.#upstreams, `/v2/${repository}/blobs/${descriptor.digest}`, 'image configuration', { maxBytes: this.maxConfigBytes });
    if (answer.status === 404) return undefined;
    if (answer.status >= 300 && answer.status < 400) throw new ReadProblem('The registry serves this image configuration from elsewhere (a redirect); it is not shown.');
    if (answer.status !== 200) throw unexpected(answer, 'the image configuration');
    if (digestOf(answer.body, algorithm) !== descriptor.digest) throw new ReadProblem('The registry sent an image configuration that does not match its digest; it is not shown.');
    let json: unknown;
    try {
      json = JSON.parse(answer.body.toString('utf8'));
    } catch {
      throw new ReadProblem('The image configuration is not JSON; it is not shown.');
    }
    this.#cache.set(key, { kind: 'config', json, bytes: answer.body.length });
    return json;
  }
}
