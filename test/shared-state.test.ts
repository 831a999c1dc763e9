// Tests for the in-process shared state (counters lapse, turns space, notices reach subscribers) and the login throttle over a shared state.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LoginThrottle } from '../src/auth/throttle.js';
import { InProcessSharedState, type SharedState } from '../src/state/shared-state.js';
import { SharedLoginThrottle, type ThrottleAdmission } from '../src/state/shared-throttle.js';
import { revocationNotice, revokedTokenOf } from '../src/state/revocations.js';
import { latestSwitch } from '../src/ops/maintenance.js';
import { describeConfig, loadConfig } from '../src/config/config.js';
import { ConfigError } from '../src/errors.js';

function stateAt(maxKeys?: number) {
  const clock = { now: 1_000 };
  const state = new InProcessSharedState({ now: () => clock.now, ...(maxKeys ? { maxKeys } : {}) });
  return { state, clock };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('InProcessSharedState counters', () => {
  it('counts up per key and lapses a window after the last addition', async () => {
    const { state, clock } = stateAt();
    assert.equal(await state.readCount('a'), 0);
    assert.equal(await state.addCount('a', 1000), 1);
    clock.now += 900;
    assert.equal(await state.addCount('a', 1000), 2, 'each addition starts the window again');
    assert.equal(await state.readCount('b'), 0, 'keys are separate');
    clock.now += 900;
    assert.equal(await state.readCount('a'), 2);
    clock.now += 100;
    assert.equal(await state.readCount('a'), 0, 'lapsed');
    assert.equal(await state.addCount('a', 1000), 1, 'starts afresh');
  });

  it('takes one back, never below 0', async () => {
    const state = new InProcessSharedState();
    assert.equal(await state.addCount('k', 60_000), 1);
    assert.equal(await state.addCount('k', 60_000, -1), 0);
    assert.equal(await state.addCount('k', 60_000, -1), 0);
    assert.equal(await state.addCount('k', 60_000), 1);
  });

  it('clear forgets the counter and the turn', async () => {
    const { state } = stateAt();
    await state.addCount('a', 1000);
    assert.equal(await state.takeTurn('a', 500), 0);
    await state.clear('a');
    assert.equal(await state.readCount('a'), 0);
    assert.equal(await state.takeTurn('a', 500), 0, 'the turn is free again');
  });

  it('keeps at most maxKeys, dropping the least recently touched', async () => {
    const { state } = stateAt(2);
    await state.addCount('a', 1000);
    await state.addCount('b', 1000);
    await state.addCount('a', 1000);
    await state.addCount('c', 1000);
    assert.equal(await state.readCount('b'), 0, 'b was the oldest');
    assert.equal(await state.readCount('a'), 2);
    assert.equal(await state.readCount('c'), 1);
  });
});

describe('InProcessSharedState turns', () => {
  it('gives a turn to one taker at a time and tells the others how long to wait', async () => {
    const { state, clock } = stateAt();
    assert.equal(await state.takeTurn('k', 300), 0);
    assert.equal(await state.takeTurn('k', 300), 300);
    clock.now += 200;
    assert.equal(await state.takeTurn('k', 300), 100);
    assert.equal(await state.takeTurn('other', 300), 0, 'another key has its own turn');
    clock.now += 100;
    assert.equal(await state.takeTurn('k', 300), 0, 'free once the hold has passed');
  });

  it('holdTurn replaces the hold, and 0 frees the turn', async () => {
    const { state } = stateAt();
    await state.takeTurn('k', 5000);
    await state.holdTurn('k', 250);
    assert.equal(await state.takeTurn('k', 100), 250);
    await state.holdTurn('k', 0);
    assert.equal(await state.takeTurn('k', 100), 0);
  });

  it('a turn taken for 0 ms holds nothing', async () => {
    const { state } = stateAt();
    assert.equal(await state.takeTurn('k', 0), 0);
    assert.equal(await state.takeTurn('k', 0), 0);
  });
});

describe('InProcessSharedState values and notices', () => {
  it('keeps values until set again or removed', async () => {
    const { state } = stateAt();
    assert.equal(await state.get('maintenance'), undefined);
    await state.set('maintenance', '{"on":false}');
    assert.equal(await state.get('maintenance'), '{"on":false}');
    await state.set('maintenance', undefined);
    assert.equal(await state.get('maintenance'), undefined);
  });

  it('delivers notices to every subscriber of the channel, after publish returns, and none after unsubscribing', async () => {
    const { state } = stateAt();
    const heard: string[] = [];
    const stopA = state.subscribe('revocations', (message) => heard.push(`a:${message}`));
    state.subscribe('revocations', (message) => heard.push(`b:${message}`));
    state.subscribe('maintenance', (message) => heard.push(`m:${message}`));
    await state.publish('revocations', 'one');
    assert.deepEqual(heard, [], 'not synchronously, as from a remote backend');
    await tick();
    assert.deepEqual(heard.sort(), ['a:one', 'b:one']);
    stopA();
    await state.publish('revocations', 'two');
    await tick();
    assert.deepEqual(heard.sort(), ['a:one', 'b:one', 'b:two']);
  });

  it('a listener that throws does not keep the notice from the others', async () => {
    const errors: unknown[] = [];
    const state = new InProcessSharedState({ onListenerError: (error) => errors.push(error) });
    const heard: string[] = [];
    state.subscribe('sessions', () => {
      throw new Error('broken listener');
    });
    state.subscribe('sessions', (message) => heard.push(message));
    await state.publish('sessions', 'ended');
    await tick();
    assert.deepEqual(heard, ['ended']);
    assert.equal(errors.length, 1);
  });

  it('rejects every call once closed', async () => {
    const { state } = stateAt();
    await state.close();
    await assert.rejects(state.addCount('a', 1000));
    await assert.rejects(state.publish('revocations', 'x'));
  });
});

/** A shared state that does not answer (Redis away). */
const away: SharedState = {
  kind: 'away',
  addCount: () => Promise.reject(new Error('offline')),
  readCount: () => Promise.reject(new Error('offline')),
  clear: () => Promise.reject(new Error('offline')),
  takeTurn: () => Promise.reject(new Error('offline')),
  holdTurn: () => Promise.reject(new Error('offline')),
  get: () => Promise.reject(new Error('offline')),
  set: () => Promise.reject(new Error('offline')),
  publish: () => Promise.reject(new Error('offline')),
  subscribe: () => () => undefined,
  close: async () => undefined,
};

let guessCount = 0;

/** One whole failed login as the gateway performs it: whether it had to wait its turn, and the delay it was held. */
async function failedLogin(throttle: SharedLoginThrottle, user = 'alice', address = '192.0.2.1'): Promise<{ throttled: boolean; delay: number }> {
  const admission: ThrottleAdmission = await throttle.admit(user, address, `guess-${++guessCount}`);
  assert.equal(admission.allowed, true);
  if (!admission.allowed) throw new Error('refused');
  try {
    await admission.turn;
    return { throttled: admission.throttled, delay: await admission.failed() };
  } finally {
    admission.release();
  }
}

/** Gateways over one shared state, each with its own per-process throttle; waits for turns are not slept. */
function gateways(count: number, shared: SharedState): SharedLoginThrottle[] {
  return Array.from({ length: count }, () => new SharedLoginThrottle(new LoginThrottle({ schedule: (start) => void setImmediate(start) }), shared, { sleep: () => Promise.resolve() }));
}

describe('SharedLoginThrottle', () => {
  it('three gateways on one shared state hold back the sixth wrong password as one gateway does', async () => {
    const shared = new InProcessSharedState();
    const three = gateways(3, shared);
    const outcomes = [];
    for (let i = 0; i < 7; i++) outcomes.push(await failedLogin(three[i % 3]!));
    assert.deepEqual(
      outcomes.map((outcome) => outcome.throttled),
      [false, false, false, false, false, true, true],
    );
    assert.deepEqual(
      outcomes.map((outcome) => outcome.delay),
      [0, 0, 0, 0, 0, 250, 500],
    );
    const alone = new SharedLoginThrottle(new LoginThrottle(), new InProcessSharedState());
    const single = [];
    for (let i = 0; i < 6; i++) single.push(await failedLogin(alone));
    assert.deepEqual(single, outcomes.slice(0, 6), 'the same as a single gateway');
  });

  it('the sixth failed guess leaves the shared turn taken for its delay, so the next check anywhere waits for it', async () => {
    const shared = new InProcessSharedState();
    const [a, b] = gateways(2, shared);
    for (let i = 0; i < 6; i++) await failedLogin(i % 2 === 0 ? a! : b!);
    const wait = await shared.takeTurn(`throttle:${JSON.stringify(['192.0.2.1', 'alice'])}`, 1);
    assert.ok(wait > 0 && wait <= 250, `the turn is held for the delay (${wait} ms left)`);
  });

  it('a success at any gateway clears the count for all', async () => {
    const shared = new InProcessSharedState();
    const [a, b] = gateways(2, shared);
    for (let i = 0; i < 4; i++) await failedLogin(a!);
    const right = await b!.admit('alice', '192.0.2.1', 'the-right-one');
    assert.ok(right.allowed);
    if (!right.allowed) return;
    await right.turn;
    right.succeeded();
    right.release();
    await tick();
    const after = [];
    for (let i = 0; i < 5; i++) after.push((await failedLogin(a!)).throttled);
    assert.deepEqual(after, [false, false, false, false, false], 'five free failures again, also at the gateway that saw the first four');
  });

  it('counts per user and address: another address or user is not held back', async () => {
    const shared = new InProcessSharedState();
    const [a, b] = gateways(2, shared);
    for (let i = 0; i < 6; i++) await failedLogin(i % 2 === 0 ? a! : b!);
    assert.equal((await failedLogin(a!, 'alice', '198.51.100.7')).throttled, false);
    assert.equal((await failedLogin(b!, 'bob', '192.0.2.1')).throttled, false);
  });

  it('a burst of fifteen guesses in parallel over three gateways gets the five free checks once; the ten others wait their turn', async () => {
    const shared = new InProcessSharedState();
    const three = gateways(3, shared);
    const key = `throttle:${JSON.stringify(['192.0.2.1', 'alice'])}`;
    const admissions = await Promise.all(Array.from({ length: 15 }, (_, i) => three[i % 3]!.admit('alice', '192.0.2.1', `burst-${i}`)));
    const allowed = admissions.filter((admission) => admission.allowed);
    assert.equal(allowed.length, 15);
    assert.equal(allowed.filter((admission) => !admission.throttled).length, 5, 'five checked at once, as on one gateway');
    assert.equal(await shared.readCount(key), 15, 'every guess counted from its admission');
    const delays = [];
    for (const admission of allowed) {
      await admission.turn;
      delays.push(await admission.failed());
      admission.release();
    }
    assert.equal(await shared.readCount(key), 15, 'each failure counted once');
    assert.ok(delays.every((delay) => delay > 0), `every wrong answer of the burst is held, the free ones too: the count holds all fifteen (${delays.join(', ')})`);
  });

  it('a guess counted in advance is taken back when no check happens; the same credentials in flight count once', async () => {
    const shared = new InProcessSharedState();
    const [a] = gateways(1, shared);
    const key = `throttle:${JSON.stringify(['192.0.2.1', 'alice'])}`;
    const first = await a!.admit('alice', '192.0.2.1', 'same');
    const second = await a!.admit('alice', '192.0.2.1', 'same');
    assert.equal(await shared.readCount(key), 1, 'one guess, however many requests present it');
    first.allowed && first.release();
    assert.equal(await shared.readCount(key), 1, 'still held by the other request');
    second.allowed && second.release();
    await tick();
    assert.equal(await shared.readCount(key), 0, 'no check happened: nothing counts');
    for (let i = 0; i < 5; i++) assert.equal((await failedLogin(a!)).throttled, false);
    assert.equal((await failedLogin(a!)).throttled, true, 'the free failures are intact');
  });

  it('when the shared state does not answer, each gateway counts on its own and nothing fails', async () => {
    const [a, b] = gateways(2, away);
    const outcomes = [];
    for (let i = 0; i < 6; i++) outcomes.push((await failedLogin(i % 2 === 0 ? a! : b!)).throttled);
    assert.deepEqual(outcomes, [false, false, false, false, false, false], 'three failures each: none held');
    for (let i = 0; i < 2; i++) await failedLogin(a!);
    assert.equal((await failedLogin(a!)).throttled, true, 'the sixth at one gateway is held, as without shared state');
  });
});

describe('notice formats', () => {
  it('a revocation names one token id; anything else is ignored', () => {
    assert.equal(revokedTokenOf(revocationNotice('abcdefghij23')), 'abcdefghij23');
    for (const message of ['', 'null', '{"token":"../etc"}', '{"token":1}', '{}', 'not json', '{"token":"ABCDEFGHIJ23"}']) {
      assert.equal(revokedTokenOf(message), undefined, message);
    }
  });

  it('maintenance: the state switched last is in force, the file\'s when neither says when', () => {
    const file = { on: false, since: '2030-01-01T00:00:00.000Z' };
    const later = { on: true, id: 'x', since: '2030-01-01T00:00:01.000Z' };
    const earlier = { on: true, id: 'y', since: '2029-12-31T23:59:59.000Z' };
    assert.equal(latestSwitch(file, later), later);
    assert.equal(latestSwitch(file, earlier), file);
    assert.equal(latestSwitch(file, undefined), file);
    assert.equal(latestSwitch({ on: false }, earlier), earlier, 'a file that never said anything loses');
    assert.equal(latestSwitch(file, { on: true, id: 'z' }), file, 'a shared state that does not say when loses');
    assert.equal(latestSwitch(file, { ...later, since: file.since }), file, 'a tie goes to the file');
  });
});

describe('Redis settings', () => {
  const load = (env: Record<string, string>) => loadConfig({ env, cwd: '/srv/gateway' }).config;

  it('are off without GATEWAY_REDIS_URL', () => {
    assert.equal(load({}).redis, undefined);
    assert.equal(load({ GATEWAY_REDIS_URL: '' }).redis, undefined);
  });

  it('take redis:// and rediss:// URLs with a database number, the default prefix, and a password file taken from the current folder', () => {
    const redis = load({ GATEWAY_REDIS_URL: 'rediss://redis.internal:6380/2', GATEWAY_REDIS_PASSWORD_FILE: 'secrets/redis' }).redis;
    assert.equal(redis?.url.href, 'rediss://redis.internal:6380/2');
    assert.equal(redis?.passwordFile, '/srv/gateway/secrets/redis');
    assert.equal(redis?.prefix, 'registry-gateway:');
    assert.equal(load({ GATEWAY_REDIS_URL: 'redis://redis', GATEWAY_REDIS_PREFIX: 'team-a:' }).redis?.prefix, 'team-a:');
  });

  it('refuse other URLs, a bad prefix and a password given twice, never repeating the URL (it may hold the password)', () => {
    for (const url of ['http://redis:6379', 'redis://', 'redis://:secret@redis/some/path', 'redis://:secret@redis?x=1', 'not a url secret', 'redis://:secret%zz@redis']) {
      assert.throws(
        () => load({ GATEWAY_REDIS_URL: url }),
        (error: unknown) => error instanceof ConfigError && error.message.includes('GATEWAY_REDIS_URL') && !error.message.includes('secret'),
        url,
      );
    }
    assert.throws(() => load({ GATEWAY_REDIS_URL: 'redis://redis', GATEWAY_REDIS_PREFIX: 'has space' }), /GATEWAY_REDIS_PREFIX/);
    assert.throws(() => load({ GATEWAY_REDIS_URL: 'redis://:secret@redis', GATEWAY_REDIS_PASSWORD_FILE: 'pw' }), /in one place/);
  });

  it('are shown with the password hidden', () => {
    const described = describeConfig(load({ GATEWAY_REDIS_URL: 'redis://gw:s3cret@redis:6379/1' }));
    assert.equal(described.redis_url, 'redis://gw:***@redis:6379/1');
    assert.equal(JSON.stringify(described).includes('s3cret'), false);
    assert.equal(describeConfig(load({})).redis_url, '(off: each gateway counts on its own)');
  });
});
