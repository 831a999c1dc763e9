// Basic mode end to end: htpasswd checked on every request (with a short cache), real registry and skopeo.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { addUser, removeUser } from '../../src/auth/htpasswd.js';
import { basic, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import { skopeoCopy, skopeoInspectDigest, skopeoLogin } from '../helpers/skopeo.js';

describe('basic mode', () => {
  let gw: TestGateway;
  let work: string;
  let image: TestImage;

  before(async () => {
    gw = await startTestGateway({ auth: 'basic', users: { alice: 'alice-password', bob: 'bob-password' } });
    work = await mkdtemp(path.join(os.tmpdir(), 'gateway-basic-'));
    image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 2 * 1024 * 1024 }, { sizeBytes: 512 * 1024 }] });
  });
  after(async () => {
    await gw?.close();
    await rm(work, { recursive: true, force: true });
  });

  test('no credentials get the Basic challenge in registry format', async () => {
    const res = await request(gw, 'GET', '/v2/');
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], `Basic realm="https://${gw.host}",charset="UTF-8"`);
    assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.equal(res.json().errors[0].code, 'UNAUTHORIZED');
  });

  test('right password passes, wrong password and unknown user are refused alike', async () => {
    assert.equal((await request(gw, 'GET', '/v2/', { headers: { Authorization: basic('alice', 'alice-password') } })).status, 200);
    for (const auth of [basic('alice', 'nope'), basic('nobody', 'alice-password'), 'Basic !!!', 'Digest x']) {
      const res = await request(gw, 'GET', '/v2/', { headers: { Authorization: auth } });
      assert.equal(res.status, 401, auth);
      assert.equal(res.json().errors[0].code, 'UNAUTHORIZED');
      assert.match(String(res.headers['www-authenticate']), /^Basic realm=/, `every 401 carries the challenge (${auth})`);
    }
  });

  test('there is no token service in basic mode', async () => {
    const res = await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic('alice', 'alice-password') } });
    assert.equal(res.status, 404);
  });

  test('skopeo pushes and pulls back the same image', async () => {
    const authFile = path.join(work, 'auth.json');
    await skopeoLogin({ host: gw.host, user: 'alice', password: 'alice-password', certDir: gw.certDir, authFile });
    await assert.rejects(skopeoLogin({ host: gw.host, user: 'alice', password: 'wrong', certDir: gw.certDir, authFile: path.join(work, 'wrong.json') }));
    await skopeoCopy({ from: image.reference, to: `docker://${gw.host}/alice/app:v1`, certDir: gw.certDir, authFile });
    const digest = await skopeoInspectDigest({ image: `docker://${gw.host}/alice/app:v1`, certDir: gw.certDir, authFile });
    assert.equal(digest, image.manifestDigest);
    const out = path.join(work, 'pulled');
    await skopeoCopy({ from: `docker://${gw.host}/alice/app:v1`, to: `oci:${out}:v1`, certDir: gw.certDir, authFile });
    const pulled = await skopeoInspectDigest({ image: `oci:${out}:v1`, certDir: gw.certDir, authFile });
    assert.equal(pulled, image.manifestDigest);
  });

  test('a remembered password check ends the moment the password changes or the user is removed', async () => {
    const auth = { Authorization: basic('bob', 'bob-password') };
    assert.equal((await request(gw, 'GET', '/v2/', { headers: auth })).status, 200);
    assert.equal((await request(gw, 'GET', '/v2/', { headers: auth })).status, 200);
    await addUser(gw.htpasswd, 'bob', 'changed-password', 5);
    await gw.gateway.reload();
    assert.equal((await request(gw, 'GET', '/v2/', { headers: auth })).status, 401);
    assert.equal((await request(gw, 'GET', '/v2/', { headers: { Authorization: basic('bob', 'changed-password') } })).status, 200);
    await removeUser(gw.htpasswd, 'bob');
    await gw.gateway.reload();
    assert.equal((await request(gw, 'GET', '/v2/', { headers: { Authorization: basic('bob', 'changed-password') } })).status, 401);
  });

  test('the htpasswd file is watched: a user added with the CLI library works without a reload call', async () => {
    await addUser(gw.htpasswd, 'dave', 'dave-password', 5);
    const auth = { Authorization: basic('dave', 'dave-password') };
    let status = 0;
    for (let attempt = 0; attempt < 40 && status !== 200; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      status = (await request(gw, 'GET', '/v2/', { headers: auth })).status;
    }
    assert.equal(status, 200);
  });
});
