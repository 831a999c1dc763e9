// OCI 1.1 referrers for tests: hand-built artifact manifests with a subject, and a client for the referrers API and the fallback tag.

import assert from 'node:assert/strict';
import { request, type RawResponse, type TestGateway } from './gateway.js';
import { ociIndexMediaType, ociManifestMediaType } from './oci-image.js';
import { RegistryApi, sha256 } from './registry-api.js';

export const emptyBlob = Buffer.from('{}');
export const empty = { mediaType: 'application/vnd.oci.empty.v1+json', digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a', size: 2 };
export const sbomType = 'application/vnd.example.sbom.v1+json';
export const signatureType = 'application/vnd.example.signature.v1';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** A hand-built OCI artifact manifest: empty config and one empty layer, `subject`, and the given artifactType and annotations. */
export function artifact(subject: Descriptor, fields: { artifactType?: string; config?: Descriptor; annotations?: Record<string, string> }): { body: Buffer; descriptor: Descriptor } {
  const manifest = {
    schemaVersion: 2,
    mediaType: ociManifestMediaType,
    ...(fields.artifactType !== undefined ? { artifactType: fields.artifactType } : {}),
    config: fields.config ?? empty,
    layers: [empty],
    subject,
    ...(fields.annotations ? { annotations: fields.annotations } : {}),
  };
  const body = Buffer.from(JSON.stringify(manifest));
  return { body, descriptor: { mediaType: ociManifestMediaType, digest: sha256(body), size: body.length } };
}

export class Client {
  readonly api: RegistryApi;
  constructor(
    readonly gw: TestGateway,
    readonly token: string,
  ) {
    this.api = new RegistryApi(gw, token);
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  put(repository: string, reference: string, body: Buffer, contentType = ociManifestMediaType): Promise<RawResponse> {
    return request(this.gw, 'PUT', `/v2/${repository}/manifests/${reference}`, { headers: this.headers({ 'Content-Type': contentType, 'Content-Length': String(body.length) }), body });
  }

  referrers(repository: string, digest: string, query = ''): Promise<RawResponse> {
    return request(this.gw, 'GET', `/v2/${repository}/referrers/${digest}${query}`, { headers: this.headers() });
  }

  async listed(repository: string, digest: string, query = ''): Promise<{ digest: string; artifactType?: string }[]> {
    const res = await this.referrers(repository, digest, query);
    assert.equal(res.status, 200, res.body);
    return res.json().manifests;
  }

  /** The fallback tag's index as a pre-1.1 client reads it, or undefined when there is none. */
  async fallback(repository: string, digest: string): Promise<{ mediaType: string; manifests: Record<string, unknown>[] } | undefined> {
    const res = await request(this.gw, 'GET', `/v2/${repository}/manifests/${digest.replace(':', '-')}`, { headers: this.headers({ Accept: ociIndexMediaType }) });
    if (res.status === 404) return undefined;
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['content-type'], ociIndexMediaType);
    return res.json();
  }

  /** An image to refer to, pushed under `tag`. */
  async subject(repository: string, tag: string): Promise<Descriptor> {
    const image = await this.api.makeManifest(repository, `subject ${tag}`);
    const res = await this.put(repository, tag, image.body);
    assert.equal(res.status, 201, res.body);
    return { mediaType: ociManifestMediaType, digest: image.digest, size: image.body.length };
  }

  /** Pushes a referrer by digest, as oras and notation do; returns the registry's answer. */
  pushReferrer(repository: string, made: { body: Buffer; descriptor: Descriptor }): Promise<RawResponse> {
    return this.put(repository, made.descriptor.digest, made.body);
  }
}

export const digests = (list: { digest: string }[]) => list.map((entry) => entry.digest).sort();

/** How often the gateways found their index write overwritten (and made it again), and how often a write was slow. */
export function raceReport(gateways: TestGateway[]): string {
  const lines = gateways.flatMap((gw) => gw.logLines);
  const count = (text: string) => lines.filter((line) => line.includes(text)).length;
  return `${count('referrers index changed meanwhile')} index writes found overwritten and made again; ${count('slow referrers index write')} slow writes`;
}

/** What cosign pushes to `sha256-<hex>.sig` (or .att): one layer per signature, so signing again rewrites the tag. */
export async function cosignStyle(client: Client, repository: string, signatures: string[]): Promise<{ body: Buffer; digest: string }> {
  const layers = [];
  for (const signature of signatures) {
    const payload = await client.api.uploadBlob(repository, Buffer.from(JSON.stringify({ critical: { type: 'cosign container image signature' }, optional: { signature } })));
    layers.push({ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', ...payload, annotations: { 'dev.cosignproject.cosign/signature': signature } });
  }
  const config = await client.api.uploadBlob(repository, Buffer.from(JSON.stringify({ architecture: '', os: '', rootfs: { type: 'layers', diff_ids: [] } })));
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: ociManifestMediaType, config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers }));
  return { body, digest: sha256(body) };
}

