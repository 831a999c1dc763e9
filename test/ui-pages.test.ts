// Tests for the web pages on a fake reader: sign-in and sessions, CSRF on every form, headers, escaping, hidden like missing, deletes, tokens, errors.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LoginThrottle } from '../src/auth/throttle.js';
import { pageSecurityPolicy } from '../src/ui/web-context.js';
import { cookieOf, csrfOf, labelText, startPages, type PagesHarness } from './helpers/ui-pages.js';

const session = '__Host-gw-session';

/** Signs in through the form; returns the session cookie (`name=value`). */
async function signIn(pages: PagesHarness, user = 'alice', password = `${user}-password`): Promise<string> {
  const form = await pages.request('GET', '/sign-in');
  const formCookie = cookieOf(form, '__Host-gw-form')!;
  const answer = await pages.request('POST', '/sign-in', { cookie: formCookie, form: { user, password, csrf: csrfOf(form.body), next: '/' } });
  assert.equal(answer.status, 303, answer.body);
  return cookieOf(answer, session)!;
}

describe('web pages', () => {
  let pages: PagesHarness;
  before(async () => {
    pages = await startPages();
  });
  after(async () => {
    await pages?.close();
  });

  it('signs in with the form: a Secure, HttpOnly, SameSite=Strict __Host- cookie, then the header says who', async () => {
    const form = await pages.request('GET', '/sign-in');
    assert.equal(form.status, 200);
    assert.match(form.body, /<label for="user">Username<\/label>/);
    assert.match(form.body, /<label for="password">Password<\/label>/);
    const formCookie = cookieOf(form, '__Host-gw-form')!;
    const answer = await pages.request('POST', '/sign-in', { cookie: formCookie, form: { user: 'alice', password: 'alice-password', csrf: csrfOf(form.body), next: '/r/team/app' } });
    assert.equal(answer.status, 303);
    assert.equal(answer.headers.location, '/r/team/app');
    const line = answer.setCookies.find((entry) => entry.startsWith(`${session}=`)) ?? '';
    assert.match(line, /^__Host-gw-session=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}; Path=\/; Secure; HttpOnly; SameSite=Strict; Max-Age=28800$/);
    const home = await pages.request('GET', '/', { cookie: line.split(';')[0] });
    assert.match(home.body, /Signed in as <strong>alice<\/strong>/);
    assert.match(home.body, /<a href="\/r\/team\/app">team\/app<\/a>/);
  });

  it('refuses a wrong password like the API, never asking the browser for Basic credentials', async () => {
    const form = await pages.request('GET', '/sign-in');
    const answer = await pages.request('POST', '/sign-in', { cookie: cookieOf(form, '__Host-gw-form')!, form: { user: 'alice', password: 'wrong', csrf: csrfOf(form.body) } });
    assert.equal(answer.status, 401);
    assert.equal(answer.headers['www-authenticate'], undefined);
    assert.match(answer.body, /role="alert">Wrong user name or password/);
    assert.equal(cookieOf(answer, session), undefined);
  });

  it('refuses the sign-in form without its cookie and token, or from another site', async () => {
    const form = await pages.request('GET', '/sign-in');
    const cookie = cookieOf(form, '__Host-gw-form')!;
    const good = { user: 'alice', password: 'alice-password', csrf: csrfOf(form.body) };
    assert.equal((await pages.request('POST', '/sign-in', { form: good })).status, 403, 'no form cookie');
    assert.equal((await pages.request('POST', '/sign-in', { cookie, form: { ...good, csrf: 'x' } })).status, 403, 'a wrong token');
    assert.equal((await pages.request('POST', '/sign-in', { cookie, form: good, headers: { origin: 'https://evil.test' } })).status, 403, 'another origin');
    assert.equal((await pages.request('POST', '/sign-in', { cookie, form: good, headers: { 'sec-fetch-site': 'cross-site' } })).status, 403, 'cross-site');
  });

  it('reads a forged, tampered or expired cookie as signed out, and removes it', async () => {
    const cookie = await signIn(pages);
    const value = cookie.slice(session.length + 1);
    const [payload, signature] = value.split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
    const forge = (changes: Record<string, unknown>) => `${session}=${Buffer.from(JSON.stringify({ ...claims, ...changes })).toString('base64url')}.${signature}`;
    for (const bad of [forge({ u: 'bob' }), forge({ l: Date.now() + 3600_000 }), forge({ t: Date.now() - 9 * 3600_000, l: Date.now() }), `${session}=${payload}.${'A'.repeat(43)}`, `${session}=garbage`]) {
      const home = await pages.request('GET', '/', { cookie: bad });
      assert.equal(home.status, 200);
      assert.doesNotMatch(home.body, /Signed in as|team\/app/);
      assert.match(home.body, />Sign in</);
      assert.match(cookieOf(home, session) ?? '', /^__Host-gw-session=$/, 'the cookie is removed');
    }
  });

  it('a session ends at sign-out (its cookie refused afterwards) and when the user is removed', async () => {
    const cookie = await signIn(pages);
    const home = await pages.request('GET', '/', { cookie });
    assert.equal((await pages.request('POST', '/sign-out', { cookie, form: {} })).status, 403, 'sign-out needs the form token');
    const out = await pages.request('POST', '/sign-out', { cookie, form: { csrf: csrfOf(home.body) } });
    assert.equal(out.status, 303);
    assert.equal(out.headers.location, '/');
    assert.match(out.setCookies.at(-1) ?? '', /^__Host-gw-session=; Path=\/; Secure; HttpOnly; SameSite=Strict; Max-Age=0$/);
    assert.doesNotMatch((await pages.request('GET', '/', { cookie })).body, /Signed in as/);

    const bobCookie = await signIn(pages, 'bob');
    assert.match((await pages.request('GET', '/', { cookie: bobCookie })).body, /Signed in as <strong>bob/);
    pages.passwords.users.delete('bob');
    try {
      assert.doesNotMatch((await pages.request('GET', '/', { cookie: bobCookie })).body, /Signed in as/);
    } finally {
      pages.passwords.users.set('bob', 'bob-password');
    }
  });

  it('sends the policy, no-store and no Referer to other sites on every page; the assets revalidate by ETag', async () => {
    const cookie = await signIn(pages);
    for (const target of ['/', '/?q=app&page=2', '/r/team/app', '/r/team/app/-/tags/v1', '/r/team/app/-/tags/v1/delete', '/r/nothing/here', 'signed out: /sign-in', '/tokens', '/r/Bad%20Name']) {
      const signedOut = target.startsWith('signed out: ');
      const answer = await pages.request('GET', target.replace('signed out: ', ''), signedOut ? {} : { cookie });
      assert.equal(answer.headers['content-security-policy'], pageSecurityPolicy, target);
      assert.equal(answer.headers['cache-control'], 'no-store', target);
      assert.equal(answer.headers['referrer-policy'], 'same-origin', target);
      assert.match(String(answer.headers['content-type']), /^text\/html/, target);
      assert.doesNotMatch(answer.body, /<script>|<script(?! src="\/assets\/app\.js" defer><\/script>)/, target);
    }
    for (const [asset, type] of [['/assets/app.css', /^text\/css/], ['/assets/app.js', /^text\/javascript/]] as const) {
      const answer = await pages.request('GET', asset);
      assert.equal(answer.status, 200);
      assert.match(String(answer.headers['content-type']), type);
      assert.equal(answer.headers['cache-control'], 'no-cache');
      assert.equal((await pages.request('GET', asset, { headers: { 'if-none-match': String(answer.headers.etag) } })).status, 304);
    }
  });

  it('shows labels, env and annotations with markup as text', async () => {
    const cookie = await signIn(pages);
    const tag = await pages.request('GET', '/r/team/app/-/tags/v1', { cookie });
    assert.equal(tag.status, 200);
    assert.doesNotMatch(tag.body.replace('<script src="/assets/app.js" defer></script>', ''), /<script/);
    assert.match(tag.body, /<code>&lt;script&gt;alert\(1\)&lt;\/script&gt;<\/code>/);
    assert.match(tag.body, /&quot;note&quot;: &quot;&lt;script&gt;/);
    assert.match(tag.body, /value="docker pull registry\.test\/team\/app:v1"/);
    assert.match(tag.body, /<label for="pull">Pull command<\/label>/);
    const search = await pages.request('GET', `/?q=${encodeURIComponent('"><script>x</script>')}`, { cookie });
    assert.match(search.body, /value="&quot;&gt;&lt;script&gt;x&lt;\/script&gt;"/);
  });

  it('answers a hidden repository exactly like a missing one, on every page', async () => {
    const anonymous = await pages.request('GET', '/');
    assert.match(anonymous.body, /public\/hello/);
    assert.doesNotMatch(anonymous.body, /team\/app/);
    assert.doesNotMatch((await pages.request('GET', '/?q=team')).body, /team\/app/);
    for (const suffix of ['', '/-/tags/v1', `/-/manifests/sha256:${'ab'.repeat(32)}`, '/-/tags/v1/delete']) {
      const hidden = await pages.request('GET', `/r/team/app${suffix}`);
      const missing = await pages.request('GET', `/r/no/such${suffix}`);
      assert.equal(hidden.status, 404, suffix);
      assert.match(hidden.body, /<h1>Not found<\/h1>/);
      assert.equal(hidden.body, missing.body, suffix);
    }
    const post = await pages.request('POST', '/r/team/app/-/tags/v1/delete', { cookie: cookieOf(await pages.request('GET', '/r/public/hello/-/tags/v1/delete'), '__Host-gw-form')!, form: { csrf: '' } });
    assert.equal(post.status, 403, 'a form without its token is refused first');
    for (const target of ['/r/UPPER', `/r/${encodeURIComponent('<script>')}`, '/r/a/-/tags/%ZZ', '/r/a/-/manifests/nope', '/r/a/-/wat/x', '/r/']) {
      const answer = await pages.request('GET', target);
      assert.equal(answer.status, 404, target);
      assert.match(answer.body, /<h1>Not found<\/h1>/);
    }
  });

  it('deletes after a confirmation with the session\'s CSRF token; refusals say why', async () => {
    const cookie = await signIn(pages);
    const confirm = await pages.request('GET', '/r/team/app/-/tags/v1/delete', { cookie });
    assert.match(confirm.body, /<h1>Delete team\/app:v1\?<\/h1>/);
    const csrf = csrfOf(confirm.body);
    assert.equal((await pages.request('POST', '/r/team/app/-/tags/v1/delete', { cookie, form: {} })).status, 403);
    assert.equal((await pages.request('POST', '/r/team/app/-/tags/v1/delete', { cookie, form: { csrf: `${csrf}x` } })).status, 403);
    assert.equal((await pages.request('POST', '/r/team/app/-/tags/v1/delete', { cookie, form: { csrf }, headers: { origin: 'https://evil.test' } })).status, 403);
    assert.deepEqual(pages.reader.deleted, []);
    const done = await pages.request('POST', '/r/team/app/-/tags/v1/delete', { cookie, form: { csrf } });
    assert.equal(done.status, 303);
    assert.equal(done.headers.location, '/r/team/app');
    assert.deepEqual(pages.reader.deleted, ['team/app:v1']);
    const immutable = await pages.request('GET', '/r/team/app/-/tags/release-1/delete', { cookie });
    assert.equal(immutable.status, 403);
    assert.match(immutable.body, /role="alert">The tag is immutable/);
    const refused = await pages.request('POST', '/r/team/app/-/tags/release-1/delete', { cookie, form: { csrf } });
    assert.equal(refused.status, 403);
    assert.match(refused.body, /role="alert">The tag is immutable/);
  });

  it('makes a CI token with patterns and expiry, shown once, listed, and revoked by its owner only', async () => {
    const cookie = await signIn(pages);
    const page = await pages.request('GET', '/tokens', { cookie });
    assert.match(page.body, /<h1>Access tokens<\/h1>/);
    const csrf = csrfOf(page.body);
    const bad = await pages.request('POST', '/tokens', { cookie, form: { csrf, repositories: 'Team/*', actions: 'pull', expires: '7d' } });
    assert.equal(bad.status, 400);
    assert.match(bad.body, /role="alert">&quot;Team\/\*&quot; is not a repository name or pattern/);
    const made = await pages.request('POST', '/tokens', { cookie, form: { csrf, repositories: 'team/* app', actions: ['pull', 'push'], expires: '7d', description: labelText } });
    assert.equal(made.status, 200, made.body);
    const credential = /id="new-token" class="copy" type="text" readonly value="(gwt_([a-z2-7]{12})_[A-Za-z0-9_-]{43})"/.exec(made.body);
    assert.ok(credential, 'the new token is shown');
    const id = credential[2]!;
    const stored = JSON.parse(await readFile(path.join(pages.dir, 'ci-tokens.json'), 'utf8')) as { tokens: { id: string; user: string; scopes: unknown; expiresAt: string }[] };
    const record = stored.tokens.find((token) => token.id === id)!;
    assert.equal(record.user, 'alice');
    assert.deepEqual(record.scopes, [{ type: 'repository', name: 'team/*', actions: ['pull', 'push'] }, { type: 'repository', name: 'app', actions: ['pull', 'push'] }]);
    assert.ok(Math.abs(Date.parse(record.expiresAt) - Date.now() - 7 * 86_400_000) < 60_000);
    const again = await pages.request('GET', '/tokens', { cookie });
    assert.doesNotMatch(again.body, /gwt_/);
    assert.match(again.body, new RegExp(`aria-label="Revoke ${id}"`));
    assert.match(again.body, /&lt;script&gt;/);

    const bob = await signIn(pages, 'bob');
    const bobPage = await pages.request('GET', '/tokens', { cookie: bob });
    assert.doesNotMatch(bobPage.body, new RegExp(id));
    assert.equal((await pages.request('POST', `/tokens/${id}/revoke`, { cookie: bob, form: { csrf: csrfOf(bobPage.body) } })).status, 404, 'not bob\'s');
    assert.equal((await pages.request('POST', `/tokens/${id}/revoke`, { cookie, form: { csrf: csrfOf(bobPage.body) } })).status, 403, 'bob\'s token for alice\'s session');
    const revoked = await pages.request('POST', `/tokens/${id}/revoke`, { cookie, form: { csrf } });
    assert.equal(revoked.status, 303);
    assert.doesNotMatch((await pages.request('GET', '/tokens', { cookie })).body, new RegExp(id));
    assert.equal((await pages.request('GET', '/tokens')).headers.location, '/sign-in?next=%2Ftokens', 'signed out: to the sign-in');
  });

  it('says "Registry unavailable" with 503 when the registry is down, never a stack trace', async () => {
    pages.reader.down = true;
    try {
      for (const target of ['/', '/r/public/hello', '/r/public/hello/-/tags/v1']) {
        const answer = await pages.request('GET', target);
        assert.equal(answer.status, 503, target);
        assert.match(answer.body, /<h1>Registry unavailable<\/h1>/);
        assert.doesNotMatch(answer.body, /at .*\.js:\d+/);
      }
    } finally {
      pages.reader.down = false;
    }
  });

  it('leaves the registry\'s paths to the rest of the gateway', async () => {
    for (const target of ['/v2/', '/token', '/healthz', '/robots.txt']) {
      const answer = await pages.request('GET', target);
      assert.equal(answer.status, 404, target);
      assert.match(answer.body, /NOT_FOUND/, target);
    }
  });
});

describe('web sign-in throttling', () => {
  it('answers 429 with Retry-After once the throttle refuses, as the API does', async () => {
    const pages = await startPages({ throttle: new LoginThrottle({ freeFailures: 1, maxWaiting: 0, baseDelayMs: 0 }) });
    try {
      const attempt = async (password: string) => {
        const form = await pages.request('GET', '/sign-in');
        return pages.request('POST', '/sign-in', { cookie: cookieOf(form, '__Host-gw-form')!, form: { user: 'alice', password, csrf: csrfOf(form.body) } });
      };
      assert.equal((await attempt('wrong-1')).status, 401);
      const throttled = await attempt('wrong-2');
      assert.equal(throttled.status, 429);
      assert.match(String(throttled.headers['retry-after']), /^\d+$/);
      assert.match(throttled.body, /Too many failed sign-ins/);
    } finally {
      await pages.close();
    }
  });
});
