// Immutable tags against the real registry: no delete by digest or by tag moves them, and concurrent first pushes leave one winner.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fetchToken, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { RegistryApi } from '../helpers/registry-api.js';

const access = `
rules:
  - users: [authenticated]
    repositories: ["{user}/**"]
    actions: ["*"]
immutable_tags:
  - repositories: ["alice/**"]
    tags: [semver]
`;

describe('immutable tags (real registry)', () => {
  let gw: TestGateway;
  let api: RegistryApi;
  const repo = 'alice/app';

  before(async () => {
    gw = await startTestGateway({ auth: 'token', users: { alice: 'alice-password' }, access });
    const token = await fetchToken(gw, 'alice', 'alice-password', [`repository:${repo}:pull,push,delete`, 'repository:alice/other:pull,push,delete']);
    api = new RegistryApi(gw, token);
  });
  after(() => gw?.close());

  test('a manifest an immutable tag names cannot be deleted by digest; the tag keeps pointing at it', async () => {
    const manifest = await api.makeManifest(repo, 'tagged immutable');
    assert.equal((await api.putManifest(repo, '1.0.0', manifest.body)).status, 201);
    assert.equal((await api.putManifest(repo, 'stable', manifest.body)).status, 201);

    const refused = await api.deleteManifest(repo, manifest.digest);
    assert.equal(refused.status, 403, refused.body);
    const error = refused.json().errors[0];
    assert.equal(error.code, 'DENIED');
    assert.equal(error.message, 'manifest is tagged 1.0.0, an immutable tag; it cannot be deleted');
    assert.equal(await api.digestOf(repo, '1.0.0'), manifest.digest);
    assert.equal(await api.digestOf(repo, 'stable'), manifest.digest, 'mutable tags of that manifest stay too');
    assert.equal(await api.digestOf(repo, manifest.digest), manifest.digest);

    const other = await api.makeManifest(repo, 'would replace it');
    assert.equal((await api.putManifest(repo, '1.0.0', other.body)).status, 403);
    assert.equal(await api.digestOf(repo, '1.0.0'), manifest.digest);
  });

  test('a manifest with only mutable tags, or none, or immutable tags only in another repository, can be deleted', async () => {
    const mutable = await api.makeManifest(repo, 'mutable only');
    assert.equal((await api.putManifest(repo, 'dev', mutable.body)).status, 201);
    const elsewhere = await api.makeManifest('alice/other', 'mutable only');
    assert.equal(elsewhere.digest, mutable.digest);
    assert.equal((await api.putManifest('alice/other', '1.0.0', elsewhere.body)).status, 201);
    const deleted = await api.deleteManifest(repo, mutable.digest);
    assert.equal(deleted.status, 202, deleted.body);
    assert.equal(await api.digestOf(repo, 'dev'), undefined);
    assert.equal(await api.digestOf('alice/other', '1.0.0'), mutable.digest, 'tags are per repository');

    const untagged = await api.makeManifest(repo, 'untagged');
    assert.equal((await api.putManifest(repo, untagged.digest, untagged.body)).status, 201);
    assert.equal((await api.deleteManifest(repo, untagged.digest)).status, 202);
    assert.equal(await api.digestOf(repo, untagged.digest), undefined);
  });

  test('an immutable tag cannot be deleted by tag; a mutable one gets the registry\'s own answer', async () => {
    const manifest = await api.makeManifest(repo, 'delete by tag');
    assert.equal((await api.putManifest(repo, '1.1.0', manifest.body)).status, 201);
    assert.equal((await api.putManifest(repo, 'edge', manifest.body)).status, 201);
    const refused = await api.deleteManifest(repo, '1.1.0');
    assert.equal(refused.status, 403, refused.body);
    assert.equal(refused.json().errors[0].code, 'DENIED');
    assert.match(refused.json().errors[0].message, /tag 1\.1\.0 of alice\/app is immutable; it cannot be deleted/);
    assert.equal(await api.digestOf(repo, '1.1.0'), manifest.digest);
    const mutable = await api.deleteManifest(repo, 'edge');
    assert.notEqual(mutable.status, 403, mutable.body);
  });

  test('four concurrent first pushes of different manifests to one immutable tag: exactly one wins, and the tag names it', async () => {
    for (const tag of ['2.0.0', '2.0.1', '2.0.2']) {
      const manifests = await Promise.all([1, 2, 3, 4].map((i) => api.makeManifest(repo, `${tag} candidate ${i}`)));
      const answers = await Promise.all(manifests.map((manifest) => api.putManifest(repo, tag, manifest.body)));
      const statuses = answers.map((answer) => answer.status);
      assert.deepEqual([...statuses].sort(), [201, 403, 403, 403], `${tag}: ${statuses}`);
      for (const answer of answers.filter((a) => a.status === 403)) assert.equal(answer.json().errors[0].code, 'DENIED');
      const winner = manifests[statuses.indexOf(201)]!;
      assert.equal(await api.digestOf(repo, tag), winner.digest);
      assert.equal((await api.putManifest(repo, tag, winner.body)).status, 201, 'the same manifest may be pushed again');
    }
  });

  test('the lock is released after the registry refuses a push, so the next push of that tag works', async () => {
    const broken = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 2 }, layers: [] }));
    const refused = await api.putManifest(repo, '3.0.0', broken);
    assert.ok(refused.status >= 400 && refused.status < 500 && refused.status !== 403, `${refused.status} ${refused.body}`);
    const manifest = await api.makeManifest(repo, 'after a refused push');
    assert.equal((await api.putManifest(repo, '3.0.0', manifest.body)).status, 201);
    assert.equal(await api.digestOf(repo, '3.0.0'), manifest.digest);
  });
});
