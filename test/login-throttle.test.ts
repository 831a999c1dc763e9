// Tests for logins under the throttle, with real bcrypt: guesses in flight count, and the right password never waits behind a held wrong one.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { Authenticator, PasswordChecker } from '../src/auth/authenticator.js';
import type { CiTokenStore } from '../src/auth/ci-token-store.js';
import { RegistryError } from '../src/errors.js';
import { hashPassword, UserStore } from '../src/auth/htpasswd.js';
import { logIn, type LoginLog, type LoginServices } from '../src/auth/login.js';
import { LoginThrottle, type ThrottleOptions } from '../src/auth/throttle.js';

/** Records how many bcrypt checks run at once, and the most there ever were. */
class ConcurrencyChecker extends PasswordChecker {
  running = 0;
  mostAtOnce = 0;
  checks = 0;

  override async verify(password: string, hash: string, source?: string): Promise<boolean> {
    this.checks++;
    this.running++;
    this.mostAtOnce = Math.max(this.mostAtOnce, this.running);
    try {
      return await super.verify(password, hash, source);
    } finally {
      this.running--;
    }
  }
}

const noCiTokens = { verify: () => undefined } as unknown as CiTokenStore;

async function services(t: TestContext, throttle: ThrottleOptions): Promise<{ logins: LoginServices; checker: ConcurrencyChecker }> {
  const folder = await mkdtemp(path.join(tmpdir(), 'login-throttle-test-'));
  t.after(() => rm(folder, { recursive: true, force: true }));
  const file = path.join(folder, 'htpasswd');
  await writeFile(file, `alice:${await hashPassword('alice-password', 5)}\n`);
  const users = await UserStore.load(file);
  // Many threads, so nothing but the throttle keeps the checks from all running at once.
  const checker = new ConcurrencyChecker({ maxThreads: 8, maxQueuePerSource: 100 });
  t.after(() => checker.close());
  const authenticator = new Authenticator(users, checker, { cacheTtlMs: 0 });
  return { logins: { authenticator, users, ciTokens: noCiTokens, throttle: new LoginThrottle(throttle) }, checker };
}

type Outcome = { password: string; status: number; log: LoginLog };

function attempt(logins: LoginServices, password: string, finished: Outcome[]): Promise<Outcome> {
  const log: LoginLog = {};
  return logIn(logins, { user: 'alice', password }, '203.0.113.9', 'https://registry.test', log).then(
    () => ({ password, status: 200, log }),
    (error: unknown) => {
      if (!(error instanceof RegistryError)) throw error;
      return { password, status: error.status, log };
    },
  ).then((outcome) => {
    finished.push(outcome);
    return outcome;
  });
}

describe('logins under the throttle', () => {
  it('checks 40 parallel guesses at most five at once, then one at a time; the right one among them gets in', async (t) => {
    const { logins, checker } = await services(t, { baseDelayMs: 1, maxDelayMs: 8 });
    const finished: Outcome[] = [];
    const passwords = Array.from({ length: 40 }, (_, i) => (i === 20 ? 'alice-password' : `guess ${i}`));
    const outcomes = await Promise.all(passwords.map((password) => attempt(logins, password, finished)));
    assert.ok(checker.mostAtOnce <= 5, `${checker.mostAtOnce} guesses were checked at once`);
    assert.equal(checker.checks, 40, 'every guess was checked in its turn, none refused');
    assert.equal(outcomes[20]!.status, 200);
    assert.deepEqual(new Set(outcomes.filter((outcome) => outcome.password !== 'alice-password').map((outcome) => outcome.status)), new Set([401]));
    assert.equal(outcomes.filter((outcome) => outcome.log.throttled !== true).length, 5, 'five went without waiting their turn');
    for (const outcome of outcomes) assert.ok(outcome.log.reason === undefined ? outcome.status === 200 : outcome.log.reason === 'wrong password');
  });

  it('answers a password proven right before at once while wrong guesses from the same address are held and queued', async (t) => {
    const { logins } = await services(t, { baseDelayMs: 100 });
    const finished: Outcome[] = [];
    assert.equal((await attempt(logins, 'alice-password', finished)).status, 200, 'alice has logged in before');
    for (let i = 0; i < 8; i++) assert.equal((await attempt(logins, `warm-up guess ${i}`, finished)).status, 401);
    // The next failure is the ninth: its answer is held 100 ms * 2^3.
    const wrong = attempt(logins, 'another guess', finished);
    const queued = attempt(logins, 'yet another guess', finished);
    const right = attempt(logins, 'alice-password', finished);
    assert.equal((await right).status, 200);
    assert.equal((await wrong).status, 401, 'the held guess is answered, late, not refused');
    assert.equal((await queued).status, 401);
    assert.deepEqual(
      finished.slice(-3).map((outcome) => outcome.password),
      ['alice-password', 'another guess', 'yet another guess'],
      'the right password did not wait for the held answer',
    );
  });

  it('never throttles a password verified moments ago, and logs the name tried and the reason', async (t) => {
    const { logins, checker } = await services(t, { baseDelayMs: 60_000 });
    const cached = new Authenticator(logins.users, checker, { cacheTtlMs: 3_600_000 });
    const withCache = { ...logins, authenticator: cached };
    const finished: Outcome[] = [];
    assert.equal((await attempt(withCache, 'alice-password', finished)).status, 200);
    for (let i = 0; i < 5; i++) await attempt(withCache, `guess ${i}`, finished);
    const checksBefore = checker.checks;
    const again = await Promise.all([1, 2, 3].map(() => attempt(withCache, 'alice-password', finished)));
    assert.deepEqual(again.map((outcome) => outcome.status), [200, 200, 200]);
    assert.equal(checker.checks, checksBefore, 'no bcrypt run, so no guess');
    const log: LoginLog = {};
    await assert.rejects(logIn(withCache, { user: 'nobody', password: 'x' }, '203.0.113.9', 'https://registry.test', log));
    assert.deepEqual(log, { user: 'nobody', reason: 'unknown user' });
  });
});
