// The web pages of a real gateway over HTTPS: sign-in cookie, forged and expired sessions, CSRF, headers, hidden repositories, escaping, tokens, registry down.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CookieSigner, deriveKey } from '../../src/ui/cookies.js';
import { pageSecurityPolicy } from '../../src/ui/web-context.js';
import { basic, fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { ociConfigMediaType, ociManifestMediaType } from '../helpers/oci-image.js';
import { RegistryApi, sha256 } from '../helpers/registry-api.js';
import { GatewayBrowser } from '../helpers/sign-in.js';
import { csrfOf } from '../helpers/ui-pages.js';

const users = { alice: 'alice-password', bob: 'bob-password' };
const access = `
rules:
  - users: [alice]
    repositories: ["**"]
    actions: ["*", catalog]
  - users: [bob]
    repositories: ["team/**"]
    actions: [pull]
  - users: [anonymous, authenticated]
    repositories: ["public/**"]
    actions: [pull]
`;
const script = '<script>alert(1)</script>';
const sessionName = '__Host-gw-session';

const state = {} as { gw: TestGateway; digest: string };

/** Pushes a manifest whose config carries script in a label, annotated with script too. */
async function pushImage(api: RegistryApi, repository: string, tag: string): Promise<string> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Labels: { [script]: script } }, rootfs: { type: 'layers', diff_ids: [] } }));
  const described = await api.uploadBlob(repository, config);
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: ociManifestMediaType, config: { mediaType: ociConfigMediaType, ...described }, layers: [], annotations: { note: script } }));
  const pushed = await api.putManifest(repository, tag, body);
  assert.equal(pushed.status, 201, pushed.body);
  return sha256(body);
}

async function signIn(user: keyof typeof users): Promise<GatewayBrowser> {
  const browser = new GatewayBrowser(state.gw);
  const form = await browser.get('/sign-in');
  const answer = await browser.post('/sign-in', { user, password: users[user], csrf: csrfOf(form.body) });
  assert.equal(answer.status, 303, answer.body);
  return browser;
}

/** A session cookie signed with the gateway's own key, holding what the test says. */
async function forgedSession(claims: Record<string, unknown>): Promise<string> {
  const key = await readFile(path.join(state.gw.dir, 'certs', 'token.key'), 'utf8');
  const signer = new CookieSigner(deriveKey(key, 'sign-in cookies'));
  const value = Buffer.from(JSON.stringify({ v: 1, i: 'A'.repeat(43), u: 'alice', g: [], k: 'password', a: 'htpasswd', ...claims })).toString('base64url');
  return `${sessionName}=${signer.sign(sessionName, value)}`;
}

describe('web pages of a running gateway', () => {
  before(async () => {
    state.gw = await startTestGateway({ users, access });
    const api = new RegistryApi(state.gw, await fetchToken(state.gw, 'alice', users.alice, ['repository:team/app:pull,push', 'repository:secret/db:pull,push', 'repository:public/hello:pull,push']));
    state.digest = await pushImage(api, 'team/app', 'v1');
    await pushImage(api, 'secret/db', 'v1');
    await pushImage(api, 'public/hello', 'latest');
  });
  after(async () => {
    await state.gw?.close();
  });

  test('signing in sets a __Host- session cookie: Secure, HttpOnly, SameSite=Strict, 8 hours', async () => {
    const browser = await signIn('alice');
    const line = browser.setCookies.find((entry) => entry.startsWith(`${sessionName}=`)) ?? '';
    assert.match(line, /^__Host-gw-session=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}; Path=\/; Secure; HttpOnly; SameSite=Strict; Max-Age=28800$/);
    const home = await browser.get('/');
    assert.match(home.body, /Signed in as <strong>alice<\/strong>/);
    assert.match(home.body, /secret\/db/);
    const wrong = await new GatewayBrowser(state.gw).get('/sign-in');
    assert.equal(wrong.status, 200);
  });

  test('a forged, tampered or expired cookie is no session', async () => {
    const now = Date.now();
    const cases = {
      'signed elsewhere': `${sessionName}=${new CookieSigner(Buffer.alloc(32, 7)).sign(sessionName, Buffer.from('{}').toString('base64url'))}`,
      tampered: (await forgedSession({ t: now, l: now })).replace(/^(__Host-gw-session=)./, (_all, name: string) => `${name}x`),
      'idle too long': await forgedSession({ c: 'x', t: now - 3600_000, l: now - 31 * 60_000 }),
      'older than 8 hours': await forgedSession({ c: 'x', t: now - 8 * 3600_000 - 1000, l: now }),
      'a credential that is not alice\'s': await forgedSession({ c: 'not-her-fingerprint', t: now, l: now }),
    };
    for (const [what, cookie] of Object.entries(cases)) {
      const home = await request(state.gw, 'GET', '/', { headers: { cookie } });
      assert.equal(home.status, 200, what);
      assert.doesNotMatch(home.body, /Signed in as|secret\/db|team\/app/, what);
      assert.match(String(home.headers['set-cookie']), /__Host-gw-session=; /, `${what}: the cookie is removed`);
    }
  });

  test('every form is refused without its CSRF token or from another origin (403)', async () => {
    const browser = await signIn('alice');
    const csrf = csrfOf((await browser.get('/tokens')).body);
    const forms: [string, Record<string, string>][] = [
      ['/sign-out', {}],
      ['/tokens', { repositories: 'team/app', actions: 'pull', expires: '1d' }],
      ['/r/team/app/-/tags/v1/delete', {}],
      [`/r/team/app/-/manifests/${state.digest}/delete`, {}],
    ];
    for (const [target, form] of forms) {
      assert.equal((await browser.post(target, form)).status, 403, `${target} without a token`);
      assert.equal((await browser.post(target, { ...form, csrf: `${csrf}x` })).status, 403, `${target} with a wrong token`);
      assert.equal((await browser.post(target, { ...form, csrf }, { origin: 'https://evil.example' })).status, 403, `${target} from another origin`);
    }
    assert.equal((await browser.post('/sign-in', { user: 'alice', password: users.alice })).status, 403, 'sign-in without the form token');
    const api = new RegistryApi(state.gw, await fetchToken(state.gw, 'alice', users.alice, ['repository:team/app:pull']));
    assert.equal(await api.digestOf('team/app', 'v1'), state.digest, 'nothing was deleted');
    assert.match((await browser.get('/')).body, /Signed in as/, 'still signed in');
  });

  test('every page has the policy, no-store and no Referer to other sites', async () => {
    const browser = await signIn('alice');
    for (const target of ['/', '/?q=team', '/r/team/app', '/r/team/app/-/tags/v1', `/r/team/app/-/manifests/${state.digest}`, '/r/team/app/-/tags/v1/delete', '/tokens', '/r/no/such']) {
      const page = await browser.get(target);
      assert.ok([200, 404].includes(page.status), `${target}: ${page.status}`);
      assert.equal(page.headers['content-security-policy'], pageSecurityPolicy, target);
      assert.equal(page.headers['cache-control'], 'no-store', target);
      assert.equal(page.headers['referrer-policy'], 'same-origin', target);
    }
    const signInPage = await request(state.gw, 'GET', '/sign-in');
    assert.equal(signInPage.headers['content-security-policy'], pageSecurityPolicy);
    assert.equal(signInPage.headers['cache-control'], 'no-store');
  });

  test('a repository bob may not pull is absent from the list and search, and its addresses answer like a missing one', async () => {
    const bob = await signIn('bob');
    const list = await bob.get('/');
    assert.match(list.body, />team\/app</);
    assert.doesNotMatch(list.body, /secret/);
    for (const q of ['secret', 'db', 's', 'secret/db']) {
      const found = await bob.get(`/?q=${encodeURIComponent(q)}`);
      assert.doesNotMatch(found.body, /href="\/r\/secret/, q);
      assert.match(found.body, /No repository you may see matches this search|team\/app/, q);
    }
    for (const suffix of ['', '/-/tags/v1', `/-/manifests/${state.digest}`, '/-/tags/v1/delete', `/-/manifests/${state.digest}/delete`]) {
      const hidden = await bob.get(`/r/secret/db${suffix}`);
      const missing = await bob.get(`/r/secret/dc${suffix}`);
      assert.equal(hidden.status, 404, suffix);
      assert.equal(hidden.body, missing.body.replaceAll('secret/dc', 'secret/db'), suffix);
      assert.match(hidden.body, /<h1>Not found<\/h1>/);
    }
    const anonymous = await request(state.gw, 'GET', '/');
    assert.match(anonymous.body, />public\/hello</);
    assert.doesNotMatch(anonymous.body, /team\/app|secret\/db/);
    assert.equal((await request(state.gw, 'GET', '/r/team/app')).status, 404);
  });

  test('labels and annotations with markup are shown as text', async () => {
    const browser = await signIn('alice');
    const page = await browser.get('/r/team/app/-/tags/v1');
    assert.equal(page.status, 200);
    assert.doesNotMatch(page.body, /<script>/);
    assert.match(page.body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.match(page.body, new RegExp(`value="docker pull ${state.gw.host}/team/app:v1"`));
  });

  test('a token made on the page with a pattern gets what the pattern covers, at once', async () => {
    const browser = await signIn('alice');
    const csrf = csrfOf((await browser.get('/tokens')).body);
    const made = await browser.post('/tokens', { csrf, repositories: 'team/*', actions: 'pull', expires: '1d', description: script });
    assert.equal(made.status, 200);
    const token = /value="(gwt_[a-z2-7]{12}_[A-Za-z0-9_-]{43})"/.exec(made.body)?.[1];
    assert.ok(token);
    const granted = async (scope: string) => {
      const res = await request(state.gw, 'GET', `/token?service=registry-gateway&scope=${scope}`, { headers: { Authorization: basic('alice', token) } });
      assert.equal(res.status, 200);
      const claims = JSON.parse(Buffer.from(String(res.json().token).split('.')[1]!, 'base64url').toString('utf8')) as { access: { name: string; actions: string[] }[] };
      return claims.access.flatMap((entry) => entry.actions.map((action) => `${entry.name}:${action}`));
    };
    assert.deepEqual(await granted('repository:team/app:pull,push'), ['team/app:pull']);
    assert.deepEqual(await granted('repository:secret/db:pull'), []);
    assert.deepEqual(await granted('repository:team/app/deeper:pull'), [], 'one level only');
  });

  test('with the registry down the pages say so (503), never a stack trace', async () => {
    const browser = await signIn('alice');
    await state.gw.registry!.stop();
    // The list may come from the catalog snapshot read moments ago; it must still be a page, not a stack trace.
    const list = await browser.get('/');
    assert.ok(list.status === 200 || list.status === 503, String(list.status));
    assert.doesNotMatch(list.body, /at .*\.js:\d+|Error:/);
    for (const target of ['/r/team/app', '/r/team/app/-/tags/v1']) {
      const page = await browser.get(target);
      assert.equal(page.status, 503, target);
      assert.match(page.body, /<h1>Registry unavailable<\/h1>/);
      assert.doesNotMatch(page.body, /at .*\.js:\d+|Error:/);
    }
  });
});

describe('GATEWAY_UI=off', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({ upstream: 'http://127.0.0.1:9', env: { GATEWAY_UI: 'off' } });
  });
  after(async () => {
    await gw?.close();
  });

  test('/ and the pages answer 404 as before; the API is untouched', async () => {
    for (const target of ['/', '/sign-in', '/r/public/hello', '/tokens']) {
      const res = await request(gw, 'GET', target);
      assert.equal(res.status, 404, target);
      assert.match(String(res.headers['content-type']), /^application\/json/, target);
    }
    assert.equal((await request(gw, 'GET', '/v2/')).status, 401);
  });
});
