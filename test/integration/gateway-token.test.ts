// Token mode end to end: real registry, real gateway, real skopeo, raw HTTP for the protocol details.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { addUser, removeUser } from '../../src/auth/htpasswd.js';
import { RegistryProcess } from '../../src/registry/registry-process.js';
import { basic, fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import { skopeoCopy, skopeoLogin } from '../helpers/skopeo.js';

const apiVersion = 'registry/2.0';

function assertRegistryError(res: { status: number; headers: Record<string, unknown>; json(): any }, status: number, code: string): void {
  assert.equal(res.status, status);
  assert.equal(res.headers['docker-distribution-api-version'], apiVersion);
  const body = res.json();
  assert.equal(body.errors[0].code, code);
  assert.equal(typeof body.errors[0].message, 'string');
}

describe('token mode', () => {
  let gw: TestGateway;
  let work: string;
  let image: TestImage;

  before(async () => {
    gw = await startTestGateway({ auth: 'token', users: { alice: 'alice-password', bob: 'bob-password' } });
    work = await mkdtemp(path.join(os.tmpdir(), 'gateway-token-'));
    image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 1024 * 1024 }, { sizeBytes: 3 * 1024 * 1024 }] });
  });
  after(async () => {
    await gw?.close();
    await rm(work, { recursive: true, force: true });
  });

  test('GET /v2/ without credentials gets the Bearer challenge that starts docker login', async () => {
    const res = await request(gw, 'GET', '/v2/');
    assertRegistryError(res, 401, 'UNAUTHORIZED');
    assert.equal(res.headers['www-authenticate'], `Bearer realm="https://${gw.host}/token",service="registry-gateway"`);
    assert.match(String(res.headers['strict-transport-security']), /max-age=\d+/);
  });

  test('a repository request without a token names the scope it needs', async () => {
    const res = await request(gw, 'GET', '/v2/team/app/manifests/latest');
    assertRegistryError(res, 401, 'UNAUTHORIZED');
    assert.equal(res.headers['www-authenticate'], `Bearer realm="https://${gw.host}/token",service="registry-gateway",scope="repository:team/app:pull"`);
    const push = await request(gw, 'PUT', '/v2/team/app/manifests/latest');
    assert.match(String(push.headers['www-authenticate']), /scope="repository:team\/app:pull,push"/);
    const del = await request(gw, 'DELETE', '/v2/team/app/manifests/sha256:' + 'a'.repeat(64));
    assert.match(String(del.headers['www-authenticate']), /scope="repository:team\/app:delete"/);
    const catalog = await request(gw, 'GET', '/v2/_catalog');
    assert.match(String(catalog.headers['www-authenticate']), /scope="registry:catalog:\*"/);
  });

  test('a cross-repository mount also asks for pull on the source, and without it becomes a plain upload', async () => {
    const digest = 'sha256:' + 'b'.repeat(64);
    const res = await request(gw, 'POST', `/v2/team/app/blobs/uploads/?mount=${digest}&from=other/secret`);
    assert.match(String(res.headers['www-authenticate']), /scope="repository:team\/app:pull,push repository:other\/secret:pull"/);
    const token = await fetchToken(gw, 'alice', 'alice-password', ['repository:team/app:pull,push']);
    const plain = await request(gw, 'POST', `/v2/team/app/blobs/uploads/?mount=${digest}&from=other/secret`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(plain.status, 202);
    assert.match(String(plain.headers.location), /\/v2\/team\/app\/blobs\/uploads\//);
    const pullOnly = await fetchToken(gw, 'alice', 'alice-password', ['repository:team/app:pull']);
    const denied = await request(gw, 'POST', `/v2/team/app/blobs/uploads/?mount=${digest}&from=other/secret`, { headers: { Authorization: `Bearer ${pullOnly}` } });
    assertRegistryError(denied, 401, 'UNAUTHORIZED');
    assert.match(String(denied.headers['www-authenticate']), /scope="repository:team\/app:pull,push",error="insufficient_scope"/);
  });

  test('GET /token issues a token per the token spec, with a refresh token only when asked', async () => {
    const res = await request(gw, 'GET', '/token?service=registry-gateway&scope=repository:team/app:pull,push&scope=repository:other:pull&client_id=test', {
      headers: { Authorization: basic('alice', 'alice-password') },
    });
    assert.equal(res.status, 200);
    const body = res.json();
    assert.equal(body.token, body.access_token);
    assert.ok(body.expires_in >= 60);
    assert.match(body.issued_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/);
    assert.equal(body.refresh_token, undefined);
    const claims = JSON.parse(Buffer.from(body.token.split('.')[1], 'base64url').toString());
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.aud, 'registry-gateway');
    assert.deepEqual(claims.access, [
      { type: 'repository', name: 'team/app', actions: ['pull', 'push'] },
      { type: 'repository', name: 'other', actions: ['pull'] },
    ]);
    const offline = await request(gw, 'GET', '/token?service=registry-gateway&offline_token=true&client_id=docker', { headers: { Authorization: basic('alice', 'alice-password') } });
    assert.equal(typeof offline.json().refresh_token, 'string');
  });

  test('GET /token refuses a wrong password and an unknown user alike, and anonymous callers', async () => {
    for (const auth of [basic('alice', 'wrong'), basic('mallory', 'alice-password')]) {
      const res = await request(gw, 'GET', '/token?service=registry-gateway&scope=repository:team/app:pull', { headers: { Authorization: auth } });
      assertRegistryError(res, 401, 'UNAUTHORIZED');
    }
    const anonymous = await request(gw, 'GET', '/token?service=registry-gateway&scope=repository:team/app:pull');
    assertRegistryError(anonymous, 401, 'UNAUTHORIZED');
  });

  test('POST /token: password grant, then refresh grant with the same, never rotated, refresh token', async () => {
    const form = (fields: Record<string, string>) => ({
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
    const first = await request(gw, 'POST', '/token', form({ grant_type: 'password', username: 'bob', password: 'bob-password', client_id: 'docker', access_type: 'offline', service: 'registry-gateway', scope: 'repository:bob/app:pull,push' }));
    assert.equal(first.status, 200);
    const refreshToken = first.json().refresh_token as string;
    assert.equal(first.json().scope, 'repository:bob/app:pull,push');
    assert.ok(refreshToken);
    for (let i = 0; i < 2; i++) {
      const again = await request(gw, 'POST', '/token', form({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: 'docker', access_type: 'offline', service: 'registry-gateway', scope: 'repository:bob/app:pull' }));
      assert.equal(again.status, 200);
      assert.equal(again.json().refresh_token, refreshToken);
      const access = again.json().access_token as string;
      const tags = await request(gw, 'GET', '/v2/bob/app/tags/list', { headers: { Authorization: `Bearer ${access}` } });
      assert.notEqual(tags.status, 401);
    }
    // containers/image sends one scope field per scope: each is read, as one space-separated field is.
    const fields = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: 'containers/image', service: 'registry-gateway' });
    fields.append('scope', 'repository:bob/app:pull');
    fields.append('scope', 'repository:bob/other:pull,push');
    const repeated = await request(gw, 'POST', '/token', { headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: fields.toString() });
    assert.equal(repeated.status, 200);
    assert.equal(repeated.json().scope, 'repository:bob/app:pull repository:bob/other:pull,push');
    const missingClient = await request(gw, 'POST', '/token', form({ grant_type: 'password', username: 'bob', password: 'bob-password' }));
    assertRegistryError(missingClient, 400, 'UNSUPPORTED');
    const wrong = await request(gw, 'POST', '/token', form({ grant_type: 'password', username: 'bob', password: 'nope', client_id: 'x' }));
    assertRegistryError(wrong, 401, 'UNAUTHORIZED');
    const forged = await request(gw, 'POST', '/token', form({ grant_type: 'refresh_token', refresh_token: refreshToken.slice(0, -4) + 'AAAA', client_id: 'x' }));
    assertRegistryError(forged, 401, 'UNAUTHORIZED');
  });

  test('a refresh token stops working when the password changes and when the user is removed', async () => {
    await addUser(gw.htpasswd, 'carol', 'carol-password', 5);
    await gw.gateway.reload();
    const refresh = async () => {
      const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: token, client_id: 'docker' }).toString();
      return request(gw, 'POST', '/token', { headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body });
    };
    const issued = await request(gw, 'GET', '/token?service=registry-gateway&offline_token=true&client_id=docker', { headers: { Authorization: basic('carol', 'carol-password') } });
    let token = issued.json().refresh_token as string;
    assert.equal((await refresh()).status, 200);
    await addUser(gw.htpasswd, 'carol', 'new-password', 5);
    await gw.gateway.reload();
    assertRegistryError(await refresh(), 401, 'UNAUTHORIZED');
    const reissued = await request(gw, 'GET', '/token?service=registry-gateway&offline_token=true&client_id=docker', { headers: { Authorization: basic('carol', 'new-password') } });
    token = reissued.json().refresh_token as string;
    assert.equal((await refresh()).status, 200);
    await removeUser(gw.htpasswd, 'carol');
    await gw.gateway.reload();
    assertRegistryError(await refresh(), 401, 'UNAUTHORIZED');
  });

  test('forged, tampered, alg:none and too-narrow tokens are refused with the right challenge error', async () => {
    const good = await fetchToken(gw, 'alice', 'alice-password', ['repository:team/app:pull']);
    const [header, payload, signature] = good.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    claims.access = [{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }];
    const tampered = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
    for (const bad of [tampered, none, 'not-a-token', good.slice(0, -2), 'two words', '"quoted"']) {
      const res = await request(gw, 'PUT', '/v2/team/app/manifests/latest', { headers: { Authorization: `Bearer ${bad}` } });
      assertRegistryError(res, 401, 'UNAUTHORIZED');
      assert.match(String(res.headers['www-authenticate']), /error="invalid_token"/);
    }
    const narrow = await request(gw, 'PUT', '/v2/team/app/manifests/latest', { headers: { Authorization: `Bearer ${good}` } });
    assertRegistryError(narrow, 401, 'UNAUTHORIZED');
    assert.match(String(narrow.headers['www-authenticate']), /scope="repository:team\/app:pull,push",error="insufficient_scope"/);
    const basicInTokenMode = await request(gw, 'GET', '/v2/', { headers: { Authorization: basic('alice', 'alice-password') } });
    assertRegistryError(basicInTokenMode, 401, 'UNAUTHORIZED');
  });

  test('non-canonical paths are refused before any decision, even with a token for everything', async () => {
    const token = await fetchToken(gw, 'alice', 'alice-password', ['repository:team/app:pull,push,delete', 'registry:catalog:*']);
    const auth = { Authorization: `Bearer ${token}` };
    const cases: [string, number, string][] = [
      ['/v2/team%2Fapp/tags/list', 400, 'NAME_INVALID'],
      ['/v2/team/%61pp/tags/list', 400, 'NAME_INVALID'],
      ['/v2/other/../team/app/tags/list', 400, 'NAME_INVALID'],
      ['/v2/./team/app/tags/list', 400, 'NAME_INVALID'],
      ['/v2//team/app/tags/list', 400, 'NAME_INVALID'],
      ['/v2/team//app/tags/list', 400, 'NAME_INVALID'],
      ['/v2/Team/App/tags/list', 400, 'NAME_INVALID'],
      ['/v2/team\\app/tags/list', 400, 'NAME_INVALID'],
      ['/v2/team/app/manifests/bad%2Ftag', 400, 'NAME_INVALID'],
      ['/v2/team/app/blobs/sha256:zz', 400, 'DIGEST_INVALID'],
      ['/v2/team/app/nonsense', 404, 'UNSUPPORTED'],
      ['/v2/' + 'a'.repeat(300) + '/tags/list', 400, 'NAME_INVALID'],
    ];
    for (const [target, status, code] of cases) {
      const res = await request(gw, 'GET', target, { headers: auth });
      assert.equal(res.status, status, target);
      assertRegistryError(res, status, code);
    }
    const options = await request(gw, 'OPTIONS', '/v2/team/app/tags/list', { headers: auth });
    assertRegistryError(options, 405, 'UNSUPPORTED');
    // A reference the registry's router does not match: its 404, as a JSON error, once the caller may pull the name.
    for (const reference of ['-bad', 'bad%00tag']) {
      const unrouted = await request(gw, 'GET', `/v2/team/app/manifests/${reference}`, { headers: auth });
      assertRegistryError(unrouted, 404, 'MANIFEST_UNKNOWN');
    }
    // The registry is sent application/octet-stream for uploads, so a form body never becomes a mount.
    const form = await request(gw, 'POST', '/v2/team/app/blobs/uploads/', { headers: { ...auth, 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'from=other/secret&mount=sha256:' + 'c'.repeat(64) });
    assert.equal(form.status, 202);
    const huge = await request(gw, 'GET', '/v2/', { headers: { ...auth, 'X-Padding': 'x'.repeat(32 * 1024) } });
    assert.equal(huge.status, 431);
    const elsewhere = await request(gw, 'GET', '/../../etc/passwd');
    assert.equal(elsewhere.status, 404);
    assert.equal(elsewhere.json().errors[0].code, 'UNSUPPORTED');
  });

  test('upload locations point at the public https origin, whatever forwarding headers a client sends', async () => {
    const token = await fetchToken(gw, 'alice', 'alice-password', ['repository:team/app:pull,push']);
    const res = await request(gw, 'POST', '/v2/team/app/blobs/uploads/', {
      headers: { Authorization: `Bearer ${token}`, 'X-Forwarded-Host': 'evil.example', 'X-Forwarded-Proto': 'http', Forwarded: 'host=evil.example;proto=http' },
    });
    assert.equal(res.status, 202);
    assert.ok(String(res.headers.location).startsWith(`https://${gw.host}/v2/team/app/blobs/uploads/`), String(res.headers.location));
  });

  test('skopeo logs in, pushes an image and pulls it back with identical digests', async () => {
    const authFile = path.join(work, 'auth.json');
    await skopeoLogin({ host: gw.host, user: 'alice', password: 'alice-password', certDir: gw.certDir, authFile });
    await assert.rejects(skopeoLogin({ host: gw.host, user: 'alice', password: 'wrong', certDir: gw.certDir, authFile: path.join(work, 'auth-wrong.json') }));
    await skopeoCopy({ from: image.reference, to: `docker://${gw.host}/team/app:v1`, certDir: gw.certDir, authFile });
    const out = path.join(work, 'pulled');
    await skopeoCopy({ from: `docker://${gw.host}/team/app:v1`, to: `dir:${out}`, certDir: gw.certDir, authFile });
    const manifest = await readFile(path.join(out, 'manifest.json'));
    assert.equal(`sha256:${createHash('sha256').update(manifest).digest('hex')}`, image.manifestDigest);
    for (const digest of image.layerDigests) {
      const layer = await readFile(path.join(out, digest.slice('sha256:'.length)));
      assert.equal(`sha256:${createHash('sha256').update(layer).digest('hex')}`, digest);
    }
  });

  test('the access log has one line per request with user, status and bytes, and never a secret', async () => {
    const token = await fetchToken(gw, 'alice', 'alice-password', ['repository:team/app:pull']);
    await request(gw, 'GET', '/v2/team/app/tags/list', { headers: { Authorization: `Bearer ${token}` } });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const requests = gw.logLines.map((line) => JSON.parse(line)).filter((entry) => entry.msg === 'request');
    const tagsLine = requests.findLast((entry) => entry.path === '/v2/team/app/tags/list');
    assert.ok(tagsLine);
    assert.equal(tagsLine.user, 'alice');
    assert.equal(tagsLine.method, 'GET');
    assert.equal(tagsLine.status, 200);
    assert.ok(tagsLine.bytes > 0);
    assert.equal(typeof tagsLine.duration_ms, 'number');
    const pushLine = requests.find((entry) => entry.method === 'PUT' && entry.path === '/v2/team/app/manifests/v1');
    assert.ok(pushLine, 'the skopeo push was logged');
    // A failed login is logged with the name tried and the reason, and without the password tried.
    assert.equal((await request(gw, 'GET', '/token', { headers: { Authorization: basic('alice', 'wrong-guess-1234') } })).status, 401);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const failed = gw.logLines.map((line) => JSON.parse(line)).findLast((entry) => entry.msg === 'request' && entry.status === 401 && entry.path === '/token');
    assert.equal(failed.user, 'alice');
    assert.equal(failed.reason, 'wrong password');
    const everything = gw.logLines.join('\n');
    for (const secret of ['alice-password', 'bob-password', 'wrong-guess-1234', Buffer.from('alice:wrong-guess-1234').toString('base64'), token.split('.')[2]!, Buffer.from('alice:alice-password').toString('base64')]) {
      assert.ok(!everything.includes(secret), 'a secret reached the log');
    }
  });

  test('/healthz and /readyz answer', async () => {
    assert.equal((await request(gw, 'GET', '/healthz')).status, 200);
    assert.equal((await request(gw, 'GET', '/readyz')).status, 200);
  });
});

describe('upstream failures', () => {
  test('upstream down gives 503 in registry format, and the gateway recovers by itself', async (t) => {
    const holder = await startTestGateway({ auth: 'token' });
    t.after(() => holder.close());
    const registry = holder.registry!;
    const port = Number(new URL(registry.url).port);
    const token = await fetchToken(holder, 'alice', 'alice-password', ['repository:team/app:pull']);
    const auth = { Authorization: `Bearer ${token}` };
    assert.equal((await request(holder, 'GET', '/v2/team/app/tags/list', { headers: auth })).status, 404);
    await registry.stop();
    const down = await request(holder, 'GET', '/v2/team/app/tags/list', { headers: auth });
    assertRegistryError(down, 503, 'UNAVAILABLE');
    assert.equal((await request(holder, 'GET', '/readyz')).status, 503);
    assert.equal((await request(holder, 'GET', '/healthz')).status, 200);
    const { pino } = await import('pino');
    const revived = new RegistryProcess({ binary: '/usr/bin/docker-registry', dataDir: path.join(holder.dir, 'registry-data'), port, logger: pino({ level: 'silent' }) });
    await revived.start();
    t.after(() => revived.stop());
    const back = await request(holder, 'GET', '/v2/team/app/tags/list', { headers: auth });
    assert.equal(back.status, 404);
    assert.equal(back.json().errors[0].code, 'NAME_UNKNOWN');
    assert.equal((await request(holder, 'GET', '/readyz')).status, 200);
  });
});
