// Unit tests: what the browse pages read of manifests and configs (platforms, attestations left out, config fields, odd input).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configView, isPlatformEntry, layersSize, parseManifest, platformText } from '../src/ui/browse/manifest-parts.js';
import { ReadProblem } from '../src/ui/browse/upstream-reads.js';

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('parseManifest', () => {
  it('reads an image: config, layers and their total size', () => {
    const manifest = parseManifest(digest('a'), json({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digest('b'), size: 100 },
      layers: [{ mediaType: 'l', digest: digest('c'), size: 1000 }, { mediaType: 'l', digest: digest('d'), size: 24 }, { digest: 'broken' }],
    }), 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(manifest.kind, 'image');
    assert.equal(manifest.layers.length, 2);
    assert.equal(layersSize(manifest), 1024);
  });

  it('reads an index (also a Docker list served without a mediaType field) and picks its platforms', () => {
    const index = parseManifest(digest('a'), json({
      schemaVersion: 2,
      manifests: [
        { mediaType: 'm', digest: digest('1'), size: 1, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: 'm', digest: digest('2'), size: 1, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { mediaType: 'm', digest: digest('3'), size: 1, platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': digest('1') } },
        { mediaType: 'm', digest: digest('4'), size: 1, platform: { os: 'unknown', architecture: 'unknown' } },
        { mediaType: 'm', digest: digest('5'), size: 1 },
      ],
    }), 'application/vnd.docker.distribution.manifest.list.v2+json');
    assert.equal(index.kind, 'index');
    assert.equal(layersSize(index), undefined);
    const shown = index.manifests.filter(isPlatformEntry).map((entry) => platformText(entry.platform));
    assert.deepEqual(shown, ['linux/amd64', 'linux/arm64/v8', 'unknown']);
  });

  it('refuses what is no JSON object with a problem, not a crash', () => {
    assert.throws(() => parseManifest(digest('a'), Buffer.from('<html>'), 'text/html'), ReadProblem);
    assert.throws(() => parseManifest(digest('a'), Buffer.from('[1]'), 'application/json'), ReadProblem);
  });
});

describe('configView', () => {
  it('shows run settings, labels and history as given, HTML included', () => {
    const view = configView({
      os: 'linux',
      architecture: 'arm64',
      created: '2024-05-06T07:08:09.123456789Z',
      config: { Entrypoint: ['/bin/app'], Cmd: ['--serve'], Env: ['PATH=/bin'], WorkingDir: '/srv', User: '1000', Labels: { title: '<script>alert(1)</script>', n: 5 } },
      history: [{ created: '2024-01-01T00:00:00Z', created_by: 'RUN make', empty_layer: true }, 'junk'],
    });
    assert.equal(view.created, '2024-05-06T07:08:09.123Z');
    assert.deepEqual(view.entrypoint, ['/bin/app']);
    assert.deepEqual(view.labels, { title: '<script>alert(1)</script>' });
    assert.deepEqual(view.history, [{ created: '2024-01-01T00:00:00Z', createdBy: 'RUN make', emptyLayer: true }]);
    assert.equal(view.workingDir, '/srv');
  });

  it('leaves out fields of the wrong type', () => {
    const view = configView({ os: 5, config: { Env: 'PATH=/bin', Cmd: [1, 2], Labels: [] }, history: {} });
    assert.deepEqual(view, {});
    assert.throws(() => configView('text'), ReadProblem);
  });
});
