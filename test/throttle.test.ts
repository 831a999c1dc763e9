// Tests for the login throttle: failures slow only their own (user, address), guesses in flight count, successes are never held back.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LoginThrottle, type Guess, type ThrottleOptions } from '../src/auth/throttle.js';
import { addressGroup } from '../src/ip-address.js';

/** A throttle on a clock the test moves by hand. */
function throttleAt(options: ThrottleOptions = {}) {
  const clock = { now: 1_000_000 };
  // The clock stands still, so a delay the throttle waits for is served on the next turn of the loop.
  const throttle = new LoginThrottle({ now: () => clock.now, schedule: (start) => void setImmediate(start), ...options });
  return { throttle, clock };
}

function fail(throttle: LoginThrottle, user: string, address: string, times: number): void {
  for (let i = 0; i < times; i++) throttle.recordFailure(user, address);
}

let guessCount = 0;

/** A distinct guess each call, unless the same credentials are given. */
function guessOf(credentials?: string): string {
  return credentials ?? `guess-${++guessCount}`;
}

function admit(throttle: LoginThrottle, user: string, address: string, credentials?: string): Guess {
  const admission = throttle.admit(user, address, guessOf(credentials));
  assert.equal(admission.allowed, true, `${user} from ${address} should be admitted`);
  if (!admission.allowed) throw new Error('refused');
  return admission;
}

/** One whole failed login as the gateway performs it; returns the delay the response was held. */
function failedLogin(throttle: LoginThrottle, user: string, address: string): number {
  const guess = admit(throttle, user, address);
  const delay = guess.failed();
  guess.release();
  return delay;
}

function refusal(throttle: LoginThrottle, user: string, address: string): number {
  const admission = throttle.admit(user, address, guessOf());
  assert.equal(admission.allowed, false, `${user} from ${address} should be refused`);
  return admission.allowed ? 0 : admission.retryAfterSeconds;
}

/** Which of the guesses have been given their turn, once pending callbacks have run. */
async function started(guesses: Guess[]): Promise<boolean[]> {
  const flags = guesses.map(() => false);
  guesses.forEach((guess, index) => void guess.turn.then(() => (flags[index] = true)));
  await new Promise((resolve) => setImmediate(resolve));
  return flags;
}

const count = (flags: boolean[]) => flags.filter(Boolean).length;

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
    const held = admit(throttle, 'alice', '203.0.113.9');
    assert.equal(throttle.failureDelayMs('alice', '198.51.100.7'), 0);
    assert.equal(throttle.failureDelayMs('bob', '203.0.113.9'), 0);
    for (const [user, address] of [['alice', '198.51.100.7'], ['alice', '198.51.100.7'], ['bob', '203.0.113.9'], ['bob', '203.0.113.9']] as const) {
      assert.equal(admit(throttle, user, address).throttled, false, `${user} from ${address}`);
    }
    held.release();
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
  it('counts identical credentials in flight as one guess: parallel requests of one client all go at once', async () => {
    const { throttle } = throttleAt();
    const parallel = Array.from({ length: 50 }, () => admit(throttle, 'ci', '203.0.113.9', 'the same password'));
    assert.equal(count(await started(parallel)), 50);
    parallel[0]!.succeeded();
    for (const guess of parallel) guess.succeeded();
    assert.equal(throttle.size, 0, 'keys that only ever succeeded are not kept');
  });

  it('checks at most the free failures at once, counting guesses in flight, then one at a time', async () => {
    const { throttle } = throttleAt();
    const burst = Array.from({ length: 40 }, () => admit(throttle, 'alice', '203.0.113.9'));
    assert.equal(burst.filter((guess) => guess.throttled).length, 35);
    assert.equal(count(await started(burst)), 5, 'only the free ones start while nothing failed yet');
    const delays = burst.slice(0, 4).map((guess) => guess.failed());
    assert.equal(count(await started(burst)), 5, 'the rest wait until no check of the key runs');
    delays.push(burst[4]!.failed());
    assert.deepEqual(delays, [0, 0, 0, 0, 0]);
    assert.equal(count(await started(burst)), 6);
    assert.equal(burst[5]!.failed(), 250);
    assert.equal(count(await started(burst)), 7, 'one at a time');
    for (const guess of burst.slice(6)) guess.release();
  });

  it('counts failures so far and guesses in flight together', async () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '203.0.113.9', 2);
    const free = [1, 2, 3].map(() => admit(throttle, 'alice', '203.0.113.9'));
    const fourth = admit(throttle, 'alice', '203.0.113.9');
    assert.deepEqual(await started([...free, fourth]), [true, true, true, false]);
    for (const guess of free) guess.release();
    assert.deepEqual(await started([fourth]), [true]);
    fourth.release();
  });

  it('checks credentials proven right before at once, past queued guesses and the delay', async () => {
    const { throttle } = throttleAt();
    const first = admit(throttle, 'alice', '198.51.100.7', 'the right password');
    first.succeeded();
    fail(throttle, 'alice', '203.0.113.9', 8);
    const wrong = admit(throttle, 'alice', '203.0.113.9');
    const queued = admit(throttle, 'alice', '203.0.113.9');
    assert.equal(wrong.failed(), 2000);
    const right = admit(throttle, 'alice', '203.0.113.9', 'the right password');
    assert.equal(right.throttled, false);
    const flags = await started([right, queued]);
    assert.equal(flags[0], true, 'the proven password is checked at once');
    right.succeeded();
    wrong.release();
    queued.release();
    assert.equal(throttle.failureDelayMs('alice', '203.0.113.9'), 0, 'the success cleared the key');
  });

  it('a proven password that fails (changed since) counts as a failure and is proven no more', () => {
    const { throttle } = throttleAt();
    admit(throttle, 'alice', '203.0.113.9', 'old password').succeeded();
    fail(throttle, 'alice', '203.0.113.9', 5);
    const stale = admit(throttle, 'alice', '203.0.113.9', 'old password');
    assert.equal(stale.throttled, false);
    assert.equal(stale.failed(), 250);
    assert.equal(admit(throttle, 'alice', '203.0.113.9', 'old password').throttled, true);
  });

  it('spaces throttled checks by the last failure\'s delay, whatever the number of connections', async () => {
    const throttle = new LoginThrottle({ baseDelayMs: 40, maxDelayMs: 40 });
    fail(throttle, 'alice', '203.0.113.9', 6);
    const guesses = [1, 2, 3].map(() => admit(throttle, 'alice', '203.0.113.9'));
    assert.deepEqual(await started(guesses), [false, false, false], 'none starts before the delay of the last failure');
    await guesses[0]!.turn;
    assert.deepEqual(await started(guesses), [true, false, false], 'one at a time');
    guesses[0]!.failed();
    guesses[0]!.release();
    assert.deepEqual(await started(guesses.slice(1)), [false, false], 'the next waits for the new failure\'s delay');
    await guesses[1]!.turn;
    for (const guess of guesses) guess.release();
  });

  it('lets the right password wait only for checks, in its turn, and never refuses it for a held answer', async () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '203.0.113.9', 5);
    const guesses = [1, 2, 3].map(() => admit(throttle, 'alice', '203.0.113.9'));
    const right = admit(throttle, 'alice', '203.0.113.9', 'the right password');
    assert.equal(count(await started([...guesses, right])), 1);
    for (const guess of guesses) {
      guess.failed();
      await started([]);
    }
    assert.deepEqual(await started([right]), [true]);
    right.succeeded();
  });

  it('refuses guesses beyond maxWaiting, with the delay the next failure would get; identical ones still join', async () => {
    const { throttle } = throttleAt({ maxWaiting: 2 });
    fail(throttle, 'alice', '203.0.113.9', 10);
    const guesses = [admit(throttle, 'alice', '203.0.113.9', 'a')];
    assert.deepEqual(await started(guesses), [true], 'the first waits out the delay, then is checked');
    guesses.push(...['b', 'c'].map((password) => admit(throttle, 'alice', '203.0.113.9', password)));
    assert.deepEqual(await started(guesses), [true, false, false]);
    assert.equal(refusal(throttle, 'alice', '203.0.113.9'), 8);
    const joined = admit(throttle, 'alice', '203.0.113.9', 'c');
    guesses[0]!.release();
    assert.deepEqual(await started([guesses[1]!, joined]), [true, false]);
    admit(throttle, 'alice', '203.0.113.9').release();
    for (const guess of [...guesses, joined]) guess.release();
  });

  it('ends a guess once: a second end, or release() after an outcome, changes nothing', async () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '203.0.113.9', 5);
    const first = admit(throttle, 'alice', '203.0.113.9');
    const second = admit(throttle, 'alice', '203.0.113.9');
    const third = admit(throttle, 'alice', '203.0.113.9');
    assert.equal(first.failed(), 250);
    assert.equal(first.failed(), 0);
    first.release();
    assert.deepEqual(await started([second, third]), [true, false]);
    assert.equal(throttle.failureDelayMs('alice', '203.0.113.9'), 250, 'counted once');
    second.release();
    second.release();
    assert.deepEqual(await started([third]), [true]);
    third.release();
    assert.equal(throttle.failureDelayMs('alice', '203.0.113.9'), 250, 'a check that never happened counts nothing');
  });

  it('records a shared guess once, whoever of its requests reports first', async () => {
    const { throttle } = throttleAt();
    fail(throttle, 'alice', '203.0.113.9', 5);
    const sharers = [1, 2, 3].map(() => admit(throttle, 'alice', '203.0.113.9', 'same wrong password'));
    assert.deepEqual(await started(sharers), [true, true, true]);
    assert.deepEqual(
      sharers.map((guess) => guess.failed()),
      [250, 250, 250],
    );
    assert.equal(throttle.failureDelayMs('alice', '203.0.113.9'), 250);
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
    admit(throttle, 'alice', '203.0.113.9');
    assert.equal(admit(throttle, 'alice', '203.0.113.9').throttled, true);
    clock.now += 60_000;
    const fresh = admit(throttle, 'alice', '203.0.113.9');
    assert.equal(fresh.throttled, false);
    fresh.release();
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
    for (const options of [{ freeFailures: -1 }, { baseDelayMs: 1.5 }, { maxDelayMs: Number.NaN }, { maxEntries: 0 }, { maxWaiting: -1 }]) {
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
