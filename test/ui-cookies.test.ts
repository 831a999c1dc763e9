// Tests for the sign-in cookies: HMAC signing bound to the cookie name, Cookie header reading, Set-Cookie attributes, self-contained sessions with idle and absolute expiry and sign-out, single-use sign-in state.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { clearCookie, CookieSigner, deriveKey, readCookies, setCookie } from '../src/ui/cookies.js';
import { PendingSignIns, pendingCookieName } from '../src/ui/pending-sign-in.js';
import { SessionCookies, SessionTooLarge, sessionCookieName, type SessionData } from '../src/ui/session.js';

const signer = () => new CookieSigner(randomBytes(32));
/** The cookie pair of a Set-Cookie value, as a browser sends it back. */
const pair = (setCookieValue: string) => setCookieValue.split(';')[0]!;

describe('CookieSigner', () => {
  it('verifies what it signed, for the same cookie name only', () => {
    const s = signer();
    const signed = s.sign('a', 'c2Vzc2lvbg');
    assert.equal(s.verify('a', signed), 'c2Vzc2lvbg');
    assert.equal(s.verify('b', signed), undefined, 'a value signed for one cookie is not good for another');
    assert.equal(new CookieSigner(randomBytes(32)).verify('a', signed), undefined, 'another key');
  });

  it('refuses changed values and signatures, missing parts and junk', () => {
    const s = signer();
    const signed = s.sign('a', 'value1');
    const [value, signature] = signed.split('.') as [string, string];
    const flipped = `${signature.slice(0, 10)}${signature[10] === 'A' ? 'B' : 'A'}${signature.slice(11)}`;
    for (const bad of [`value2.${signature}`, `${value}.${flipped}`, value, `.${signature}`, `${value}.`, `${signed}x`, `${value}..${signature}`, '', 'a.b.c', `${value}.${'A'.repeat(43)}`]) {
      assert.equal(s.verify('a', bad), undefined, bad);
    }
    assert.equal(s.verify('a', undefined), undefined);
  });

  it('signs base64url values only and needs a key of 32 bytes', () => {
    const s = signer();
    for (const bad of ['', 'a;b', 'a b', 'a.b', 'x'.repeat(4097)]) assert.throws(() => s.sign('a', bad), /base64url/);
    assert.throws(() => new CookieSigner(randomBytes(31)), /32 bytes/);
  });

  it('derives one key per secret and purpose', () => {
    assert.deepEqual(deriveKey('secret', 'cookies'), deriveKey('secret', 'cookies'));
    assert.notDeepEqual(deriveKey('secret', 'cookies'), deriveKey('secret', 'other'));
    assert.notDeepEqual(deriveKey('secret', 'cookies'), deriveKey('secret2', 'cookies'));
    assert.equal(deriveKey('secret', 'cookies').length, 32);
  });
});

describe('cookie headers', () => {
  it('reads name=value pairs and drops a name sent twice (a planted cookie)', () => {
    const cookies = readCookies('a=1; b=2;c=3 ; a=4; =5; d');
    assert.equal(cookies.get('b'), '2');
    assert.equal(cookies.get('c'), '3');
    assert.equal(cookies.has('a'), false);
    assert.equal(readCookies(undefined).size, 0);
    assert.equal(readCookies(`a=${'x'.repeat(20_000)}`).size, 0);
  });

  it('always sets Path=/, Secure and HttpOnly with the given SameSite, and clears with Max-Age=0', () => {
    assert.equal(setCookie('__Host-x', 'v', { sameSite: 'Strict', maxAgeSeconds: 60 }), '__Host-x=v; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=60');
    assert.equal(setCookie('__Host-x', 'v', { sameSite: 'Lax' }), '__Host-x=v; Path=/; Secure; HttpOnly; SameSite=Lax');
    assert.equal(clearCookie('__Host-x', 'Lax'), '__Host-x=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0');
  });
});

describe('SessionCookies', () => {
  const clock = () => {
    const time = { now: 1_000_000 };
    return { time, now: () => time.now };
  };
  const alice: SessionData = { user: 'alice', groups: ['dev'], kind: 'password', authenticator: 'htpasswd', credential: 'fingerprint' };
  /** The cookie's value with one character of its payload changed, signature kept. */
  const tampered = (cookie: string) => {
    const value = pair(cookie).slice(sessionCookieName.length + 1);
    const changed = `${value[0] === 'A' ? 'B' : 'A'}${value.slice(1)}`;
    return `${sessionCookieName}=${changed}`;
  };

  it('reads the session its signed cookie carries; a forged, tampered or other key\'s cookie is no session', () => {
    const s = signer();
    const sessions = new SessionCookies({ signer: s });
    const { session, cookie } = sessions.create(alice);
    assert.match(cookie, new RegExp(`^${sessionCookieName}=[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{43}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=28800$`));
    assert.match(session.id, /^[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(sessions.read(pair(cookie))?.session.data, alice);
    assert.equal(new SessionCookies({ signer: s }).read(pair(cookie))?.session.id, session.id, 'another process with the same key reads it too');
    assert.equal(sessions.read(`${sessionCookieName}=${session.id}`), undefined, 'an unsigned id');
    assert.equal(sessions.read(tampered(cookie)), undefined, 'a changed payload');
    const forged = Buffer.from(JSON.stringify({ v: 1, i: session.id, u: 'admin', g: [], k: 'password', a: 'htpasswd', c: 'x', t: Date.now(), l: Date.now() })).toString('base64url');
    assert.equal(sessions.read(`${sessionCookieName}=${signer().sign(sessionCookieName, forged)}`), undefined, 'signed with another key');
    assert.equal(sessions.read(`${sessionCookieName}=${s.sign('__Host-gw-sign-in', forged)}`), undefined, 'signed for another cookie');
    assert.equal(sessions.read(`${sessionCookieName}=${s.sign(sessionCookieName, Buffer.from('{"v":1}').toString('base64url'))}`), undefined, 'a payload of the wrong shape');
    assert.notEqual(sessions.create(alice).session.id, session.id, 'every session gets a new random id');
  });

  it('ends a session after the idle time without use, and after the absolute time however used, renewing the cookie as it is used', () => {
    const { time, now } = clock();
    const sessions = new SessionCookies({ signer: signer(), idleSeconds: 60, absoluteSeconds: 300, renewAfterSeconds: 10, now });
    const idle = pair(sessions.create({ ...alice, user: 'idle' }).cookie);
    let busy = pair(sessions.create({ ...alice, user: 'busy' }).cookie);
    time.now += 5_000;
    assert.equal(sessions.read(busy)?.renewed, undefined, 'not renewed within renewAfter');
    time.now += 54_000;
    const read = sessions.read(busy);
    assert.equal(read?.session.data.user, 'busy');
    assert.match(read?.renewed ?? '', /Max-Age=241$/, 'renewed, expiring with the absolute time');
    busy = pair(read!.renewed!);
    time.now += 1_000;
    assert.equal(sessions.read(idle), undefined, 'idle for 60 s');
    for (let step = 0; step < 4; step += 1) {
      time.now += 58_000;
      const again = sessions.read(busy);
      assert.equal(again?.session.data.user, 'busy', 'kept alive by use');
      busy = pair(again!.renewed!);
    }
    assert.equal(time.now, 292_000 + 1_000_000);
    time.now += 8_000;
    assert.equal(sessions.read(busy), undefined, '300 s after sign-in');
  });

  it('refuses a session that was signed out, here and where the notice reaches, until it would have expired', () => {
    const { time, now } = clock();
    const s = signer();
    const here = new SessionCookies({ signer: s, now });
    const there = new SessionCookies({ signer: s, now });
    const told: [string, number][] = [];
    here.onSessionEnded((id, until) => told.push([id, until]));
    const { session, cookie } = here.create(alice);
    assert.match(here.end(session), /^__Host-gw-session=; .*Max-Age=0$/);
    assert.equal(here.read(pair(cookie)), undefined);
    assert.deepEqual(told, [[session.id, 1_000_000 + 8 * 3600 * 1000]]);
    assert.equal(there.read(pair(cookie))?.session.id, session.id, 'before the notice');
    there.endSession(...told[0]!);
    assert.equal(there.read(pair(cookie)), undefined, 'after the notice');
    time.now += 8 * 3600 * 1000;
    assert.equal(here.isEnded(session.id), false, 'forgotten once expired');
  });

  it('refuses a session too large for a cookie', () => {
    const sessions = new SessionCookies({ signer: signer() });
    assert.throws(() => sessions.create({ ...alice, groups: Array.from({ length: 200 }, (_, i) => `group-${i}-${'x'.repeat(20)}`) }), SessionTooLarge);
  });
});

describe('PendingSignIns', () => {
  const pending = { state: 'state-0123456789abcdef', nonce: 'nonce-0123456789abcdef', verifier: 'verifier-0123456789abcdefghijklmnopqrstuvwxyz' };

  it('gives back what the cookie holds once; the same state again is refused', () => {
    const sign = new PendingSignIns(signer());
    const cookie = sign.cookie(pending);
    assert.match(cookie, new RegExp(`^${pendingCookieName}=\\S+; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600$`));
    assert.deepEqual(sign.take(pair(cookie)), { ok: true, pending, toPages: false });
    assert.deepEqual(sign.take(pair(sign.cookie({ ...pending, state: 'state-fedcba9876543210' }, true))), { ok: true, pending: { ...pending, state: 'state-fedcba9876543210' }, toPages: true });
    assert.deepEqual(sign.take(pair(cookie)), { ok: false, reason: 'used' });
  });

  it('refuses a missing, forged or expired cookie', () => {
    const time = { now: 5_000_000 };
    const s = signer();
    const sign = new PendingSignIns(s, { now: () => time.now });
    assert.deepEqual(sign.take(undefined), { ok: false, reason: 'missing' });
    assert.deepEqual(sign.take(`${pendingCookieName}=${signer().sign(pendingCookieName, 'eyJ9')}`), { ok: false, reason: 'forged' });
    const json = (payload: unknown) => Buffer.from(JSON.stringify(payload)).toString('base64url');
    const ours = (payload: unknown) => `${pendingCookieName}=${s.sign(pendingCookieName, json(payload))}`;
    assert.deepEqual(sign.take(ours({ s: 'short', n: pending.nonce, v: pending.verifier, e: time.now + 1000 })), { ok: false, reason: 'forged' }, 'a field of the wrong shape');
    assert.deepEqual(sign.take(`${pendingCookieName}=${s.sign(pendingCookieName, 'bm90IGpzb24')}`), { ok: false, reason: 'forged' }, 'not JSON');
    const cookie = pair(sign.cookie(pending));
    time.now += 600_000;
    assert.deepEqual(sign.take(cookie), { ok: false, reason: 'expired' });
  });
});
