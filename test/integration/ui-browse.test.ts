// The web UI's browse reader against a real registry 2.8 behind a real gateway: what each viewer sees, tag rows, platforms, images, bounds, a registry that is down.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { UpstreamPool } from '../../src/registry/upstreams.js';
import { RegistryUnavailable } from '../../src/ui/browse/model.js';
import { createBrowseReader } from '../../src/ui/browse/reader.js';
import { appTags, created, hostileLabel, startBrowseFixture, viewer, type BrowseFixture } from '../helpers/browse-fixture.js';
import { freePort } from '../helpers/ports.js';

const isoCreated = new Date(created).toISOString();

describe('browse reader on registry 2.8', () => {
  let fx: BrowseFixture;
  before(async () => {
    fx = await startBrowseFixture();
  });
  after(() => fx?.close());

  test('hidden repositories never appear: not listed, not found by search, not opened directly', async () => {
    const reader = fx.reader();
    const names = async (user: string | null, search = '') => (await reader.listRepositories(viewer(user), { search, page: 1, perPage: 50 })).repositories.map((r) => r.name);
    assert.deepEqual(await names('alice'), ['public/open', 'secret/hidden', 'team/app', 'team/huge', 'team/multi']);
    assert.deepEqual(await names('bob'), ['team/app', 'team/huge', 'team/multi']);
    assert.deepEqual(await names(null), ['public/open'], 'anonymous sees what anonymous may pull');
    assert.deepEqual(await names('mallory'), []);
    for (const search of ['hidden', 'secret', 'secret/hidden', 'en']) {
      const list = await reader.listRepositories(viewer('bob'), { search, page: 1, perPage: 50 });
      assert.ok(!list.repositories.some((r) => r.name === 'secret/hidden'), search);
      if (search !== 'en') assert.equal(list.total, 0, search);
    }
    for (const user of ['bob', null]) {
      assert.equal(await reader.repository(viewer(user), 'secret/hidden', { page: 1, perPage: 50 }), undefined);
      assert.equal(await reader.image(viewer(user), 'secret/hidden', 'v1'), undefined);
    }
    // Hidden and missing answer alike, for someone who could see it were it there.
    assert.equal(await reader.repository(viewer('alice'), 'team/nothing', { page: 1, perPage: 50 }), undefined);
    assert.equal(await reader.image(viewer('alice'), 'team/app', 'no-such-tag'), undefined);
    assert.ok(await reader.repository(viewer('alice'), 'secret/hidden', { page: 1, perPage: 50 }));
  });

  test("a CI token's scope limit narrows what its user sees", async () => {
    const reader = fx.reader();
    const limited = viewer('alice', { scopeLimit: [{ type: 'repository', name: 'team/*', actions: ['pull'] }] });
    const list = await reader.listRepositories(limited, { page: 1, perPage: 50 });
    assert.deepEqual(list.repositories.map((r) => r.name), ['team/app', 'team/huge', 'team/multi']);
    assert.equal(await reader.image(limited, 'secret/hidden', 'v1'), undefined);
    const view = await reader.repository(limited, 'team/app', { page: 1, perPage: 50 });
    assert.equal(view?.mayDelete, false, 'the token does not carry delete');
  });

  test('search lists prefix matches first, pages and counts the matches', async () => {
    const reader = fx.reader();
    const list = await reader.listRepositories(viewer('alice'), { search: 'multi', page: 1, perPage: 50 });
    assert.deepEqual(list.repositories.map((r) => r.name), ['team/multi']);
    const paged = await reader.listRepositories(viewer('alice'), { search: 'team', page: 2, perPage: 2 });
    assert.equal(paged.total, 3);
    assert.deepEqual(paged.repositories.map((r) => r.name), ['team/multi']);
    assert.equal(paged.page, 2);
  });

  test('each listed repository has its tag count (fallback tags left out) and last push time', async () => {
    const fromStorage = fx.reader({ events: undefined });
    const list = await fromStorage.listRepositories(viewer('alice'), { search: 'team/app', page: 1, perPage: 50 });
    const app = list.repositories[0]!;
    assert.equal(app.name, 'team/app');
    assert.equal(app.tagCount, appTags.length);
    assert.ok(app.lastPush !== undefined, 'the tag links of the filesystem storage give the time');
    assert.ok(Math.abs(Date.now() - Date.parse(app.lastPush)) < 10 * 60_000, app.lastPush);

    const fromEvents = fx.reader({ storageRoot: undefined });
    const unknown = await fromEvents.listRepositories(viewer('alice'), { search: 'public', page: 1, perPage: 50 });
    assert.equal(unknown.repositories[0]!.lastPush, undefined, 'without storage or events nothing is known');
    fx.gw.gateway.events.emit({ type: 'manifest.pushed', user: 'alice', remote: undefined, repository: 'public/open', tag: 'v2', digest: `sha256:${'0'.repeat(64)}` });
    const seen = await fromEvents.listRepositories(viewer('alice'), { search: 'public', page: 1, perPage: 50 });
    assert.ok(seen.repositories[0]!.lastPush !== undefined, 'a push seen on the event bus');
  });

  test('repository page: tags sorted as versions then names, paged, each with digest, size, created, platform, immutable', async () => {
    const reader = fx.reader();
    const view = await reader.repository(viewer('bob'), 'team/app', { page: 1, perPage: 50 });
    assert.ok(view);
    assert.deepEqual(view.tags.map((t) => t.tag), ['v2.0.0-rc1', '1.10.0', '1.9.0', '1.0.0', 'latest', 'release-1']);
    assert.equal(view.totalTags, 6);
    assert.equal(view.mayDelete, false);
    for (const row of view.tags) {
      assert.equal(row.problem, undefined, row.problem);
      assert.equal(row.digest, fx.app.digest);
      assert.equal(row.mediaType, 'application/vnd.oci.image.manifest.v1+json');
      assert.equal(row.size, fx.app.layerSize);
      assert.equal(row.created, isoCreated);
      assert.deepEqual(row.platforms, [{ platform: 'linux/amd64', digest: fx.app.digest, size: fx.app.layerSize, created: isoCreated }]);
      assert.equal(row.immutable, row.tag === 'release-1');
    }
    const page2 = await reader.repository(viewer('carol'), 'team/app', { page: 2, perPage: 2 });
    assert.deepEqual(page2?.tags.map((t) => t.tag), ['1.9.0', '1.0.0']);
    assert.equal(page2?.mayDelete, true);
  });

  test('a multi-platform index gives one row per platform, attestations left out', async () => {
    const reader = fx.reader();
    const view = await reader.repository(viewer('bob'), 'team/multi', { page: 1, perPage: 50 });
    assert.deepEqual(view?.tags.map((t) => t.tag), ['multi']);
    const row = view!.tags[0]!;
    assert.equal(row.problem, undefined, row.problem);
    assert.equal(row.digest, fx.multi.digest);
    assert.equal(row.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.equal(row.size, undefined);
    const [amd64, arm64] = fx.multi.platforms;
    assert.deepEqual(row.platforms, [
      { platform: 'linux/amd64', digest: amd64!.digest, size: amd64!.layerSize, created: isoCreated },
      { platform: 'linux/arm64/v8', digest: arm64!.digest, size: arm64!.layerSize, created: isoCreated },
    ]);
    const image = await reader.image(viewer('bob'), 'team/multi', 'multi');
    assert.deepEqual(image?.platforms, row.platforms);
    assert.deepEqual(image?.layers, []);
    const child = await reader.image(viewer('bob'), 'team/multi', arm64!.digest);
    assert.equal(child?.config?.architecture, 'arm64');
    assert.equal(child?.config?.variant, 'v8');
  });

  test('image page: pretty manifest, config with labels verbatim (HTML and all), layers, referrers', async () => {
    const reader = fx.reader();
    const view = await reader.image(viewer('bob'), 'team/app', 'release-1');
    assert.ok(view);
    assert.deepEqual(view.problems, []);
    assert.equal(view.tag, 'release-1');
    assert.equal(view.digest, fx.app.digest);
    assert.equal(view.immutable, true);
    assert.equal(view.mayDelete, false);
    assert.equal(JSON.parse(view.manifestJson).mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.match(view.manifestJson, /\n {2}"schemaVersion": 2/);
    assert.equal(view.config?.labels?.title, hostileLabel);
    assert.deepEqual(view.config?.env, ['PATH=/bin', 'MODE=<b>prod</b>']);
    assert.deepEqual(view.config?.entrypoint, ['/bin/app']);
    assert.equal(view.config?.history?.[0]?.createdBy, 'COPY app /bin/app # <img src=x onerror=alert(1)>');
    assert.deepEqual(view.layers.map((l) => l.size), [fx.app.layerSize]);
    assert.equal(view.size, fx.app.layerSize);
    assert.deepEqual(view.referrers.map((r) => [r.digest, r.artifactType, r.annotations?.note]), [[fx.referrerDigest, 'application/vnd.example.sbom.v1+json', '<i>sbom</i>']]);
    const byDigest = await reader.image(viewer('bob'), 'team/app', fx.app.digest);
    assert.equal(byDigest?.tag, undefined);
    assert.equal(byDigest?.digest, fx.app.digest);
    assert.equal(await reader.image(viewer('bob'), 'team/multi', fx.app.digest), undefined, 'a digest of another repository is not found here');
  });

  test('a huge config or manifest is a problem on the page, not a crash', async () => {
    const reader = fx.reader();
    const view = await reader.image(viewer('alice'), 'team/huge', 'big');
    assert.ok(view);
    assert.equal(view.config, undefined);
    assert.match(view.problems.join(' '), /larger than 4 MiB/);
    assert.equal(view.layers.length, 1, 'the manifest is still shown');
    const row = (await reader.repository(viewer('alice'), 'team/huge', { page: 1, perPage: 50 }))!.tags[0]!;
    assert.match(row.problem ?? '', /larger than 4 MiB/);
    assert.ok(row.digest !== undefined && row.size !== undefined);

    const small = fx.reader({ limits: { maxManifestBytes: 256 } });
    const refused = await small.image(viewer('alice'), 'team/app', '1.0.0');
    assert.equal(refused?.manifestJson, '');
    assert.match(refused!.problems.join(' '), /manifest is larger than 256 bytes/);
    const rows = await small.repository(viewer('alice'), 'team/app', { page: 1, perPage: 1 });
    assert.match(rows!.tags[0]!.problem ?? '', /manifest is larger than 256 bytes/);
  });

  test('a registry that is down gives RegistryUnavailable, never another error', async () => {
    const pool = new UpstreamPool([new URL(`http://127.0.0.1:${await freePort()}`)], { logger: pino({ level: 'silent' }), checkIntervalMs: 0 });
    const reader = createBrowseReader({ upstreams: pool, authorizer: fx.rules, logger: pino({ level: 'silent' }) });
    try {
      await assert.rejects(reader.listRepositories(viewer('alice'), { page: 1, perPage: 50 }), RegistryUnavailable);
      await assert.rejects(reader.repository(viewer('alice'), 'team/app', { page: 1, perPage: 50 }), RegistryUnavailable);
      await assert.rejects(reader.image(viewer('alice'), 'team/app', '1.0.0'), RegistryUnavailable);
      // Visibility is decided before the registry is asked: a hidden repository is simply not found.
      assert.equal(await reader.image(viewer('bob'), 'secret/hidden', 'v1'), undefined);
      const outcome = await reader.deleteTag(viewer('alice'), 'team/app', 'latest');
      assert.equal(outcome.ok, false);
      assert.equal(!outcome.ok && outcome.status, 503);
    } finally {
      reader.close();
      pool.close();
    }
  });
});
