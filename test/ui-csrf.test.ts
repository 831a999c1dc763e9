// Tests for CSRF protection and HTML escaping on the sign-in pages: the token is the session's, Origin and Sec-Fetch-Site must be this site's, text never becomes markup.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { CookieSigner } from '../src/ui/cookies.js';
import { csrfProblem, csrfToken } from '../src/ui/csrf.js';
import { escapeHtml, html } from '../src/ui/html.js';

const origin = 'https://registry.example.com';

describe('CSRF', () => {
  const signer = new CookieSigner(randomBytes(32));
  const session = randomBytes(32).toString('base64url');
  const token = csrfToken(signer, session);

  it('accepts the session\'s token from this origin, with or without the headers browsers add', () => {
    assert.equal(csrfProblem(signer, session, origin, { origin, fetchSite: 'same-origin', token }), undefined);
    assert.equal(csrfProblem(signer, session, origin, { origin: undefined, fetchSite: undefined, token }), undefined);
  });

  it('refuses a missing, changed or other session\'s token', () => {
    const other = csrfToken(signer, randomBytes(32).toString('base64url'));
    for (const [given, reason] of [[undefined, /no CSRF token/], ['', /no CSRF token/], [other, /not this session/], [`${token}x`, /not this session/], [token.slice(1), /not this session/], [['a'], /no CSRF token/]] as const) {
      assert.match(csrfProblem(signer, session, origin, { origin, fetchSite: 'same-origin', token: given }) ?? '', reason);
    }
    assert.notEqual(csrfToken(new CookieSigner(randomBytes(32)), session), token, 'another key, another token');
  });

  it('refuses another origin and a cross-site or same-site fetch, even with the right token', () => {
    assert.match(csrfProblem(signer, session, origin, { origin: 'https://evil.example', fetchSite: undefined, token }) ?? '', /Origin/);
    assert.match(csrfProblem(signer, session, origin, { origin: 'null', fetchSite: undefined, token }) ?? '', /Origin/);
    assert.match(csrfProblem(signer, session, origin, { origin: `${origin}:444`, fetchSite: undefined, token }) ?? '', /Origin/);
    for (const site of ['cross-site', 'same-site', 'none']) assert.match(csrfProblem(signer, session, origin, { origin, fetchSite: site, token }) ?? '', /Sec-Fetch-Site/);
  });
});

describe('html', () => {
  it('escapes every interpolated text, in elements and attributes', () => {
    const name = `<script>alert("x")</script>' onload='x' \``;
    const out = html`<p title="${name}">${name}</p>`.toString();
    assert.equal(out, `<p title="${escapeHtml(name)}">${escapeHtml(name)}</p>`);
    assert.doesNotMatch(out, /<script|"x"|' onload/);
  });

  it('keeps nested markup, joins lists and leaves out undefined, null and false', () => {
    const items = ['<a>', 'b'].map((text) => html`<li>${text}</li>`);
    assert.equal(html`<ul>${items}</ul>${undefined}${null}${false}${0}`.toString(), '<ul><li>&lt;a&gt;</li><li>b</li></ul>0');
  });
});
