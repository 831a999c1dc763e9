// A gateway with images for the browse reader's tests: users with different rights, tags that sort, an index, a referrer, a huge config, a hidden repository.

import path from 'node:path';
import { pino } from 'pino';
import type { Identity } from '../../src/access/access.js';
import { parseAccessFile } from '../../src/access/access-rules.js';
import type { RuleSet } from '../../src/access/rule-set.js';
import { UpstreamPool } from '../../src/registry/upstreams.js';
import type { WriteGate } from '../../src/ui/browse/deletes.js';
import type { Viewer } from '../../src/ui/browse/model.js';
import { createBrowseReader, type BrowseReaderDeps } from '../../src/ui/browse/reader.js';
import { fetchToken, startTestGateway, type TestGateway } from './gateway.js';
import { ociConfigMediaType, ociIndexMediaType, ociLayerMediaType, ociManifestMediaType } from './oci-image.js';
import { artifact, Client } from './referrers.js';
import { sha256 } from './registry-api.js';

export const passwords = { alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' };

/** alice: everything; bob: pulls team/**; carol: pulls and deletes team/**; anonymous: pulls public/**. */
export const accessRules = `
rules:
  - users: [alice]
    repositories: ["**"]
    actions: ["*"]
  - users: [bob]
    repositories: ["team/**"]
    actions: [pull]
  - users: [carol]
    repositories: ["team/**"]
    actions: [pull, delete]
  - users: [anonymous]
    repositories: ["public/**"]
    actions: [pull]
immutable_tags:
  - repositories: ["team/**"]
    tags: ["release-*"]
`;

export const hostileLabel = '<script>alert("label")</script><b>&amp;</b>';
export const created = '2024-05-06T07:08:09.123456789Z';
export const appTags = ['1.0.0', '1.10.0', '1.9.0', 'latest', 'release-1', 'v2.0.0-rc1'];

export const viewer = (user: string | null, extra: Partial<Identity> = {}): Viewer => ({ identity: { user, ...extra }, address: '127.0.0.1' });

export interface PushedImage {
  digest: string;
  layerSize: number;
}

export interface BrowseFixture {
  gw: TestGateway;
  rules: RuleSet;
  pool: UpstreamPool;
  app: PushedImage;
  /** team/multi:multi, an index of linux/amd64 and linux/arm64/v8 plus an attestation manifest. */
  multi: { digest: string; platforms: PushedImage[] };
  referrerDigest: string;
  maintenance: { on: boolean };
  reader(extra?: Partial<BrowseReaderDeps>): ReturnType<typeof createBrowseReader>;
  close(): Promise<void>;
}

const repositories = ['team/app', 'team/multi', 'team/huge', 'secret/hidden', 'public/open'];

class Pusher {
  constructor(readonly client: Client) {}

  /** An image with one layer of `layerBytes` bytes and a config of `architecture`, under the tag `reference` (null: by digest only). */
  async image(repository: string, reference: string | null, options: { architecture?: string; variant?: string; layerBytes?: number; config?: Buffer } = {}): Promise<PushedImage & { body: Buffer }> {
    const layer = Buffer.alloc(options.layerBytes ?? 1000, `${repository}${options.architecture ?? ''}`);
    const configBody = options.config ?? Buffer.from(JSON.stringify({
      architecture: options.architecture ?? 'amd64',
      os: 'linux',
      ...(options.variant ? { variant: options.variant } : {}),
      created,
      config: { Entrypoint: ['/bin/app'], Cmd: ['--serve'], Env: ['PATH=/bin', 'MODE=<b>prod</b>'], Labels: { title: hostileLabel, 'org.opencontainers.image.source': 'https://example.test/app' } },
      history: [{ created, created_by: 'COPY app /bin/app # <img src=x onerror=alert(1)>' }],
      rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
    }));
    const config = await this.client.api.uploadBlob(repository, configBody);
    const blob = await this.client.api.uploadBlob(repository, layer);
    const body = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifestMediaType,
      config: { mediaType: ociConfigMediaType, ...config },
      layers: [{ mediaType: ociLayerMediaType, ...blob }],
    }));
    const res = await this.client.put(repository, reference ?? sha256(body), body);
    if (res.status !== 201) throw new Error(`push ${repository}:${reference}: ${res.status} ${res.body}`);
    return { digest: sha256(body), layerSize: blob.size, body };
  }
}

export async function startBrowseFixture(): Promise<BrowseFixture> {
  const gw = await startTestGateway({ users: passwords, access: accessRules });
  const readers: ReturnType<typeof createBrowseReader>[] = [];
  const pool = new UpstreamPool([new URL(gw.registry!.url)], { logger: pino({ level: 'silent' }), checkIntervalMs: 0 });
  try {
    const token = await fetchToken(gw, 'alice', passwords.alice, repositories.map((name) => `repository:${name}:pull,push,delete`));
    const client = new Client(gw, token);
    const push = new Pusher(client);
    // team/app: one image under tags that sort as versions and names.
    const app = await push.image('team/app', appTags[0]!);
    for (const tag of appTags.slice(1)) await client.put('team/app', tag, app.body);
    // A signature-like referrer of it (listed by the gateway in the fallback tag sha256-<hex>).
    await client.api.uploadBlob('team/app', Buffer.from('{}'));
    const referrer = artifact({ mediaType: ociManifestMediaType, digest: app.digest, size: app.body.length }, { artifactType: 'application/vnd.example.sbom.v1+json', annotations: { note: '<i>sbom</i>' } });
    const pushed = await client.pushReferrer('team/app', referrer);
    if (pushed.status !== 201) throw new Error(`referrer push: ${pushed.status} ${pushed.body}`);

    // team/multi: an index of two platforms and a BuildKit-style attestation manifest.
    const amd64 = await push.image('team/multi', null, { architecture: 'amd64', layerBytes: 1500 });
    const arm64 = await push.image('team/multi', null, { architecture: 'arm64', variant: 'v8', layerBytes: 2500 });
    await client.api.uploadBlob('team/multi', Buffer.from('{}'));
    const attestation = artifact({ mediaType: ociManifestMediaType, digest: amd64.digest, size: amd64.body.length }, {}).body;
    const attestationPut = await client.put('team/multi', sha256(attestation), attestation);
    if (attestationPut.status !== 201) throw new Error(`attestation push: ${attestationPut.status} ${attestationPut.body}`);
    const entry = (image: { digest: string; body: Buffer }, platform: Record<string, string>, annotations?: Record<string, string>) => ({
      mediaType: ociManifestMediaType, digest: image.digest, size: image.body.length, platform, ...(annotations ? { annotations } : {}),
    });
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: ociIndexMediaType,
      manifests: [
        entry(amd64, { os: 'linux', architecture: 'amd64' }),
        entry(arm64, { os: 'linux', architecture: 'arm64', variant: 'v8' }),
        entry({ digest: sha256(attestation), body: attestation }, { os: 'unknown', architecture: 'unknown' }, { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': amd64.digest }),
      ],
    }));
    const indexPut = await client.put('team/multi', 'multi', index, ociIndexMediaType);
    if (indexPut.status !== 201) throw new Error(`index push: ${indexPut.status} ${indexPut.body}`);

    // team/huge: an image whose config is over the 4 MiB the reader reads.
    const hugeConfig = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', padding: 'x'.repeat(5 * 1024 * 1024) }));
    await push.image('team/huge', 'big', { config: hugeConfig });
    await push.image('secret/hidden', 'v1');
    await push.image('public/open', 'v1');

    const maintenance = { on: false };
    const gate: WriteGate = { status: () => ({ on: maintenance.on }) };
    const { rules } = parseAccessFile(accessRules, 'access.yml');
    return {
      gw,
      rules,
      pool,
      app: { digest: app.digest, layerSize: app.layerSize },
      multi: { digest: sha256(index), platforms: [amd64, arm64].map(({ digest, layerSize }) => ({ digest, layerSize })) },
      referrerDigest: referrer.descriptor.digest,
      maintenance,
      reader(extra = {}) {
        const reader = createBrowseReader({
          upstreams: pool,
          authorizer: rules,
          logger: pino({ level: 'silent' }),
          events: gw.gateway.events,
          maintenance: gate,
          storageRoot: path.join(gw.dir, 'registry-data', 'registry'),
          ...extra,
        });
        readers.push(reader);
        return reader;
      },
      async close() {
        for (const reader of readers) reader.close();
        pool.close();
        await gw.close();
      },
    };
  } catch (error) {
    pool.close();
    await gw.close();
    throw error;
  }
}
