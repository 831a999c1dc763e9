// Tests for the login throttle: failures slow only their own (user, address), successes are never held back.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressGroup, LoginThrottle, type ThrottleOptions } from '../src/throttle.js';

/** A throttle on a clock the test moves by hand. */
function throttleAt(options: ThrottleOptions = {}) {
  const clock = { now: 1_000_000 };
  const throttle = new LoginThrottle({ now: () => clock.now, ...options });
  return { throttle, clock };
}

function fail(throttle: LoginThrottle, user: string, address: string, times: number): void {
  for (let i = 0; i < times; i++) throttle.recordFailure(user, address);
}

/** One whole failed login as the gateway performs it; returns the delay the response was held. */
function failedLogin(throttle: LoginThrottle, user: string, address: string): number {
  const admission = throttle.admit(user, address);
  assert.equal(admission.allowed, true);
  throttle.recordFailure(user, address);
  const delay = throttle.failureDelayMs(user, address);
  if (admission.allowed) admission.release();
  return delay;
}

function admitted(throttle: LoginThrottle, user: string, address: string): () => void {
  const admission = throttle.admit(user, address);
  assert.equal(admission.allowed, true, `${user} from ${address} should be admitted`);
  return admission.allowed ? admission.release : () => undefined;
}

function refusal(throttle: LoginThrottle, user: string, address: string): number {
  const admission = throttle.admit(user, address);
  assert.equal(admission.allowed, false, `${user} from ${address} should be refused`);
  return admission.allowed ? 0 : admission.retryAfterSeconds;
}

describe('LoginThrottle delays', () => {
  it('lets the first failures through at once, then doubles the delay up to the cap', () => {
    const { throttle } = throttleAt();
    const expected = [0, 0, 0, 0, 0, 250, 500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000];
    const delays = expected.map(() => failedLogin(throttle, 'alice', '203.0.113.9'));
    assert.deepEqual(delays, expected);
  });

  it('follows the configured free failures, base and cap', () => {
    const { throttle } = throttleAt({ freeFailures: 2, baseDelayMs: 100, maxDelayMs: 700 });
    const delays = Array.from({ length: 7 }, () => failedLogin(throttle, 'alice', '203.0.113.9'));
    assert.deepEqual(delays, [0, 0, 100, 200, 400, 700, 700]);
  });

  it('reports no delay for a key that never failed', () => {
    const { throttle } = throttleAt();
    assert.equal(throttle.failureDelayMs('alice', '203.0.113.9'), 0);
  });

  it('a success clears the key: the next failures are free again', () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '203.0.113.9', 9);
    assert.equal(throttle.failureDelayMs('alice', '203.0.113.9'), 2000);
    throttle.recordSuccess('alice', '203.0.113.9');
    assert.equal(throttle.failureDelayMs('alice', '203.0.113.9'), 0);
    const delays = Array.from({ length: 6 }, () => failedLogin(throttle, 'alice', '203.0.113.9'));
    assert.deepEqual(delays, [0, 0, 0, 0, 0, 250]);
  });

  it('failures of one user at one address slow neither that user elsewhere nor other users there', () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '203.0.113.9', 20);
    const release = admitted(throttle, 'alice', '203.0.113.9');
    assert.equal(throttle.failureDelayMs('alice', '198.51.100.7'), 0);
    assert.equal(throttle.failureDelayMs('bob', '203.0.113.9'), 0);
    admitted(throttle, 'alice', '198.51.100.7');
    admitted(throttle, 'alice', '198.51.100.7');
    admitted(throttle, 'bob', '203.0.113.9');
    admitted(throttle, 'bob', '203.0.113.9');
    release();
  });

  it('keeps user names apart, however long', () => {
    const { throttle } = throttleAt();
    const long = 'a'.repeat(5000);
    fail(throttle, long, '203.0.113.9', 8);
    assert.equal(throttle.failureDelayMs(long, '203.0.113.9'), 1000);
    assert.equal(throttle.failureDelayMs(`${'a'.repeat(4999)}b`, '203.0.113.9'), 0);
    assert.equal(throttle.failureDelayMs('a'.repeat(255), '203.0.113.9'), 0);
  });
});

describe('LoginThrottle checks in flight', () => {
  it('never holds back parallel checks of a key without failures', () => {
    const { throttle } = throttleAt();
    const releases = Array.from({ length: 50 }, () => admitted(throttle, 'ci', '203.0.113.9'));
    for (const release of releases) release();
    assert.equal(throttle.size, 0, 'keys that only ever succeeded are not kept');
  });

  it('allows one check at a time once the free failures are used up', () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '203.0.113.9', 5);
    const release = admitted(throttle, 'alice', '203.0.113.9');
    assert.equal(refusal(throttle, 'alice', '203.0.113.9'), 1);
    assert.equal(refusal(throttle, 'alice', '203.0.113.9'), 1);
    release();
    const next = admitted(throttle, 'alice', '203.0.113.9');
    next();
  });

  it('tells a refused client to retry after the delay the running check may take', () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '203.0.113.9', 10);
    const release = admitted(throttle, 'alice', '203.0.113.9');
    assert.equal(refusal(throttle, 'alice', '203.0.113.9'), 8);
    release();
  });

  it('caps parallel guesses so failures plus checks in flight stay within the free failures', () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '203.0.113.9', 2);
    const releases = [1, 2, 3].map(() => admitted(throttle, 'alice', '203.0.113.9'));
    refusal(throttle, 'alice', '203.0.113.9');
    for (const release of releases) release();
  });

  it('release() twice frees only one slot', () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '203.0.113.9', 5);
    const first = admitted(throttle, 'alice', '203.0.113.9');
    first();
    first();
    const second = admitted(throttle, 'alice', '203.0.113.9');
    refusal(throttle, 'alice', '203.0.113.9');
    second();
  });

  it('lets a correct password through when no check is running, and clears the key', () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '203.0.113.9', 12);
    const release = admitted(throttle, 'alice', '203.0.113.9');
    throttle.recordSuccess('alice', '203.0.113.9');
    release();
    const parallel = [1, 2, 3].map(() => admitted(throttle, 'alice', '203.0.113.9'));
    for (const done of parallel) done();
    assert.equal(throttle.size, 0);
  });
});

describe('LoginThrottle memory', () => {
  it('forgets a key after forgetAfterMs without failures', () => {
    const { throttle, clock } = throttleAt({ forgetAfterMs: 60_000 });
    fail(throttle, 'alice', '203.0.113.9', 8);
    clock.now += 59_999;
    assert.equal(throttle.failureDelayMs('alice', '203.0.113.9'), 1000);
    clock.now += 1;
    assert.equal(throttle.failureDelayMs('alice', '203.0.113.9'), 0);
    assert.equal(failedLogin(throttle, 'alice', '203.0.113.9'), 0);
  });

  it('a failure restarts the forgetting period', () => {
    const { throttle, clock } = throttleAt({ forgetAfterMs: 60_000 });
    fail(throttle, 'alice', '203.0.113.9', 7);
    clock.now += 50_000;
    throttle.recordFailure('alice', '203.0.113.9');
    clock.now += 50_000;
    assert.equal(throttle.failureDelayMs('alice', '203.0.113.9'), 1000);
  });

  it('drops forgotten keys as other keys are used, without a timer', () => {
    const { throttle, clock } = throttleAt({ forgetAfterMs: 60_000 });
    for (let i = 0; i < 10; i++) throttle.recordFailure(`user${i}`, '203.0.113.9');
    assert.equal(throttle.size, 10);
    clock.now += 60_000;
    throttle.recordFailure('alice', '198.51.100.7');
    assert.equal(throttle.size, 1);
  });

  it('recovers from a check that was never released once the key is forgotten', () => {
    const { throttle, clock } = throttleAt({ forgetAfterMs: 60_000 });
    fail(throttle, 'alice', '203.0.113.9', 5);
    admitted(throttle, 'alice', '203.0.113.9');
    refusal(throttle, 'alice', '203.0.113.9');
    clock.now += 60_000;
    admitted(throttle, 'alice', '203.0.113.9')();
  });

  it('keeps at most maxEntries keys, dropping the least recently active', () => {
    const { throttle, clock } = throttleAt({ maxEntries: 3 });
    for (const user of ['u0', 'u1', 'u2']) {
      fail(throttle, user, '203.0.113.9', 6);
      clock.now += 1;
    }
    throttle.recordFailure('u0', '203.0.113.9');
    fail(throttle, 'u3', '203.0.113.9', 6);
    assert.equal(throttle.size, 3);
    assert.equal(throttle.failureDelayMs('u1', '203.0.113.9'), 0, 'u1 was the least recently active');
    assert.equal(throttle.failureDelayMs('u0', '203.0.113.9'), 500);
    assert.equal(throttle.failureDelayMs('u2', '203.0.113.9'), 250);
    assert.equal(throttle.failureDelayMs('u3', '203.0.113.9'), 250);
  });

  it('refuses options that make no sense', () => {
    for (const options of [{ freeFailures: -1 }, { baseDelayMs: 1.5 }, { maxDelayMs: Number.NaN }, { maxEntries: 0 }]) {
      assert.throws(() => new LoginThrottle(options), RangeError, JSON.stringify(options));
    }
  });
});

describe('addresses', () => {
  const groups: [address: string, group: string][] = [
    ['10.0.0.1', '10.0.0.1'],
    ['::ffff:10.0.0.1', '10.0.0.1'],
    ['::FFFF:10.0.0.1', '10.0.0.1'],
    ['::ffff:a00:1', '10.0.0.1'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:db8::2', '2001:db8:0:0::/64'],
    ['2001:DB8:0:0:ffff:ffff:ffff:ffff', '2001:db8:0:0::/64'],
    ['[2001:db8::1]', '2001:db8:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['2001:db8:0:1::1', '2001:db8:0:1::/64'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['::1', '0:0:0:0::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
    ['', ''],
    ['not an address', 'not an address'],
  ];
  for (const [address, group] of groups) {
    it(`${JSON.stringify(address)} -> ${JSON.stringify(group)}`, () => assert.equal(addressGroup(address), group));
  }

  it('counts failures from an IPv4-mapped address and its IPv4 form together', () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '::ffff:10.0.0.1', 6);
    assert.equal(throttle.failureDelayMs('alice', '10.0.0.1'), 250);
  });

  it('counts failures from one IPv6 /64 together, and other /64s apart', () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '2001:db8::1', 3);
    fail(throttle, 'alice', '2001:db8::2', 3);
    assert.equal(throttle.failureDelayMs('alice', '2001:db8::3'), 250);
    assert.equal(throttle.failureDelayMs('alice', '2001:db8:0:1::1'), 0);
  });
});
