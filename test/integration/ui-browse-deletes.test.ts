// Deletes through the web UI's browse reader against a real registry 2.8: the API's checks (grant, immutable tags, maintenance), the same registry work, the same events.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { GatewayEvent } from '../../src/ops/events.js';
import { startBrowseFixture, viewer, type BrowseFixture } from '../helpers/browse-fixture.js';

describe('browse reader deletes on registry 2.8', () => {
  let fx: BrowseFixture;
  const seen: GatewayEvent[] = [];
  before(async () => {
    fx = await startBrowseFixture();
    fx.gw.gateway.events.on((event) => {
      if (event.type === 'manifest.deleted' || event.type === 'access.denied') seen.push(event);
    });
  });
  after(() => fx?.close());

  const tagsOf = async (repository: string) => (await fx.reader().repository(viewer('alice'), repository, { page: 1, perPage: 100 }))?.tags.map((t) => t.tag);

  test('without the delete grant: refused with the reason, or not found when the repository is hidden; nothing deleted, the denial told', async () => {
    const reader = fx.reader();
    seen.length = 0;
    assert.deepEqual(await reader.deleteTag(viewer('bob'), 'team/app', 'latest'), { ok: false, status: 403, reason: 'You may not delete in team/app.' });
    assert.deepEqual(await reader.deleteManifest(viewer('bob'), 'team/app', fx.app.digest), { ok: false, status: 403, reason: 'You may not delete in team/app.' });
    assert.deepEqual(await reader.deleteTag(viewer('bob'), 'secret/hidden', 'v1'), { ok: false, status: 404, reason: 'Not found.' });
    assert.deepEqual(await reader.deleteTag(viewer(null), 'public/open', 'v1'), { ok: false, status: 403, reason: 'You may not delete in public/open.' });
    assert.deepEqual(await reader.deleteTag(viewer(null), 'team/app', 'v1'), { ok: false, status: 404, reason: 'Not found.' });
    const scoped = viewer('alice', { scopeLimit: [{ type: 'repository', name: 'team/app', actions: ['pull'] }] });
    assert.equal((await reader.deleteTag(scoped, 'team/app', 'latest')).ok, false, "a CI token's scope limit applies");
    assert.ok((await tagsOf('team/app'))?.includes('latest'));
    assert.ok((await tagsOf('secret/hidden'))?.includes('v1'));
    const denied = seen.filter((event) => event.type === 'access.denied');
    assert.equal(denied.length, 6);
    assert.deepEqual(denied[0], {
      type: 'access.denied', user: 'bob', remote: '127.0.0.1', method: 'DELETE', route: 'manifest', repository: 'team/app',
      denied: [{ action: 'delete', repository: 'team/app', rule: (denied[0] as { denied: { rule: string }[] }).denied[0]!.rule }],
    });
    assert.equal(seen.filter((event) => event.type === 'manifest.deleted').length, 0);
  });

  test('immutable tags: the tag is refused, and so is the manifest it names', async () => {
    const reader = fx.reader();
    const tag = await reader.deleteTag(viewer('carol'), 'team/app', 'release-1');
    assert.equal(tag.ok, false);
    assert.equal(!tag.ok && tag.status, 403);
    assert.match(!tag.ok ? tag.reason : '', /^The tag is immutable/);
    const manifest = await reader.deleteManifest(viewer('carol'), 'team/app', fx.app.digest);
    assert.equal(!manifest.ok && manifest.status, 403);
    assert.match(!manifest.ok ? manifest.reason : '', /release-1, an immutable tag; it cannot be deleted/);
    assert.ok((await tagsOf('team/app'))?.includes('release-1'));
  });

  test('read-only maintenance refuses deletes', async () => {
    const reader = fx.reader();
    fx.maintenance.on = true;
    try {
      const outcome = await reader.deleteTag(viewer('carol'), 'team/app', 'latest');
      assert.equal(!outcome.ok && outcome.status, 503);
      assert.match(!outcome.ok ? outcome.reason : '', /read-only maintenance/);
    } finally {
      fx.maintenance.on = false;
    }
    assert.ok((await tagsOf('team/app'))?.includes('latest'));
  });

  test('a tag delete removes that tag only, tells the audit trail who did it, and a second delete finds nothing', async () => {
    const reader = fx.reader();
    seen.length = 0;
    const counted = await reader.listRepositories(viewer('carol'), { search: 'team/app', page: 1, perPage: 10 });
    assert.equal(counted.repositories[0]?.tagCount, 6);
    assert.deepEqual(await reader.deleteTag(viewer('carol'), 'team/app', 'latest'), { ok: true });
    assert.deepEqual(await tagsOf('team/app'), ['v2.0.0-rc1', '1.10.0', '1.9.0', '1.0.0', 'release-1']);
    assert.deepEqual(seen, [{ type: 'manifest.deleted', user: 'carol', remote: '127.0.0.1', repository: 'team/app', reference: 'latest' }]);
    const recounted = await reader.listRepositories(viewer('carol'), { search: 'team/app', page: 1, perPage: 10 });
    assert.equal(recounted.repositories[0]?.tagCount, 5, 'the tag count is read again after a delete');
    assert.deepEqual(await reader.deleteTag(viewer('carol'), 'team/app', 'latest'), { ok: false, status: 404, reason: 'Not found.' });
    assert.deepEqual(await reader.deleteTag(viewer('carol'), 'team/app', '../../x'), { ok: false, status: 404, reason: 'Not found.' });
  });

  test('a manifest delete by digest removes the index and its tag; the image is then not found', async () => {
    const reader = fx.reader();
    seen.length = 0;
    assert.ok(await reader.image(viewer('carol'), 'team/multi', fx.multi.digest));
    assert.deepEqual(await reader.deleteManifest(viewer('carol'), 'team/multi', fx.multi.digest), { ok: true });
    assert.equal(await reader.image(viewer('carol'), 'team/multi', fx.multi.digest), undefined, 'not served from the cache once gone');
    assert.equal(await reader.image(viewer('carol'), 'team/multi', 'multi'), undefined);
    assert.deepEqual(seen, [{ type: 'manifest.deleted', user: 'carol', remote: '127.0.0.1', repository: 'team/multi', reference: fx.multi.digest }]);
    assert.deepEqual(await reader.deleteManifest(viewer('carol'), 'team/multi', fx.multi.digest), { ok: false, status: 404, reason: 'Not found.' });
  });

  test('deleting a referrer takes it off its subject\'s referrers', async () => {
    const reader = fx.reader();
    const before = await reader.image(viewer('alice'), 'team/app', fx.app.digest);
    assert.deepEqual(before?.referrers.map((r) => r.digest), [fx.referrerDigest]);
    assert.deepEqual(await reader.deleteManifest(viewer('alice'), 'team/app', fx.referrerDigest), { ok: true });
    const afterDelete = await reader.image(viewer('alice'), 'team/app', fx.app.digest);
    assert.deepEqual(afterDelete?.referrers, []);
  });
});
