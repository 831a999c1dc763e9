// Tests for the sign-in cookies: HMAC signing bound to the cookie name, Cookie header reading, Set-Cookie attributes, sessions with idle and absolute expiry, single-use sign-in state.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { clearCookie, CookieSigner, deriveKey, readCookies, setCookie } from '../src/ui/cookies.js';
import { PendingSignIns, pendingCookieName } from '../src/ui/pending-sign-in.js';
import { SessionStore, sessionCookieName } from '../src/ui/session.js';

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

describe('SessionStore', () => {
  const clock = () => {
    const time = { now: 1_000_000 };
    return { time, now: () => time.now };
  };

  it('finds a session by its signed cookie; a forged, unknown or destroyed one is no session', () => {
    const s = signer();
    const store = new SessionStore<{ user: string }>({ signer: s });
    const { session, cookie } = store.create({ user: 'alice' });
    assert.match(cookie, new RegExp(`^${sessionCookieName}=[A-Za-z0-9_-]{43}\\.[A-Za-z0-9_-]{43}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=28800$`));
    assert.equal(store.read(pair(cookie))?.data.user, 'alice');
    assert.equal(store.read(`${sessionCookieName}=${session.id}`), undefined, 'an unsigned id');
    assert.equal(store.read(`${sessionCookieName}=${s.sign(sessionCookieName, randomBytes(32).toString('base64url'))}`), undefined, 'a signed id that is no session');
    assert.equal(store.read(`${sessionCookieName}=${signer().sign(sessionCookieName, session.id)}`), undefined, 'signed with another key');
    assert.notEqual(store.create({ user: 'alice' }).session.id, session.id, 'every session gets a new random id');
    assert.match(store.destroy(session), /Max-Age=0/);
    assert.equal(store.read(pair(cookie)), undefined);
  });

  it('ends a session after the idle time without use, and after the absolute time however used', () => {
    const { time, now } = clock();
    const store = new SessionStore<string>({ signer: signer(), idleSeconds: 60, absoluteSeconds: 300, now });
    const idle = pair(store.create('idle').cookie);
    const busy = pair(store.create('busy').cookie);
    time.now += 59_000;
    assert.equal(store.read(busy)?.data, 'busy');
    time.now += 1_000;
    assert.equal(store.read(idle), undefined, 'idle for 60 s');
    for (let step = 0; step < 4; step += 1) {
      time.now += 58_000;
      assert.equal(store.read(busy)?.data, 'busy', 'kept alive by use');
    }
    assert.equal(time.now, 292_000 + 1_000_000);
    time.now += 8_000;
    assert.equal(store.read(busy), undefined, '300 s after sign-in');
  });

  it('keeps at most maxSessions, ending the least recently used', () => {
    const store = new SessionStore<number>({ signer: signer(), maxSessions: 2 });
    const first = pair(store.create(1).cookie);
    const second = pair(store.create(2).cookie);
    assert.equal(store.read(first)?.data, 1);
    store.create(3);
    assert.equal(store.size, 2);
    assert.equal(store.read(second), undefined);
    assert.equal(store.read(first)?.data, 1);
  });
});

describe('PendingSignIns', () => {
  const pending = { state: 'state-0123456789abcdef', nonce: 'nonce-0123456789abcdef', verifier: 'verifier-0123456789abcdefghijklmnopqrstuvwxyz' };

  it('gives back what the cookie holds once; the same state again is refused', () => {
    const sign = new PendingSignIns(signer());
    const cookie = sign.cookie(pending);
    assert.match(cookie, new RegExp(`^${pendingCookieName}=\\S+; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600$`));
    assert.deepEqual(sign.take(pair(cookie)), { ok: true, pending });
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
