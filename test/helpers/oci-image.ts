// Builds a test image as an OCI image layout folder, without network, streaming big layers to disk.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';

export const ociManifestMediaType = 'application/vnd.oci.image.manifest.v1+json';
export const ociIndexMediaType = 'application/vnd.oci.image.index.v1+json';
export const ociConfigMediaType = 'application/vnd.oci.image.config.v1+json';
export const ociLayerMediaType = 'application/vnd.oci.image.layer.v1.tar+gzip';

export interface TestImage {
  dir: string;
  /** `oci:${dir}:${tag}`, as skopeo names it. */
  reference: string;
  tag: string;
  manifestDigest: string;
  configDigest: string;
  /** Digests of the gzipped layer blobs, in manifest order. */
  layerDigests: string[];
  /** Sizes of the gzipped layer blobs in bytes. */
  layerSizes: number[];
  /** sha256 of each uncompressed tar (the config's rootfs.diff_ids). */
  diffIds: string[];
}

const tarBlockSize = 512;
const randomChunkBytes = 1024 * 1024;
/** The ustar size field holds 11 octal digits. */
const maxTarEntryBytes = 0o77777777777;
const randomBytesAsync = promisify(randomBytes);

function writeOctal(header: Buffer, offset: number, fieldLength: number, value: number): void {
  header.write(`${value.toString(8).padStart(fieldLength - 1, '0')}\0`, offset, fieldLength, 'ascii');
}

/** A POSIX ustar header for one regular file owned by root. */
export function ustarHeader(name: string, sizeBytes: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar entry name too long: ${name}`);
  if (sizeBytes > maxTarEntryBytes) throw new Error(`tar entry too big for ustar: ${sizeBytes} bytes`);
  const header = Buffer.alloc(tarBlockSize);
  header.write(name, 0, 100, 'utf8');
  writeOctal(header, 100, 8, 0o644);
  writeOctal(header, 108, 8, 0);
  writeOctal(header, 116, 8, 0);
  writeOctal(header, 124, 12, sizeBytes);
  writeOctal(header, 136, 12, Math.floor(Date.now() / 1000));
  header.write('0', 156, 'ascii');
  header.write('ustar\0', 257, 'ascii');
  header.write('00', 263, 'ascii');
  header.write('root', 265, 'ascii');
  header.write('root', 297, 'ascii');
  writeOctal(header, 329, 8, 0);
  writeOctal(header, 337, 8, 0);
  // The checksum is computed with its own field read as spaces.
  header.fill(' ', 148, 156);
  let checksum = 0;
  for (const byte of header) checksum += byte;
  header.write(`${checksum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return header;
}

/** A tar archive holding one file of random bytes, fed through `uncompressedHash` on the way. */
async function* singleFileTar(name: string, sizeBytes: number, uncompressedHash: Hash): AsyncGenerator<Buffer> {
  const emit = (chunk: Buffer): Buffer => {
    uncompressedHash.update(chunk);
    return chunk;
  };
  yield emit(ustarHeader(name, sizeBytes));
  for (let remaining = sizeBytes; remaining > 0; remaining -= randomChunkBytes) {
    yield emit(await randomBytesAsync(Math.min(randomChunkBytes, remaining)));
  }
  const padding = (tarBlockSize - (sizeBytes % tarBlockSize)) % tarBlockSize;
  // Two zero blocks mark the end of the archive.
  yield emit(Buffer.alloc(padding + 2 * tarBlockSize));
}

interface WrittenLayer {
  digest: string;
  size: number;
  diffId: string;
}

async function writeLayer(blobsDir: string, index: number, sizeBytes: number, gzipLevel: number): Promise<WrittenLayer> {
  const uncompressed = createHash('sha256');
  const compressed = createHash('sha256');
  let size = 0;
  const partialPath = join(blobsDir, `.partial-layer-${index}`);
  await pipeline(
    singleFileTar(`layer-${index}.bin`, sizeBytes, uncompressed),
    createGzip({ level: gzipLevel }),
    async function* hashCompressed(chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        compressed.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(partialPath),
  );
  const hex = compressed.digest('hex');
  await rename(partialPath, join(blobsDir, hex));
  return { digest: `sha256:${hex}`, size, diffId: `sha256:${uncompressed.digest('hex')}` };
}

async function writeJsonBlob(blobsDir: string, value: unknown): Promise<{ digest: string; size: number }> {
  const bytes = Buffer.from(JSON.stringify(value));
  const hex = createHash('sha256').update(bytes).digest('hex');
  await writeFile(join(blobsDir, hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

/**
 * Writes an OCI image layout with one gzipped layer per entry of `layers` into `dir`.
 * `gzipLevel` (default 1): random bytes do not compress, so level 0 gives the same blob sizes
 * about eight times faster, which matters for layers of hundreds of MiB.
 */
export async function buildOciImage(options: {
  dir: string;
  tag?: string;
  layers: { sizeBytes: number }[];
  gzipLevel?: number;
}): Promise<TestImage> {
  const tag = options.tag ?? 'latest';
  const blobsDir = join(options.dir, 'blobs', 'sha256');
  await mkdir(blobsDir, { recursive: true });

  const layers: WrittenLayer[] = [];
  for (const [index, layer] of options.layers.entries()) {
    layers.push(await writeLayer(blobsDir, index, layer.sizeBytes, options.gzipLevel ?? 1));
  }
  const config = await writeJsonBlob(blobsDir, {
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
  });
  const manifest = await writeJsonBlob(blobsDir, {
    schemaVersion: 2,
    mediaType: ociManifestMediaType,
    config: { mediaType: ociConfigMediaType, digest: config.digest, size: config.size },
    layers: layers.map((layer) => ({ mediaType: ociLayerMediaType, digest: layer.digest, size: layer.size })),
  });
  const index = {
    schemaVersion: 2,
    mediaType: ociIndexMediaType,
    manifests: [
      {
        mediaType: ociManifestMediaType,
        digest: manifest.digest,
        size: manifest.size,
        annotations: { 'org.opencontainers.image.ref.name': tag },
      },
    ],
  };
  await writeFile(join(options.dir, 'index.json'), JSON.stringify(index));
  await writeFile(join(options.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));

  return {
    dir: options.dir,
    reference: `oci:${options.dir}:${tag}`,
    tag,
    manifestDigest: manifest.digest,
    configDigest: config.digest,
    layerDigests: layers.map((layer) => layer.digest),
    layerSizes: layers.map((layer) => layer.size),
    diffIds: layers.map((layer) => layer.diffId),
  };
}
