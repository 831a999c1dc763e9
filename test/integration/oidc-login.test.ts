// OIDC sign-in end to end: a real oidc-provider over HTTPS, the gateway's /login pages driven over HTTP, personal access tokens used by skopeo.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { basic, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import { DEFAULT_OIDC_USERS, type RunningOidcProvider } from '../helpers/oidc-provider.js';
import { freePort } from '../helpers/ports.js';
import { runCli } from '../helpers/run-cli.js';
import { csrfPattern, GatewayBrowser, identityProviderTls, signInConfig, signInThroughGateway, startHttpsProvider, tokenPattern } from '../helpers/sign-in.js';
import { skopeoCopy, skopeoLogin } from '../helpers/skopeo.js';

const script = '<script>alert(1)</script>';
const users = [
  ...DEFAULT_OIDC_USERS,
  { username: script, password: 'mallory-password', email: 'mallory@example.test', groups: ['<img src=x onerror=alert(2)>', 'developers'] },
  { username: 'admin', password: 'idp-admin-password', email: 'admin@example.test', groups: ['developers'] },
];

/** developers push app/**, operators (the provider's ops, mapped) pull it. */
const accessRules = `
groups:
  developers: []
  operators: []
rules:
  - groups: [developers]
    repositories: ["app/**"]
    actions: [pull, push]
  - groups: [operators]
    repositories: ["app/**"]
    actions: [pull]
`;

const state = {} as { work: string; provider: RunningOidcProvider; gw: TestGateway; image: TestImage; tokens: string };

/** skopeo login with the token as the password, then a copy to `target` on the gateway. */
async function push(user: string, token: string, target: string): Promise<void> {
  const authFile = path.join(state.work, `auth-${Math.random().toString(36).slice(2)}.json`);
  await skopeoLogin({ host: state.gw.host, user, password: token, certDir: state.gw.certDir, authFile });
  await skopeoCopy({ from: state.image.reference, to: `docker://${state.gw.host}/${target}`, certDir: state.gw.certDir, authFile });
}

async function pull(user: string, token: string, source: string): Promise<void> {
  const authFile = path.join(state.work, `auth-${Math.random().toString(36).slice(2)}.json`);
  await skopeoLogin({ host: state.gw.host, user, password: token, certDir: state.gw.certDir, authFile });
  await skopeoCopy({ from: `docker://${state.gw.host}/${source}`, to: `oci:${path.join(state.work, `pulled-${Math.random().toString(36).slice(2)}`)}:x`, certDir: state.gw.certDir, authFile });
}

const tokenStatus = async (user: string, token: string) =>
  (await request(state.gw, 'GET', '/token?service=registry-gateway&scope=repository:app/web:pull', { headers: { Authorization: basic(user, token) } })).status;

const cookieNamed = (lines: readonly string[], name: string) => lines.find((line) => line.startsWith(`${name}=`) && !/Max-Age=0/.test(line));

describe('OIDC sign-in and personal access tokens', () => {
  before(async () => {
    state.work = await mkdtemp(path.join(os.tmpdir(), 'gateway-oidc-'));
    const tls = await identityProviderTls(state.work);
    const port = await freePort();
    const publicUrl = `https://localhost:${port}`;
    state.provider = await startHttpsProvider(publicUrl, tls, { users });
    const config = await signInConfig(state.work, state.provider, tls.caFile, ['group_map:', '  ops: operators', 'token_ttl: 30d']);
    state.gw = await startTestGateway({ users: { admin: 'admin-password' }, access: accessRules, config, env: { GATEWAY_LISTEN: `127.0.0.1:${port}`, GATEWAY_PUBLIC_URL: publicUrl } });
    state.tokens = path.join(state.gw.dir, 'htpasswd', 'ci-tokens.json');
    state.image = await buildOciImage({ dir: path.join(state.work, 'image'), tag: 'v1', layers: [{ sizeBytes: 32 * 1024 }] });
  });
  after(async () => {
    await state.gw?.close();
    await state.provider?.stop();
    if (state.work) await rm(state.work, { recursive: true, force: true });
  });

  test('a sign-in shows a token once; with it alice pushes where her provider group may, and nowhere else', async () => {
    const { browser, page, token, callback } = await signInThroughGateway(state.gw, state.provider, 'alice', 'alice-password');
    const pending = cookieNamed(browser.setCookies, '__Host-gw-sign-in');
    assert.match(pending ?? '', /; Path=\/; Secure; HttpOnly; SameSite=Lax; Max-Age=600$/);
    assert.match(cookieNamed(browser.setCookies, '__Host-gw-session') ?? '', /^__Host-gw-session=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}; Path=\/; Secure; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    assert.equal(page.headers['cache-control'], 'no-store');
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /style-src 'self'/);
    const style = await browser.get('/login/assets/style.css');
    assert.equal(style.status, 200);
    assert.match(String(style.headers['content-type']), /^text\/css/);
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.doesNotMatch(page.body, /<script(?! src="\/assets\/app\.js")/i, 'no script but the gateway\'s own');
    assert.match(page.body, new RegExp(`docker login ${state.gw.host} -u alice --password-stdin`));

    const code = callback.searchParams.get('code') ?? '';
    assert.ok(code.length > 10 && !state.gw.logLines.some((line) => line.includes(code)), 'never the authorization code in the logs');
    assert.ok(!state.gw.logLines.some((line) => line.includes(token.slice(17))), 'never the token\'s secret in the logs');
    assert.ok(state.gw.logLines.some((line) => line.includes('"path":"/login/callback"') && line.includes('"user":"alice"') && line.includes('"status":200')));

    await push('alice', token, 'app/web:v1');
    await assert.rejects(push('alice', token, 'other/web:v1'), /denied|unauthorized|authentication required/i);
    assert.equal(await tokenStatus('bob', token), 401, 'the token is alice\'s only');

    assert.equal((await browser.get('/login/tokens')).headers.location, '/tokens', 'the old address leads to the tokens page');
    const again = await browser.get('/tokens');
    assert.equal(again.status, 200);
    assert.equal(tokenPattern.exec(again.body), null, 'the secret is shown only once');
    assert.match(again.body, new RegExp(`<code>${token.slice(4, 16)}</code>`));

    const csrf = csrfPattern.exec(again.body)?.[1] ?? '';
    const out = await browser.post('/login/sign-out', { csrf });
    assert.equal(out.status, 200);
    assert.ok(browser.setCookies.at(-1)?.startsWith('__Host-gw-session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0'));
    const signedOut = await browser.get('/tokens');
    assert.equal(signedOut.status, 303, 'signed out');
    assert.equal(signedOut.headers.location, '/sign-in?next=%2Ftokens');
    assert.equal(await tokenStatus('alice', token), 200, 'signing out leaves the token working');
  });

  test('one OIDC sign-in covers the web pages; started from their sign-in page it makes no token', async () => {
    const { browser } = await signInThroughGateway(state.gw, state.provider, 'alice', 'alice-password');
    assert.match((await browser.get('/')).body, /Signed in as <strong>alice<\/strong>/);
    const signInPage = await new GatewayBrowser(state.gw).get('/sign-in');
    assert.match(signInPage.body, /<a href="\/login\?to=ui">Sign in with sso<\/a>/);
    const pages = new GatewayBrowser(state.gw);
    const start = await pages.get('/login?to=ui');
    const tokensBefore = await readFile(state.tokens, 'utf8');
    const callback = await state.provider.signIn(String(start.headers.location), 'bob', 'bob-password');
    const back = await pages.get(`${callback.pathname}${callback.search}`);
    assert.equal(back.status, 303);
    assert.equal(back.headers.location, '/');
    assert.equal(await readFile(state.tokens, 'utf8'), tokensBefore, 'no token was made');
    const home = await pages.get('/');
    assert.match(home.body, /Signed in as <strong>bob<\/strong>/);
    assert.match((await pages.get('/tokens')).body, /<h1>Access tokens<\/h1>/);
  });

  test('bob, whose provider group ops maps to operators, may pull app/ but not push', async () => {
    const { token } = await signInThroughGateway(state.gw, state.provider, 'bob', 'bob-password');
    await pull('bob', token, 'app/web:v1');
    await assert.rejects(push('bob', token, 'app/bob:v1'), /denied|unauthorized|authentication required/i);
  });

  test('revoking on the page needs the form\'s CSRF token and this origin; a revoked token is refused at once', async () => {
    const { browser, page, token } = await signInThroughGateway(state.gw, state.provider, 'alice', 'alice-password');
    const id = token.slice(4, 16);
    const csrf = csrfPattern.exec(page.body)?.[1] ?? '';
    assert.equal(await tokenStatus('alice', token), 200);
    assert.equal((await browser.post('/login/tokens/revoke', { id })).status, 403, 'no CSRF token');
    assert.equal((await browser.post('/login/tokens/revoke', { id, csrf: `${csrf}x` })).status, 403, 'a wrong CSRF token');
    assert.equal((await browser.post('/login/tokens/revoke', { id, csrf }, { origin: 'https://evil.example' })).status, 403, 'another origin');
    assert.equal((await browser.post('/login/tokens/revoke', { id, csrf }, { 'sec-fetch-site': 'cross-site' })).status, 403, 'a cross-site request');
    const stranger = new GatewayBrowser(state.gw);
    assert.equal((await stranger.post('/login/tokens/revoke', { id, csrf })).status, 401, 'no session');
    const bob = await signInThroughGateway(state.gw, state.provider, 'bob', 'bob-password');
    const bobCsrf = csrfPattern.exec(bob.page.body)?.[1] ?? '';
    assert.equal((await bob.browser.post('/login/tokens/revoke', { id, csrf: bobCsrf })).status, 404, 'bob cannot revoke alice\'s token');
    assert.equal(await tokenStatus('alice', token), 200);

    const revoked = await browser.post('/login/tokens/revoke', { id, csrf });
    assert.equal(revoked.status, 303);
    assert.equal(revoked.headers.location, '/tokens');
    assert.equal(await tokenStatus('alice', token), 401);
    assert.doesNotMatch((await browser.get('/tokens')).body, new RegExp(id));
  });

  test('gateway token list shows personal access tokens with their sign-in and groups; gateway token revoke ends them', async () => {
    const { token } = await signInThroughGateway(state.gw, state.provider, 'bob', 'bob-password');
    const id = token.slice(4, 16);
    const listed = await runCli(['token', 'list', '--tokens', state.tokens], { cwd: state.work });
    assert.equal(listed.code, 0, listed.stderr);
    const line = listed.stdout.split('\n').find((entry) => entry.startsWith(id)) ?? '';
    assert.match(line, /^[a-z2-7]{12} {2}bob {2}access rules, groups \[operators\] {2}created \S+ {2}expires \S+ {2}from oidc sign-in "sso"$/);
    assert.equal(await tokenStatus('bob', token), 200);
    const revoked = await runCli(['token', 'revoke', id, '--tokens', state.tokens], { cwd: state.work });
    assert.equal(revoked.code, 0, revoked.stderr);
    await state.gw.gateway.reload();
    assert.equal(await tokenStatus('bob', token), 401);
  });

  test('a replayed callback, a foreign state, a forged cookie and a changed nonce are refused', async () => {
    const browser = new GatewayBrowser(state.gw);
    const start = await browser.get('/login');
    const pendingCookie = browser.cookieHeader();
    const callback = await state.provider.signIn(String(start.headers.location), 'alice', 'alice-password');
    const target = `${callback.pathname}${callback.search}`;
    assert.equal((await browser.get(target)).status, 200);
    const replay = await browser.get(target, { cookie: pendingCookie });
    assert.equal(replay.status, 400);
    assert.match(replay.body, /already completed/);

    const other = new GatewayBrowser(state.gw);
    const otherStart = await other.get('/login');
    const foreign = await state.provider.signIn(String(otherStart.headers.location), 'alice', 'alice-password');
    const fresh = new GatewayBrowser(state.gw);
    await fresh.get('/login');
    const mismatch = await fresh.get(`${foreign.pathname}${foreign.search}`);
    assert.equal(mismatch.status, 400, 'a callback of another browser\'s sign-in');
    assert.match(mismatch.body, /another sign-in/);

    const forged = otherStart.headers['set-cookie']?.[0]?.split(';')[0]?.replace(/\.([A-Za-z0-9_-])/, '.A$1').slice(0, -1) ?? '';
    const forgedAnswer = await other.get(`${foreign.pathname}${foreign.search}`, { cookie: forged });
    assert.equal(forgedAnswer.status, 400);
    assert.match(forgedAnswer.body, /did not make/);

    const nonceBrowser = new GatewayBrowser(state.gw);
    const nonceStart = new URL(String((await nonceBrowser.get('/login')).headers.location));
    nonceStart.searchParams.set('nonce', 'an-attackers-nonce-of-enough-length');
    const nonceCallback = await state.provider.signIn(nonceStart, 'alice', 'alice-password');
    const wrongNonce = await nonceBrowser.get(`${nonceCallback.pathname}${nonceCallback.search}`);
    assert.equal(wrongNonce.status, 400);
    assert.equal(tokenPattern.exec(wrongNonce.body), null);
    assert.ok(state.gw.logLines.some((line) => line.includes('sign-in refused') && /nonce/i.test(line)), 'the log says the nonce was wrong');
  });

  test('gateway config check fetches the provider\'s discovery document', async () => {
    const checked = await runCli(['config', 'check', '--config', path.join(state.gw.dir, 'gateway.yaml')], {
      cwd: state.gw.dir,
      env: { GATEWAY_PUBLIC_URL: `https://${state.gw.host}`, GATEWAY_UPSTREAM: 'http://127.0.0.1:9', GATEWAY_ACCESS: path.join(state.gw.dir, 'access.yml') },
    });
    assert.match(checked.stderr, /ok: provider sso \(oidc\): discovery ok: authorization https:\/\/127\.0\.0\.1:\d+\/auth, token https:\/\/127\.0\.0\.1:\d+\/token, PKCE S256/);
    assert.match(checked.stdout, /type: oidc/);
    assert.doesNotMatch(checked.stdout + checked.stderr, new RegExp(state.provider.clientSecret));
  });

  test('a user who cancels at the provider gets a page naming the provider\'s error', async () => {
    const browser = new GatewayBrowser(state.gw);
    const start = await browser.get('/login');
    const callback = await state.provider.deny(String(start.headers.location));
    assert.equal(callback.searchParams.get('error'), 'access_denied');
    const page = await browser.get(`${callback.pathname}${callback.search}`);
    assert.equal(page.status, 403);
    assert.match(page.body, /access_denied/);
    assert.equal(tokenPattern.exec(page.body), null);
  });

  test('HTML in the user name and groups is shown as text', async () => {
    const { page, token } = await signInThroughGateway(state.gw, state.provider, script, 'mallory-password');
    assert.doesNotMatch(page.body, /<script>|<img/);
    assert.match(page.body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.match(page.body, /&lt;img src=x onerror=alert\(2\)&gt;/);
    assert.equal(await tokenStatus(script, token), 200);
  });

  test('a provider user named like an htpasswd user gets no token', async () => {
    const browser = new GatewayBrowser(state.gw);
    const start = await browser.get('/login');
    const callback = await state.provider.signIn(String(start.headers.location), 'admin', 'idp-admin-password');
    const page = await browser.get(`${callback.pathname}${callback.search}`);
    assert.equal(page.status, 403);
    assert.match(page.body, /belongs to a local user/);
  });

  test('with the provider down a sign-in ends on a 503 page, while tokens and htpasswd users keep working', async () => {
    const { token } = await signInThroughGateway(state.gw, state.provider, 'alice', 'alice-password');
    const browser = new GatewayBrowser(state.gw);
    const start = await browser.get('/login');
    const callback = await state.provider.signIn(String(start.headers.location), 'alice', 'alice-password');
    await state.provider.down();
    try {
      const page = await browser.get(`${callback.pathname}${callback.search}`);
      assert.equal(page.status, 503);
      assert.match(page.body, /cannot be reached/);
      assert.doesNotMatch(page.body, /at .*\.js:\d+/);
      assert.equal(await tokenStatus('alice', token), 200);
      assert.equal(await tokenStatus('admin', 'admin-password'), 200);
    } finally {
      await state.provider.up();
    }
  });
});

describe('OIDC sign-in with a provider that was never reachable', () => {
  let gw: TestGateway;
  let work: string;
  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'gateway-oidc-down-'));
    const tls = await identityProviderTls(work);
    const port = await freePort();
    const closed = await freePort();
    const absent = { issuer: `https://127.0.0.1:${closed}`, clientId: 'registry-gateway', clientSecret: 'secret' } as RunningOidcProvider;
    const config = await signInConfig(work, absent, tls.caFile);
    gw = await startTestGateway({ upstream: 'http://127.0.0.1:9', users: { admin: 'admin-password' }, config, env: { GATEWAY_LISTEN: `127.0.0.1:${port}`, GATEWAY_PUBLIC_URL: `https://localhost:${port}` } });
  });
  after(async () => {
    await gw?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('/login answers 503 with a page, not a stack trace, and sets no cookie', async () => {
    const res = await new GatewayBrowser(gw).get('/login');
    assert.equal(res.status, 503);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    assert.match(res.body, /identity provider cannot be reached/);
    assert.equal(res.headers['set-cookie'], undefined);
    assert.equal(res.headers['retry-after'], '30');
  });
});
