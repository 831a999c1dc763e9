// Images for the web UI's browser tests: a hostile image (script in labels, env, history, annotations) as an OCI layout skopeo pushes.

import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { ociConfigMediaType, ociIndexMediaType, ociLayerMediaType, ociManifestMediaType, ustarHeader } from './oci-image.js';

export const scriptText = '<script>alert(1)</script>';
export const imgText = '<img src=x onerror=alert(2)>';
/** Markup that would break out of an attribute, a textarea or a pre block if it were not escaped. */
export const breakoutText = `"'></textarea></pre><svg onload=alert(3)>`;

/** The most hostile legal tag: 128 characters (the limit), starting with `_`, full of `.`, `-`, `_`. */
export const hostileTag = `_${'.-_'.repeat(42)}x`;

const sha256 = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** A one-file tar, gzipped: a real layer that unpacks. */
function tinyLayer(): { tar: Buffer; gz: Buffer } {
  const content = Buffer.from('hello\n');
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  const tar = Buffer.concat([ustarHeader('hello.txt', content.length), content, padding, Buffer.alloc(1024)]);
  return { tar, gz: gzipSync(tar) };
}

export interface HostileImage {
  /** `oci:DIR:hostile` for skopeo (an OCI layout's reference name must start with a letter or digit). */
  reference: string;
  /** The tag to push it as. */
  tag: string;
  manifestDigest: string;
  manifestSize: number;
  configDigest: string;
  layerDigest: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** Writes an OCI image layout whose config and manifest carry script and markup in every free-text field. */
export async function writeHostileImage(dir: string, tag = hostileTag): Promise<HostileImage> {
  const blobs = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (bytes: Buffer): Promise<string> => {
    const digest = sha256(bytes);
    await writeFile(path.join(blobs, digest.slice('sha256:'.length)), bytes);
    return digest;
  };
  const layer = tinyLayer();
  const layerDigest = await put(layer.gz);
  const labels = { [scriptText]: imgText, 'org.opencontainers.image.title': breakoutText, description: `${imgText} ${scriptText}` };
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '2024-01-02T03:04:05Z',
      config: {
        Env: [`EVIL=${scriptText}`, `PATH=/bin:${imgText}`],
        Entrypoint: ['/bin/sh', '-c', scriptText],
        Cmd: [imgText],
        WorkingDir: `/${breakoutText}`,
        User: scriptText,
        Labels: labels,
      },
      rootfs: { type: 'layers', diff_ids: [sha256(layer.tar)] },
      history: [
        { created: '2024-01-02T03:04:05Z', created_by: `/bin/sh -c echo ${scriptText}`, comment: imgText },
        { created: '2024-01-02T03:04:06Z', created_by: breakoutText, empty_layer: true },
      ],
    }),
  );
  const configDigest = await put(config);
  const annotations = { 'org.opencontainers.image.description': scriptText, [imgText]: breakoutText };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifestMediaType,
      config: { mediaType: ociConfigMediaType, digest: configDigest, size: config.length },
      layers: [{ mediaType: ociLayerMediaType, digest: layerDigest, size: layer.gz.length, annotations: { title: scriptText } }],
      annotations,
    }),
  );
  const manifestDigest = await put(manifest);
  const index = {
    schemaVersion: 2,
    mediaType: ociIndexMediaType,
    manifests: [{ mediaType: ociManifestMediaType, digest: manifestDigest, size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': 'hostile' } }],
  };
  await writeFile(path.join(dir, 'index.json'), JSON.stringify(index));
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return { reference: `oci:${dir}:hostile`, tag, manifestDigest, manifestSize: manifest.length, configDigest, layerDigest, labels, annotations };
}
