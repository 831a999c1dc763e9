// Checks the OCI layout fixture is a real image: digests, tar contents, skopeo, and a registry round trip.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { pino } from 'pino';
import { RegistryProcess, findRegistryBinary, registryInstallHint } from '../../src/registry/registry-process.js';
import { buildOciImage, ociLayerMediaType, ociManifestMediaType, type TestImage } from '../helpers/oci-image.js';
import { skopeoCopy, skopeoInspect, skopeoInspectDigest, type SkopeoContext } from '../helpers/skopeo.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;

async function sha256OfFile(path: string, gunzip = false): Promise<string> {
  const hash = createHash('sha256');
  const digestAll = async (chunks: AsyncIterable<Buffer>): Promise<void> => {
    for await (const chunk of chunks) hash.update(chunk);
  };
  if (gunzip) await pipeline(createReadStream(path), createGunzip(), digestAll);
  else await pipeline(createReadStream(path), digestAll);
  return `sha256:${hash.digest('hex')}`;
}

function blobPath(layoutDir: string, digest: string): string {
  return join(layoutDir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
}

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

interface Manifest {
  mediaType: string;
  config: { digest: string; size: number };
  layers: { mediaType: string; digest: string; size: number }[];
}

interface OciIndex {
  manifests: { digest: string; annotations?: Record<string, string> }[];
}

let scratch: string;
let image: TestImage;
let skopeoContext: SkopeoContext;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'oci-image-'));
  skopeoContext = { certDir: join(scratch, 'certs'), authFile: join(scratch, 'auth.json') };
  await mkdir(skopeoContext.certDir);
  image = await buildOciImage({
    dir: join(scratch, 'layout'),
    tag: 'v1',
    layers: [{ sizeBytes: 1 * MiB }, { sizeBytes: 3 * MiB }],
  });
});

after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('buildOciImage', () => {
  test('every blob is named by the sha256 of its bytes and sized as the manifest says', async () => {
    assert.equal(image.reference, `oci:${image.dir}:v1`);
    assert.equal(await sha256OfFile(blobPath(image.dir, image.manifestDigest)), image.manifestDigest);
    assert.equal(await sha256OfFile(blobPath(image.dir, image.configDigest)), image.configDigest);

    const manifest = await readJson<Manifest>(blobPath(image.dir, image.manifestDigest));
    assert.equal(manifest.mediaType, ociManifestMediaType);
    assert.equal(manifest.config.digest, image.configDigest);
    assert.equal(manifest.config.size, (await stat(blobPath(image.dir, image.configDigest))).size);
    assert.deepEqual(
      manifest.layers.map((layer) => layer.digest),
      image.layerDigests,
    );
    assert.equal(image.layerDigests.length, 2);
    for (const [index, layer] of manifest.layers.entries()) {
      const path = blobPath(image.dir, layer.digest);
      assert.equal(layer.mediaType, ociLayerMediaType);
      assert.equal(await sha256OfFile(path), layer.digest);
      assert.equal((await stat(path)).size, layer.size);
      assert.equal(image.layerSizes[index], layer.size);
    }
  });

  test('the index tags the manifest and the layout is marked as OCI 1.0.0', async () => {
    const index = await readJson<OciIndex>(join(image.dir, 'index.json'));
    assert.equal(index.manifests.length, 1);
    assert.equal(index.manifests[0]?.digest, image.manifestDigest);
    assert.equal(index.manifests[0]?.annotations?.['org.opencontainers.image.ref.name'], 'v1');
    assert.deepEqual(await readJson(join(image.dir, 'oci-layout')), { imageLayoutVersion: '1.0.0' });
  });

  test('each layer is a gzipped tar with one file of the requested size, listed by diff_id in the config', async () => {
    const config = await readJson<{ architecture: string; os: string; rootfs: { type: string; diff_ids: string[] } }>(
      blobPath(image.dir, image.configDigest),
    );
    assert.equal(config.architecture, 'amd64');
    assert.equal(config.os, 'linux');
    assert.equal(config.rootfs.type, 'layers');
    assert.deepEqual(config.rootfs.diff_ids, image.diffIds);

    const expectedSizes = [1 * MiB, 3 * MiB];
    for (const [index, digest] of image.layerDigests.entries()) {
      const path = blobPath(image.dir, digest);
      assert.equal(await sha256OfFile(path, true), config.rootfs.diff_ids[index]);
      const { stdout } = await execFileAsync('tar', ['-tvzf', path]);
      const entries = stdout.trim().split('\n');
      assert.equal(entries.length, 1, stdout);
      const [mode, owner, size] = entries[0]!.split(/\s+/);
      assert.equal(mode, '-rw-r--r--');
      assert.equal(owner, 'root/root');
      assert.equal(Number(size), expectedSizes[index]);
      assert.ok(entries[0]!.endsWith(` layer-${index}.bin`), entries[0]);
    }
  });

  test('skopeo reads the layout and reports the same digests', async () => {
    const inspection = await skopeoInspect({ ...skopeoContext, image: image.reference });
    assert.equal(inspection.Digest, image.manifestDigest);
    assert.deepEqual(inspection.Layers, image.layerDigests);
    assert.equal(inspection.Architecture, 'amd64');
    assert.equal(inspection.Os, 'linux');
  });

  test('a push to the registry and a pull back keep every digest', async (t) => {
    const binary = findRegistryBinary(process.env.GATEWAY_REGISTRY_BIN, process.env.PATH);
    if (!binary) assert.fail(registryInstallHint);
    const registry = new RegistryProcess({
      binary,
      dataDir: join(scratch, 'registry-data'),
      logger: pino({ level: 'silent' }),
    });
    t.after(() => registry.stop());
    await registry.start();

    const remote = `docker://${new URL(registry.url).host}/fixtures/two-layers:v1`;
    await skopeoCopy({ ...skopeoContext, from: image.reference, to: remote, plainHttp: { dest: true } });
    assert.equal(await skopeoInspectDigest({ ...skopeoContext, image: remote, plainHttp: true }), image.manifestDigest);

    const pulledDir = join(scratch, 'pulled');
    await skopeoCopy({ ...skopeoContext, from: remote, to: `oci:${pulledDir}:v1`, plainHttp: { src: true } });
    const index = await readJson<OciIndex>(join(pulledDir, 'index.json'));
    assert.equal(index.manifests[0]?.digest, image.manifestDigest);
    const manifest = await readJson<Manifest>(blobPath(pulledDir, image.manifestDigest));
    assert.deepEqual(
      manifest.layers.map((layer) => layer.digest),
      image.layerDigests,
    );
    for (const digest of [image.configDigest, ...image.layerDigests]) {
      assert.equal(await sha256OfFile(blobPath(pulledDir, digest)), digest);
    }
  });
});
