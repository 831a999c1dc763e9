// The shipped registry configuration on real object storage: Swift and S3 (Swift's s3api) behind the gateway, pushed and pulled with skopeo.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import { skopeoCopy, skopeoInspect, skopeoLogin } from '../helpers/skopeo.js';
import {
  envFileFromExample,
  httpCall,
  renderCompose,
  serviceEnvironment,
  serviceMounts,
  startComposeRegistry,
  startSwift,
  type ComposeRegistry,
  type SwiftServer,
} from '../helpers/swift.js';

const chunkSize = 5 * 1024 * 1024;
/** Bigger than two chunks: at least three Swift segments, a three-part S3 multipart upload. */
const layerBytes = 12 * 1024 * 1024;
const user = 'alice';
const password = 'alice-password';
const repository = 'team/app';
const tag = '1.0';
const registryConfigInContainer = '/etc/docker/registry/config.yml';

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Where the registry keeps a blob's bytes, below the storage root. */
function blobDataPath(digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return `docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
}

interface Deployment {
  registry: ComposeRegistry;
  gateway: TestGateway;
  registryEnvironment: Record<string, string>;
  close(): Promise<void>;
}

/**
 * Renders docker-compose.yml plus one storage file with an .env made from .env.example, then runs
 * the registry with the config file compose mounts and the environment compose sets, and the
 * gateway in front of it.
 */
async function deploy(work: string, storageFile: string, settings: Record<string, string>): Promise<Deployment> {
  const envFile = path.join(work, '.env');
  await writeFile(envFile, await envFileFromExample({ REGISTRY_HTTP_SECRET: randomBytes(16).toString('hex'), ...settings }));
  const model = await renderCompose({ files: ['docker-compose.yml', storageFile], envFile, home: work });
  const service = model.services.registry;
  assert.ok(service, 'compose has a registry service');
  const configMount = serviceMounts(service).find((mount) => mount.target === registryConfigInContainer);
  assert.ok(configMount, `compose mounts a registry config at ${registryConfigInContainer}`);
  const registryEnvironment = serviceEnvironment(service);
  const registry = await startComposeRegistry({ configFile: configMount.source, environment: registryEnvironment });
  let gateway: TestGateway;
  try {
    gateway = await startTestGateway({ upstream: registry.url, users: { [user]: password } });
  } catch (error) {
    await registry.stop();
    throw error;
  }
  return {
    registry,
    gateway,
    registryEnvironment,
    async close() {
      await gateway.close();
      await registry.stop();
    },
  };
}

/** Pushes through the gateway (token auth, CA verified), pulls back, and checks every digest. */
async function pushAndPullBack(gateway: TestGateway, image: TestImage, work: string): Promise<void> {
  const context = { certDir: gateway.certDir, authFile: path.join(work, 'auth.json') };
  const remote = `docker://${gateway.host}/${repository}:${tag}`;
  await skopeoLogin({ ...context, host: gateway.host, user, password });
  await skopeoCopy({ ...context, from: image.reference, to: remote });

  const inspected = await skopeoInspect({ ...context, image: remote });
  assert.equal(inspected.Digest, image.manifestDigest);
  assert.deepEqual(inspected.Layers, image.layerDigests);

  const pulled = path.join(work, 'pulled');
  await skopeoCopy({ ...context, from: remote, to: `dir:${pulled}` });
  assert.equal(sha256(await readFile(path.join(pulled, 'manifest.json'))), image.manifestDigest);
  for (const digest of [image.configDigest, ...image.layerDigests]) {
    assert.equal(sha256(await readFile(path.join(pulled, digest.slice('sha256:'.length)))), digest, `pulled blob ${digest}`);
  }
}

/** DELETE of the manifest answers 202 only when the shipped config kept `delete: enabled`. */
async function assertManifestDeletable(gateway: TestGateway, image: TestImage): Promise<void> {
  const token = await fetchToken(gateway, user, password, [`repository:${repository}:delete`]);
  const res = await request(gateway, 'DELETE', `/v2/${repository}/manifests/${image.manifestDigest}`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(res.status, 202, res.body);
}

describe('registry storage on real object stores, configured as compose ships it', () => {
  let swift: SwiftServer;
  let imageDir: string;
  let image: TestImage;

  before(async () => {
    swift = await startSwift();
    imageDir = await mkdtemp(path.join(os.tmpdir(), 'storage-image-'));
    image = await buildOciImage({ dir: imageDir, tag, layers: [{ sizeBytes: layerBytes }] });
    assert.ok(image.layerSizes[0]! > 2 * chunkSize, 'the layer spans more than two chunks');
  });
  after(async () => {
    await swift?.stop();
    if (imageDir) await rm(imageDir, { recursive: true, force: true });
  });

  test('swift driver (deploy/compose.swift.yml): segmented blobs land in the container, digests survive the round trip', async (t) => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'storage-swift-'));
    t.after(() => rm(work, { recursive: true, force: true }));
    const container = `registry-${randomBytes(4).toString('hex')}`;
    const deployment = await deploy(work, 'deploy/compose.swift.yml', {
      REGISTRY_STORAGE_SWIFT_AUTHURL: swift.authUrl,
      REGISTRY_STORAGE_SWIFT_USERNAME: swift.user,
      REGISTRY_STORAGE_SWIFT_PASSWORD: swift.key,
      REGISTRY_STORAGE_SWIFT_CONTAINER: container,
      REGISTRY_STORAGE_SWIFT_AUTHVERSION: '1',
      REGISTRY_STORAGE_SWIFT_CHUNKSIZE: String(chunkSize),
      REGISTRY_STORAGE_SWIFT_PREFIX: '/registry',
      REGISTRY_STORAGE_REDIRECT_DISABLE: 'true',
    });
    t.after(() => deployment.close());
    assert.equal(deployment.registryEnvironment.REGISTRY_STORAGE, 'swift');

    await pushAndPullBack(deployment.gateway, image, work);

    // The driver keeps each blob as a manifest object under PREFIX/files pointing at its segments.
    const layer = image.layerDigests[0]!;
    const dataObject = `registry/files/${blobDataPath(layer)}`;
    const names = (await swift.listObjects(container, 'registry/files/')).map((object) => object.name);
    for (const digest of [image.configDigest, layer]) assert.ok(names.includes(`registry/files/${blobDataPath(digest)}`), `${digest} in ${container}`);
    const manifestHeader = (await swift.headObject(container, dataObject))['x-object-manifest'];
    assert.equal(typeof manifestHeader, 'string', 'the layer is a segmented (large) object');
    const [segmentContainer, ...segmentPrefix] = decodeURIComponent(manifestHeader as string).split('/');
    assert.equal(segmentContainer, container);
    const segments = await swift.listObjects(container, segmentPrefix.join('/'));
    assert.ok(segments.length >= 3, `layer stored as ${segments.length} segments of at most ${chunkSize} bytes`);
    assert.ok(segments.every((segment) => segment.bytes <= chunkSize));
    assert.equal(segments.reduce((sum, segment) => sum + segment.bytes, 0), image.layerSizes[0]);

    await assertManifestDeletable(deployment.gateway, image);
  });

  test('s3 driver (deploy/compose.s3.yml) on Swift s3api: multipart upload, presigned redirects pass through the gateway untouched', async (t) => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'storage-s3-'));
    t.after(() => rm(work, { recursive: true, force: true }));
    const bucket = `registry-${randomBytes(4).toString('hex')}`;
    // The s3 driver does not create its bucket.
    await swift.createContainer(bucket);
    const deployment = await deploy(work, 'deploy/compose.s3.yml', {
      REGISTRY_STORAGE_S3_BUCKET: bucket,
      REGISTRY_STORAGE_S3_REGION: 'us-east-1',
      REGISTRY_STORAGE_S3_REGIONENDPOINT: swift.endpoint,
      REGISTRY_STORAGE_S3_ACCESSKEY: swift.user,
      REGISTRY_STORAGE_S3_SECRETKEY: swift.key,
      REGISTRY_STORAGE_S3_SECURE: 'false',
      REGISTRY_STORAGE_S3_V4AUTH: 'true',
      REGISTRY_STORAGE_S3_CHUNKSIZE: String(chunkSize),
      REGISTRY_STORAGE_S3_ROOTDIRECTORY: '/registry',
    });
    t.after(() => deployment.close());
    assert.equal(deployment.registryEnvironment.REGISTRY_STORAGE, 's3');
    assert.equal(deployment.registryEnvironment.REGISTRY_STORAGE_REDIRECT_DISABLE, 'false', 'redirects stay on by default');

    await pushAndPullBack(deployment.gateway, image, work);

    const layer = image.layerDigests[0]!;
    const objects = await swift.listObjects(bucket, 'registry/');
    for (const [digest, size] of [[image.configDigest, undefined], [layer, image.layerSizes[0]]] as const) {
      const object = objects.find((o) => o.name === `registry/${blobDataPath(digest)}`);
      assert.ok(object, `${digest} in bucket ${bucket}`);
      if (size !== undefined) assert.equal(object.bytes, size);
    }
    // s3api keeps the parts of multipart uploads in BUCKET+segments, created by the first one.
    assert.ok((await swift.listContainers()).includes(`${bucket}+segments`), 'the upload went through S3 multipart');

    // A blob GET through the gateway is the registry's redirect to a presigned URL of the bucket,
    // unchanged, and that URL serves the layer to a client that never saw the S3 credentials.
    const token = await fetchToken(deployment.gateway, user, password, [`repository:${repository}:pull`]);
    const res = await request(deployment.gateway, 'GET', `/v2/${repository}/blobs/${layer}`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 307, res.body);
    const location = new URL(String(res.headers.location));
    assert.equal(location.origin, swift.endpoint);
    assert.equal(location.pathname, `/${bucket}/registry/${blobDataPath(layer)}`);
    assert.ok(location.searchParams.has('X-Amz-Signature'), 'a presigned (v4) URL');
    const fromBucket = await httpCall(location.href, 'GET');
    assert.equal(fromBucket.status, 200);
    assert.equal(sha256(fromBucket.body), layer);

    await assertManifestDeletable(deployment.gateway, image);
  });
});
