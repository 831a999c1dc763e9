// Access control end to end: rules, CI tokens, anonymous pull, filtered catalog, mounts, immutable tags, removal and reload.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createCiToken, revokeCiToken } from '../../src/auth/ci-tokens.js';
import { addUser, removeUser } from '../../src/auth/htpasswd.js';
import { basic, fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import { skopeoCopy, skopeoInspectDigest, skopeoLogin } from '../helpers/skopeo.js';

const rules = `
groups:
  admins: [admin]
  ci: [ci]
rules:
  - groups: [admins]
    repositories: ["**"]
    actions: ["*", catalog]
  - users: [authenticated]
    repositories: ["{user}/**"]
    actions: ["*"]
  - groups: [ci]
    repositories: ["app/*"]
    actions: [pull, push]
  - effect: deny
    groups: [ci]
    repositories: ["app/secret"]
    actions: [push]
  - users: [anonymous, authenticated]
    repositories: ["public/**"]
    actions: [pull]
immutable_tags:
  - repositories: ["alice/**"]
    tags: ["v*"]
`;

const users = { admin: 'admin-password', alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' };

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let attempt = 0; attempt < 40; attempt++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`${what} did not happen within 2 s`);
}

describe('access control (token mode)', () => {
  let gw: TestGateway;
  let work: string;
  let imageA: TestImage;
  let imageB: TestImage;
  const authFiles = new Map<string, string>();

  const login = async (user: string, password: string) => {
    const authFile = path.join(work, `auth-${user}.json`);
    await skopeoLogin({ host: gw.host, user, password, certDir: gw.certDir, authFile });
    authFiles.set(user, authFile);
  };
  const push = (user: string, image: TestImage, target: string) =>
    skopeoCopy({ from: image.reference, to: `docker://${gw.host}/${target}`, certDir: gw.certDir, authFile: authFiles.get(user) ?? path.join(work, 'auth-nobody.json') });
  const digest = (user: string, target: string) =>
    skopeoInspectDigest({ image: `docker://${gw.host}/${target}`, certDir: gw.certDir, authFile: authFiles.get(user) ?? path.join(work, 'auth-nobody.json') });

  before(async () => {
    gw = await startTestGateway({ auth: 'token', users, access: rules });
    work = await mkdtemp(path.join(os.tmpdir(), 'gateway-access-'));
    imageA = await buildOciImage({ dir: path.join(work, 'a'), tag: 'v1', layers: [{ sizeBytes: 512 * 1024 }] });
    imageB = await buildOciImage({ dir: path.join(work, 'b'), tag: 'v1', layers: [{ sizeBytes: 256 * 1024 }] });
    await writeFile(path.join(work, 'auth-nobody.json'), '{"auths":{}}');
    for (const [user, password] of Object.entries(users)) await login(user, password);
  });
  after(async () => {
    await gw?.close();
    await rm(work, { recursive: true, force: true });
  });

  test('alice pushes to her own namespace but not to bob\'s', async () => {
    await push('alice', imageA, 'alice/app:v1');
    assert.equal(await digest('alice', 'alice/app:v1'), imageA.manifestDigest);
    await assert.rejects(push('alice', imageA, 'bob/app:v1'), /denied|unauthorized|authentication required/i);
    await assert.rejects(digest('bob', 'alice/app:v1'));
  });

  test('anonymous callers pull public images without logging in, and cannot push', async () => {
    await push('admin', imageB, 'public/base:1.0');
    assert.equal(await digest('nobody', 'public/base:1.0'), imageB.manifestDigest);
    await assert.rejects(push('nobody', imageB, 'public/base:2.0'));
    await assert.rejects(digest('nobody', 'alice/app:v1'));
    const anonymousToken = await request(gw, 'GET', '/token?service=registry-gateway&scope=repository:public/base:pull,push&scope=repository:alice/app:pull');
    assert.equal(anonymousToken.status, 200);
    const claims = JSON.parse(Buffer.from(anonymousToken.json().token.split('.')[1], 'base64url').toString());
    assert.equal(claims.sub, '');
    assert.deepEqual(claims.access, [{ type: 'repository', name: 'public/base', actions: ['pull'] }]);
  });

  test('a CI token pushes where its scope and the rules allow, and stops working once revoked', async () => {
    await addUser(gw.htpasswd, 'ci', 'ci-password', 4); // a CI token works only for a user in htpasswd
    const created = await createCiToken(path.join(gw.dir, 'htpasswd', 'ci-tokens.json'), {
      user: 'ci',
      scopes: [
        { type: 'repository', name: 'app/web', actions: ['pull', 'push'] },
        { type: 'repository', name: 'app/secret', actions: ['pull', 'push'] },
      ],
      ttlSeconds: 3600,
    });
    await eventually(async () => (await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic('ci', created.credential) } })).status === 200, 'the new CI token being accepted');
    await login('ci', created.credential);
    await push('ci', imageB, 'app/web:1');
    assert.equal(await digest('ci', 'app/web:1'), imageB.manifestDigest);
    await assert.rejects(push('ci', imageB, 'app/api:1'), 'outside the token scope');
    await assert.rejects(push('ci', imageB, 'app/secret:1'), 'denied by a deny rule');
    await assert.rejects(push('ci', imageB, 'other/x:1'), 'outside the rules');
    const refresh = await request(gw, 'GET', '/token?service=registry-gateway&offline_token=true&client_id=ci', { headers: { Authorization: basic('ci', created.credential) } });
    assert.equal(refresh.json().refresh_token, undefined, 'a CI token is itself the long-lived credential');

    const accessToken = await fetchToken(gw, 'ci', created.credential, ['repository:app/web:pull']);
    assert.equal(await revokeCiToken(path.join(gw.dir, 'htpasswd', 'ci-tokens.json'), created.id), true);
    await eventually(async () => (await request(gw, 'GET', '/v2/app/web/tags/list', { headers: { Authorization: `Bearer ${accessToken}` } })).status === 401, 'an access token of the revoked CI token being refused');
    await assert.rejects(push('ci', imageB, 'app/web:2'));
  });

  test('the catalog shows each user only what they may pull, in full pages of n', async () => {
    for (const target of ['alice/one:1', 'alice/two:1', 'alice/three:1']) await push('alice', imageB, target);
    for (const target of ['bob/x:1', 'bob/y:1']) await push('bob', imageB, target);
    const walk = async (token: string) => {
      const pages: string[][] = [];
      let next: string | undefined = '/v2/_catalog?n=2';
      while (next && pages.length < 20) {
        const res = await request(gw, 'GET', next, { headers: { Authorization: `Bearer ${token}` } });
        assert.equal(res.status, 200, res.body);
        pages.push(res.json().repositories);
        const link = res.headers.link as string | undefined;
        next = link ? /<([^>]+)>/.exec(link)?.[1] : undefined;
      }
      return pages;
    };
    const alicePages = await walk(await fetchToken(gw, 'alice', 'alice-password', ['registry:catalog:*']));
    assert.deepEqual(alicePages.flat(), ['alice/app', 'alice/one', 'alice/three', 'alice/two', 'public/base']);
    assert.deepEqual(alicePages.map((page) => page.length), [2, 2, 1]);
    const bobToken = await fetchToken(gw, 'bob', 'bob-password', ['registry:catalog:*']);
    const bobPages = await walk(bobToken);
    assert.deepEqual(bobPages.flat(), ['bob/x', 'bob/y', 'public/base']);
    // The registry refuses pages over 1000 entries, so a large n must not be passed on as n+1.
    for (const n of [1000, 5000]) {
      const large = await request(gw, 'GET', `/v2/_catalog?n=${n}`, { headers: { Authorization: `Bearer ${bobToken}` } });
      assert.equal(large.status, 200, large.body);
      assert.deepEqual(large.json().repositories, ['bob/x', 'bob/y', 'public/base']);
      assert.equal(large.headers.link, undefined);
    }
    const adminPages = await walk(await fetchToken(gw, 'admin', 'admin-password', ['registry:catalog:*']));
    assert.ok(adminPages.flat().includes('app/web') && adminPages.flat().includes('bob/x') && adminPages.flat().includes('alice/app'));
  });

  test('a cross-repository mount from a repository the caller cannot read does not reveal the blob', async () => {
    const layer = imageA.layerDigests[0]!;
    const bobToken = await fetchToken(gw, 'bob', 'bob-password', ['repository:bob/copy:pull,push', 'repository:alice/app:pull']);
    const leak = await request(gw, 'POST', `/v2/bob/copy/blobs/uploads/?mount=${layer}&from=alice/app`, { headers: { Authorization: `Bearer ${bobToken}` } });
    assert.equal(leak.status, 202, 'a plain upload, not a mount');
    const aliceToken = await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/copy:pull,push', 'repository:alice/app:pull']);
    const mounted = await request(gw, 'POST', `/v2/alice/copy/blobs/uploads/?mount=${layer}&from=alice/app`, { headers: { Authorization: `Bearer ${aliceToken}` } });
    assert.equal(mounted.status, 201, 'the owner can mount');
  });

  test('an immutable tag cannot be moved, but the same manifest may be pushed again and new tags still work', async () => {
    await assert.rejects(push('alice', imageB, 'alice/app:v1'), /denied|immutable/i);
    assert.equal(await digest('alice', 'alice/app:v1'), imageA.manifestDigest);
    await push('alice', imageA, 'alice/app:v1');
    await push('alice', imageB, 'alice/app:v2');
    await push('alice', imageB, 'alice/app:latest');
    await push('alice', imageA, 'alice/app:latest');
    assert.equal(await digest('alice', 'alice/app:latest'), imageA.manifestDigest);
  });

  test('a user removed from htpasswd loses access without a restart, also through tokens already issued and refresh tokens', async () => {
    const offline = await request(gw, 'GET', '/token?service=registry-gateway&offline_token=true&client_id=docker', { headers: { Authorization: basic('carol', 'carol-password') } });
    const refreshToken = offline.json().refresh_token as string;
    const accessToken = await fetchToken(gw, 'carol', 'carol-password', ['repository:carol/app:pull']);
    const tags = () => request(gw, 'GET', '/v2/carol/app/tags/list', { headers: { Authorization: `Bearer ${accessToken}` } });
    const refresh = () =>
      request(gw, 'POST', '/token', { headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: 'docker' }).toString() });
    assert.notEqual((await tags()).status, 401);
    assert.equal((await refresh()).status, 200);
    await removeUser(gw.htpasswd, 'carol');
    await eventually(async () => (await tags()).status === 401, 'the removed user\'s access token being refused');
    assert.equal((await refresh()).status, 401);
  });

  test('failed logins are throttled per user and address; the right password still gets in at once', async () => {
    const attempt = (password: string) => request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic('bob', password) } });
    for (let i = 0; i < 6; i++) assert.equal((await attempt(`guess ${i}`)).status, 401);
    // Past the free failures, parallel guesses are checked one at a time and answered late, not refused.
    const burst = await Promise.all([attempt('guess a'), attempt('guess b'), attempt('guess c')]);
    assert.deepEqual(burst.map((res) => res.status), [401, 401, 401]);
    assert.equal((await attempt('bob-password')).status, 200);
    assert.equal((await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic('alice', 'alice-password') } })).status, 200);
  });

  test('the access file is reloaded on change; a broken edit keeps the last good rules', async () => {
    const bobToken = async () => {
      const res = await request(gw, 'GET', '/token?service=registry-gateway&scope=repository:alice/app:pull', { headers: { Authorization: basic('bob', 'bob-password') } });
      return JSON.parse(Buffer.from(res.json().token.split('.')[1], 'base64url').toString()).access as unknown[];
    };
    assert.deepEqual(await bobToken(), []);
    const file = path.join(gw.dir, 'access.yml');
    assert.equal(await readFile(file, 'utf8'), rules);
    const bobMayPullAliceApp = '  - users: [bob]\n    repositories: ["alice/app"]\n    actions: [pull]\nimmutable_tags:';
    await writeFile(file, rules.replace('immutable_tags:', bobMayPullAliceApp));
    await eventually(async () => (await bobToken()).length === 1, 'the new rule taking effect');
    const marker = gw.logLines.length;
    await writeFile(file, 'rules:\n  - users: [bob]\n    actions: [fly]\n');
    await eventually(async () => gw.logLines.slice(marker).some((line) => line.includes('access file reload failed')), 'the broken file being reported');
    assert.equal((await bobToken()).length, 1, 'the last good rules stay');
  });
});

describe('access control (basic mode)', () => {
  test('rules apply to every request: 403 DENIED for a logged-in user, anonymous pull of public images', async (t) => {
    const gw = await startTestGateway({ auth: 'basic', users, access: rules });
    t.after(() => gw.close());
    const work = await mkdtemp(path.join(os.tmpdir(), 'gateway-access-basic-'));
    t.after(() => rm(work, { recursive: true, force: true }));
    const image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 128 * 1024 }] });
    const authFile = path.join(work, 'auth.json');
    await skopeoLogin({ host: gw.host, user: 'admin', password: 'admin-password', certDir: gw.certDir, authFile });
    await skopeoCopy({ from: image.reference, to: `docker://${gw.host}/public/tool:1`, certDir: gw.certDir, authFile });
    const denied = await request(gw, 'GET', '/v2/public/tool/manifests/1', { headers: { Authorization: basic('bob', 'bob-password'), Accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(denied.status, 200);
    const pushDenied = await request(gw, 'POST', '/v2/public/tool/blobs/uploads/', { headers: { Authorization: basic('bob', 'bob-password') } });
    assert.equal(pushDenied.status, 403);
    assert.equal(pushDenied.json().errors[0].code, 'DENIED');
    const anonymous = await request(gw, 'GET', '/v2/public/tool/manifests/1', { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(anonymous.status, 200);
    const anonymousPrivate = await request(gw, 'GET', '/v2/alice/app/tags/list');
    assert.equal(anonymousPrivate.status, 401);
    assert.match(String(anonymousPrivate.headers['www-authenticate']), /^Basic /);
  });

  test('a broken access file stops the gateway at start with its line and reason', async () => {
    await assert.rejects(startTestGateway({ access: 'rules:\n  - users: [bob]\n    repositories: ["x"]\n    actions: [fly]\n' }), /access\.yml:\d+: .*fly/);
  });
});
