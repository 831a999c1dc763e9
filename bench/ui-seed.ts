// Fills a bare registry with many small repositories fast: blobs uploaded once, then per repository a cross-repository mount and a manifest PUT.

import { createHash } from 'node:crypto';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import { ustarHeader } from '../test/helpers/oci-image.js';

const sha256 = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

interface Answer {
  status: number;
  location?: string;
  body: string;
}

/** HTTP/1.1 requests to one registry over a small pool of kept-alive connections. */
class RegistryClient {
  readonly #agent: http.Agent;
  constructor(
    readonly base: string,
    connections: number,
  ) {
    this.#agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  }

  send(method: string, target: string, body?: Buffer, headers: Record<string, string> = {}): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const request = http.request(new URL(target, this.base), { method, agent: this.#agent, timeout: 60_000, headers: { ...headers, 'content-length': String(body?.length ?? 0) } }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, location: response.headers.location, body: Buffer.concat(chunks).toString('utf8') }));
        response.on('error', reject);
      });
      request.on('timeout', () => request.destroy(new Error(`${method} ${target} timed out`)));
      request.on('error', reject);
      request.end(body);
    });
  }

  async expect(status: number, method: string, target: string, body?: Buffer, headers?: Record<string, string>): Promise<Answer> {
    const answer = await this.send(method, target, body, headers);
    if (answer.status !== status) throw new Error(`${method} ${target}: expected ${status}, got ${answer.status} ${answer.body.slice(0, 300)}`);
    return answer;
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** The bench image: a one-file layer and its config, the same bytes in every repository. */
function benchImage(): { layer: Buffer; config: Buffer; manifest: Buffer } {
  const content = Buffer.from('bench\n');
  const tar = Buffer.concat([ustarHeader('bench.txt', content.length), content, Buffer.alloc(512 - content.length), Buffer.alloc(1024)]);
  const layer = gzipSync(tar);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', created: '2024-05-06T07:08:09Z', config: { Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: [sha256(tar)] } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
    }),
  );
  return { layer, config, manifest };
}

/** `ns-07/app-00042`: 100 namespaces, names sorted as numbered. */
export function repositoryName(index: number): string {
  return `ns-${String(index % 100).padStart(2, '0')}/app-${String(index).padStart(5, '0')}`;
}

export interface SeedResult {
  repositories: number;
  seconds: number;
}

/**
 * Creates `count` repositories named by repositoryName, each with tag `1.0.0`. The blobs go up once to
 * `seed/base`; every other repository mounts them (201, no bytes sent) and gets the manifest.
 */
export async function seedRegistry(registryUrl: string, count: number, concurrency: number, progress: (done: number) => void = () => {}): Promise<SeedResult> {
  const started = performance.now();
  const client = new RegistryClient(registryUrl, concurrency);
  const image = benchImage();
  const manifestType = { 'content-type': 'application/vnd.oci.image.manifest.v1+json' };
  try {
    for (const blob of [image.layer, image.config]) {
      const upload = await client.expect(202, 'POST', '/v2/seed/base/blobs/uploads/');
      const location = new URL(upload.location ?? '', registryUrl);
      location.searchParams.set('digest', sha256(blob));
      await client.expect(201, 'PUT', `${location.pathname}${location.search}`, blob, { 'content-type': 'application/octet-stream' });
    }
    await client.expect(201, 'PUT', '/v2/seed/base/manifests/1.0.0', image.manifest, manifestType);
    const digests = [sha256(image.layer), sha256(image.config)];
    let next = 0;
    let done = 0;
    const worker = async (): Promise<void> => {
      while (next < count) {
        const name = repositoryName(next);
        next += 1;
        for (const digest of digests) await client.expect(201, 'POST', `/v2/${name}/blobs/uploads/?mount=${digest}&from=seed/base`);
        await client.expect(201, 'PUT', `/v2/${name}/manifests/1.0.0`, image.manifest, manifestType);
        done += 1;
        if (done % 1000 === 0) progress(done);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return { repositories: count, seconds: (performance.now() - started) / 1000 };
  } finally {
    client.close();
  }
}
