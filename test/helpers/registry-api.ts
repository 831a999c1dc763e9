// Small registry API calls through a test gateway with a Bearer token: blob uploads, manifest PUT/HEAD/DELETE.

import { createHash } from 'node:crypto';
import { request, type RawResponse, type TestGateway } from './gateway.js';
import { ociConfigMediaType, ociManifestMediaType } from './oci-image.js';

type Gateway = Pick<TestGateway, 'host' | 'ca'>;

export const sha256 = (bytes: Buffer | string): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

const allManifestTypes = [
  ociManifestMediaType,
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

export class RegistryApi {
  constructor(
    readonly gw: Gateway,
    readonly token: string,
  ) {}

  #auth(extra: Record<string, string> = {}): Record<string, string> {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  /** Uploads `bytes` as a blob of `repository` (POST then PUT with the digest), returning its descriptor. */
  async uploadBlob(repository: string, bytes: Buffer): Promise<{ digest: string; size: number }> {
    const started = await request(this.gw, 'POST', `/v2/${repository}/blobs/uploads/`, { headers: this.#auth() });
    if (started.status !== 202) throw new Error(`upload start: ${started.status} ${started.body}`);
    const location = new URL(String(started.headers.location), `https://${this.gw.host}`);
    const digest = sha256(bytes);
    location.searchParams.set('digest', digest);
    const done = await request(this.gw, 'PUT', `${location.pathname}${location.search}`, {
      headers: this.#auth({ 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.length) }),
      body: bytes,
    });
    if (done.status !== 201) throw new Error(`upload: ${done.status} ${done.body}`);
    return { digest, size: bytes.length };
  }

  /**
   * An OCI manifest with one small config blob (uploaded to `repository`) and no layers; `note`
   * goes into an annotation, so each note gives a different manifest and digest.
   */
  async makeManifest(repository: string, note: string): Promise<{ body: Buffer; digest: string }> {
    const config = await this.uploadBlob(repository, Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'));
    const body = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: ociManifestMediaType, config: { mediaType: ociConfigMediaType, ...config }, layers: [], annotations: { note } }),
    );
    return { body, digest: sha256(body) };
  }

  putManifest(repository: string, reference: string, body: Buffer): Promise<RawResponse> {
    return request(this.gw, 'PUT', `/v2/${repository}/manifests/${reference}`, {
      headers: this.#auth({ 'Content-Type': ociManifestMediaType, 'Content-Length': String(body.length) }),
      body,
    });
  }

  /** The digest `reference` names, or undefined on 404. */
  async digestOf(repository: string, reference: string): Promise<string | undefined> {
    const res = await request(this.gw, 'HEAD', `/v2/${repository}/manifests/${reference}`, { headers: this.#auth({ Accept: allManifestTypes }) });
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw new Error(`HEAD ${repository}:${reference}: ${res.status}`);
    return String(res.headers['docker-content-digest']);
  }

  deleteManifest(repository: string, reference: string): Promise<RawResponse> {
    return request(this.gw, 'DELETE', `/v2/${repository}/manifests/${reference}`, { headers: this.#auth() });
  }
}
