// Refuses a manifest PUT that would move an existing immutable tag; re-pushing the same manifest is fine.

import { createHash } from 'node:crypto';
import type { Request } from 'express';
import { RegistryError } from './errors.js';
import type { UpstreamPool } from './upstreams.js';

/** The registry refuses manifests over 4 MiB itself; reading that much to compare digests is cheap. */
const maxManifestBytes = 4 * 1024 * 1024;

const manifestMediaTypes = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
].join(', ');

/** Reads a manifest body (small by the registry's own limit); anything larger is refused, never buffered. */
export async function readManifestBody(req: Request): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxManifestBytes) throw new RegistryError('MANIFEST_INVALID', 'manifest too large');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxManifestBytes) throw new RegistryError('MANIFEST_INVALID', 'manifest too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Throws DENIED when `tag` already names a manifest other than `body` in `repository`. */
export async function refuseTagMove(upstreams: UpstreamPool, repository: string, tag: string, body: Buffer): Promise<void> {
  const answer = await upstreams.fetch(`/v2/${repository}/manifests/${tag}`, { method: 'HEAD', headers: { Accept: manifestMediaTypes } });
  if (answer.status === 404) return;
  if (answer.status !== 200) throw new RegistryError('UNAVAILABLE', 'could not check whether the tag exists');
  const existing = answer.headers['docker-content-digest'];
  const pushed = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  if (existing === pushed) return;
  throw new RegistryError('DENIED', `tag ${tag} of ${repository} is immutable and already exists`, { repository, tag, existing });
}
