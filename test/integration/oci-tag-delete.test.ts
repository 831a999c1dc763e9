// Single-tag deletes on registry 2.8 through the gateway: only that tag goes, races end whole, immutable tags stay, deletes by digest keep their meaning.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { fetchToken, request, startTestGateway, type RawResponse, type TestGateway } from '../helpers/gateway.js';
import { RegistryApi, sha256 } from '../helpers/registry-api.js';
import { skopeoLogin } from '../helpers/skopeo.js';
import { throwawayManifest } from '../../src/registry/tag-delete.js';

const run = promisify(execFile);

const access = `
rules:
  - users: [alice]
    repositories: ["alice/**"]
    actions: ["*"]
  - users: [bob]
    repositories: ["alice/**"]
    actions: [pull, push]
immutable_tags:
  - repositories: ["alice/locked"]
    tags: [semver]
`;

describe('single-tag delete (real registry 2.8)', () => {
  let gw: TestGateway;
  let api: RegistryApi;
  let scratch: string;

  before(async () => {
    gw = await startTestGateway({ auth: 'token', users: { alice: 'alice-password', bob: 'bob-password' }, access });
    const token = await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/app:pull,push,delete', 'repository:alice/locked:pull,push,delete', 'repository:alice/skopeo:pull,push,delete', 'repository:alice/nowhere:pull,push,delete']);
    api = new RegistryApi(gw, token);
    scratch = await mkdtemp(path.join(os.tmpdir(), 'oci-tags-'));
  });
  after(async () => {
    await gw?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  const tagsOf = async (name: string): Promise<string[]> => (await request(gw, 'GET', `/v2/${name}/tags/list`, { headers: { Authorization: `Bearer ${api.token}` } })).json().tags;

  test('DELETE of a tag removes only that tag (202); the manifest and its other tags stay', async () => {
    const manifest = await api.makeManifest('alice/app', 'two tags');
    assert.equal((await api.putManifest('alice/app', 'one', manifest.body)).status, 201);
    assert.equal((await api.putManifest('alice/app', 'two', manifest.body)).status, 201);
    const deleted = await api.deleteManifest('alice/app', 'one');
    assert.equal(deleted.status, 202, deleted.body);
    assert.equal(deleted.body, '');
    assert.equal(await api.digestOf('alice/app', 'one'), undefined);
    const gone = await request(gw, 'GET', '/v2/alice/app/manifests/one', { headers: { Authorization: `Bearer ${api.token}` } });
    assert.equal(gone.status, 404);
    assert.equal(gone.json().errors[0].code, 'MANIFEST_UNKNOWN');
    assert.equal(await api.digestOf('alice/app', 'two'), manifest.digest);
    assert.equal(await api.digestOf('alice/app', manifest.digest), manifest.digest);
    const tags = await tagsOf('alice/app');
    assert.ok(tags.includes('two') && !tags.includes('one'), tags.join(','));
  });

  test('a tag that does not exist, also in an unknown repository, is 404 MANIFEST_UNKNOWN, as a GET of it answers', async () => {
    for (const [name, tag] of [['alice/app', 'never-pushed'], ['alice/nowhere', 'latest']] as const) {
      const missing = await api.deleteManifest(name, tag);
      assert.equal(missing.status, 404, name);
      assert.equal(missing.json().errors[0].code, 'MANIFEST_UNKNOWN', name);
      const get = await request(gw, 'GET', `/v2/${name}/manifests/${tag}`, { headers: { Authorization: `Bearer ${api.token}` } });
      assert.equal(get.json().errors[0].code, missing.json().errors[0].code);
    }
  });

  test('a tag delete needs the delete permission', async () => {
    const manifest = await api.makeManifest('alice/app', 'kept');
    assert.equal((await api.putManifest('alice/app', 'kept', manifest.body)).status, 201);
    const bobToken = await fetchToken(gw, 'bob', 'bob-password', ['repository:alice/app:pull,push,delete']);
    const bob = new RegistryApi(gw, bobToken);
    const refused = await bob.deleteManifest('alice/app', 'kept');
    assert.equal(refused.status, 401);
    assert.match(String((refused as RawResponse).headers['www-authenticate']), /scope="repository:alice\/app:delete",error="insufficient_scope"/);
    assert.equal(await api.digestOf('alice/app', 'kept'), manifest.digest);
  });

  test('concurrent deletes of one tag: the tag goes, every answer is 202 or 404, the other tag stays', async () => {
    const manifest = await api.makeManifest('alice/app', 'raced');
    assert.equal((await api.putManifest('alice/app', 'raced', manifest.body)).status, 201);
    assert.equal((await api.putManifest('alice/app', 'survivor', manifest.body)).status, 201);
    const answers = await Promise.all(Array.from({ length: 6 }, () => api.deleteManifest('alice/app', 'raced')));
    assert.ok(answers.every((answer) => answer.status === 202 || answer.status === 404), answers.map((answer) => `${answer.status} ${answer.body}`).join('\n'));
    assert.ok(answers.some((answer) => answer.status === 202));
    assert.equal(await api.digestOf('alice/app', 'raced'), undefined);
    assert.equal(await api.digestOf('alice/app', 'survivor'), manifest.digest);
  });

  test('a push racing a delete of the same tag: the tag ends deleted or naming the pushed manifest, never the old one or a throwaway', async () => {
    const old = await api.makeManifest('alice/app', 'contested old');
    const pushed = await api.makeManifest('alice/app', 'contested new');
    for (let round = 0; round < 12; round++) {
      assert.equal((await api.putManifest('alice/app', 'contested', old.body)).status, 201);
      // The push starts a little later each round, so it lands before, inside and after the delete's steps.
      const stagger = new Promise((resolve) => setTimeout(resolve, round));
      const [deleted, push] = await Promise.all([api.deleteManifest('alice/app', 'contested'), stagger.then(() => api.putManifest('alice/app', 'contested', pushed.body))]);
      assert.equal(deleted.status, 202, deleted.body);
      // Registry 2.8 may fail a push racing an untag of the same tag (500); the client's retry would succeed.
      assert.ok(push.status === 201 || push.status === 500, `${push.status} ${push.body}`);
      const now = await api.digestOf('alice/app', 'contested');
      const listed = (await tagsOf('alice/app')).includes('contested');
      assert.ok(now === undefined || now === pushed.digest, `round ${round}: the tag names ${now}`);
      assert.equal(listed, now !== undefined, `round ${round}: listed exactly when it resolves`);
      if (push.status !== 201) assert.equal(now, undefined);
    }
  });

  test('a throwaway manifest left by a failed delete is deleted when the tag is deleted again', async () => {
    const config = await api.uploadBlob('alice/app', Buffer.from('{}'));
    assert.equal(config.digest, 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
    const leftOver = throwawayManifest('half');
    assert.equal((await api.putManifest('alice/app', 'half', leftOver)).status, 201);
    assert.equal((await api.deleteManifest('alice/app', 'half')).status, 202);
    assert.equal(await api.digestOf('alice/app', 'half'), undefined);
    assert.equal(await api.digestOf('alice/app', sha256(leftOver)), undefined, 'no throwaway is left behind');
  });

  test('an immutable tag still cannot be deleted; a mutable tag in the same repository can', async () => {
    const manifest = await api.makeManifest('alice/locked', 'locked');
    assert.equal((await api.putManifest('alice/locked', '1.0.0', manifest.body)).status, 201);
    assert.equal((await api.putManifest('alice/locked', 'edge', manifest.body)).status, 201);
    const refused = await api.deleteManifest('alice/locked', '1.0.0');
    assert.equal(refused.status, 403);
    assert.equal(refused.json().errors[0].code, 'DENIED');
    assert.equal((await api.deleteManifest('alice/locked', 'edge')).status, 202);
    assert.equal(await api.digestOf('alice/locked', 'edge'), undefined);
    assert.equal(await api.digestOf('alice/locked', '1.0.0'), manifest.digest);
    // By digest it stays refused while the immutable tag names it.
    assert.equal((await api.deleteManifest('alice/locked', manifest.digest)).status, 403);
  });

  test('DELETE by digest keeps its registry meaning: skopeo delete removes every tag on the manifest', async () => {
    const authFile = path.join(scratch, 'auth.json');
    await skopeoLogin({ host: gw.host, user: 'alice', password: 'alice-password', certDir: gw.certDir, authFile });
    const manifest = await api.makeManifest('alice/skopeo', 'deleted by digest');
    for (const tag of ['x1', 'x2', 'x3']) assert.equal((await api.putManifest('alice/skopeo', tag, manifest.body)).status, 201);
    const other = await api.makeManifest('alice/skopeo', 'another');
    assert.equal((await api.putManifest('alice/skopeo', 'other', other.body)).status, 201);
    await run('skopeo', ['delete', '--authfile', authFile, '--cert-dir', gw.certDir, `docker://${gw.host}/alice/skopeo@${manifest.digest}`], { env: { ...process.env, REGISTRY_AUTH_FILE: authFile } });
    for (const tag of ['x1', 'x2', 'x3']) assert.equal(await api.digestOf('alice/skopeo', tag), undefined, tag);
    assert.equal(await api.digestOf('alice/skopeo', manifest.digest), undefined);
    assert.deepEqual(await tagsOf('alice/skopeo'), ['other']);
    // skopeo delete by tag resolves the tag and deletes by digest: that too takes every tag of the manifest.
    assert.equal((await api.putManifest('alice/skopeo', 'y1', other.body)).status, 201);
    await run('skopeo', ['delete', '--authfile', authFile, '--cert-dir', gw.certDir, `docker://${gw.host}/alice/skopeo:other`], { env: { ...process.env, REGISTRY_AUTH_FILE: authFile } });
    assert.equal(await api.digestOf('alice/skopeo', 'y1'), undefined);
  });
});
