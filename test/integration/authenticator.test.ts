// Tests for password checks: bcrypt in worker threads shared fairly between sources, the success cache and its invalidation, unknown users.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { Authenticator, PasswordChecker, type PasswordCheckerOptions } from '../../src/auth/authenticator.js';
import { RegistryError } from '../../src/errors.js';
import { UserStore } from '../../src/auth/htpasswd.js';

const run = promisify(execFile);

/** A hash made by Apache's own `htpasswd -nbB`. */
async function apacheHash(password: string, cost: number): Promise<string> {
  const { stdout } = await run('htpasswd', ['-nbB', '-C', String(cost), 'user', password]);
  return stdout.trim().slice('user:'.length);
}

/** Counts the bcrypt comparisons that actually reach the pool, and whose turn they waited for. */
class CountingChecker extends PasswordChecker {
  readonly verified: string[] = [];
  readonly sources: string[] = [];

  override verify(password: string, hash: string, source?: string): Promise<boolean> {
    this.verified.push(hash);
    this.sources.push(source ?? 'local');
    return super.verify(password, hash, source);
  }
}

async function storeWith(t: TestContext, lines: Record<string, string>): Promise<{ store: UserStore; file: string }> {
  const folder = await mkdtemp(path.join(tmpdir(), 'authenticator-test-'));
  t.after(() => rm(folder, { recursive: true, force: true }));
  const file = path.join(folder, 'htpasswd');
  await writeUsers(file, lines);
  return { store: await UserStore.load(file), file };
}

async function writeUsers(file: string, lines: Record<string, string>): Promise<void> {
  await writeFile(file, Object.entries(lines).map(([user, hash]) => `${user}:${hash}\n`).join(''));
}

function checkerFor(t: TestContext, options?: PasswordCheckerOptions): CountingChecker {
  const checker = new CountingChecker(options);
  t.after(() => checker.close());
  return checker;
}

describe('PasswordChecker', () => {
  const checker = new PasswordChecker({ maxThreads: 2 });
  let hash = '';
  before(async () => {
    hash = await apacheHash('open sesame', 5);
  });
  after(() => checker.close());

  it('verifies hashes written by Apache htpasswd -B and rejects wrong passwords', async () => {
    assert.match(hash, /^\$2y\$05\$/);
    assert.equal(await checker.verify('open sesame', hash), true);
    assert.equal(await checker.verify('open sesame!', hash), false);
    assert.equal(await checker.verify('', hash), false);
  });

  it('accepts the same hash under the $2a$ and $2b$ prefixes', async () => {
    for (const prefix of ['$2a$', '$2b$']) {
      const variant = prefix + hash.slice(4);
      assert.equal(await checker.verify('open sesame', variant), true, prefix);
      assert.equal(await checker.verify('close sesame', variant), false, prefix);
    }
  });

  it('hashes in the $2y$ form at the given cost', async () => {
    const made = await checker.hash('pw', 4);
    assert.match(made, /^\$2y\$04\$[./A-Za-z0-9]{53}$/);
    assert.equal(await checker.verify('pw', made), true);
  });

  it('refuses work beyond its queue with TOOMANYREQUESTS', async (t) => {
    const small = checkerFor(t, { maxThreads: 1, maxQueue: 1 });
    const slowHash = await checker.hash('pw', 8);
    const accepted = [small.verify('pw', slowHash), small.verify('pw', slowHash)];
    await assert.rejects(
      small.verify('pw', slowHash),
      (error: unknown) => error instanceof RegistryError && error.code === 'TOOMANYREQUESTS' && error.status === 429,
    );
    assert.deepEqual(await Promise.all(accepted), [true, true]);
    assert.equal(await small.verify('pw', slowHash), true); // room again once the queue drained
  });

  it('takes turns between sources: 300 checks from one address neither starve nor refuse another', async (t) => {
    const fair = checkerFor(t, { maxThreads: 1 });
    const slowHash = await checker.hash('pw', 8);
    const finished: string[] = [];
    const flood = Array.from({ length: 300 }, (_, i) =>
      fair.verify(`guess ${i}`, slowHash, '203.0.113.9').then(
        () => void finished.push('flood'),
        (error: unknown) => {
          assert.ok(error instanceof RegistryError && error.code === 'TOOMANYREQUESTS', String(error));
          return 'refused';
        },
      ),
    );
    const alice = fair.verify('pw', slowHash, '198.51.100.7').then((matches) => {
      finished.push('alice');
      return matches;
    });
    assert.equal(await alice, true);
    const outcomes = await Promise.all(flood);
    const refused = outcomes.filter((outcome) => outcome === 'refused').length;
    assert.equal(refused, 300 - 1 - 16, 'one runs, sixteen wait, the rest of that source is refused');
    // Ahead of alice: the flood's running check and its next turn, not its other fifteen waiting.
    assert.ok(finished.indexOf('alice') <= 2, `alice waited for ${finished.indexOf('alice')} checks`);
  });

  it('keeps the event loop running while bcrypt works', async () => {
    const costly = await checker.hash('pw', 12);
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 1);
    try {
      const results = await Promise.all([1, 2, 3, 4].map(() => checker.verify('pw', costly)));
      assert.deepEqual(results, [true, true, true, true]);
    } finally {
      clearInterval(ticker);
    }
    // A main-thread bcrypt would leave the interval no chance to fire in between (0-4 ticks).
    assert.ok(ticks > 20, `the event loop advanced only ${ticks} times`);
  });
});

describe('Authenticator', () => {
  const hashes = { alice: '', bob: '', aliceNew: '' };
  before(async () => {
    [hashes.alice, hashes.bob, hashes.aliceNew] = await Promise.all([
      apacheHash('alice-pw', 5),
      apacheHash('bob-pw', 5),
      apacheHash('alice-new-pw', 5),
    ]);
  });

  it('tells ok, wrong password and unknown user apart', async (t) => {
    const { store } = await storeWith(t, { alice: hashes.alice, bob: hashes.bob });
    const authenticator = new Authenticator(store, checkerFor(t));
    assert.equal(await authenticator.authenticate('alice', 'alice-pw'), 'ok');
    assert.equal(await authenticator.authenticate('alice', 'bob-pw'), 'wrong-password');
    assert.equal(await authenticator.authenticate('bob', 'bob-pw'), 'ok');
    assert.equal(await authenticator.authenticate('carol', 'alice-pw'), 'unknown-user');
    assert.equal(await authenticator.authenticate('ALICE', 'alice-pw'), 'unknown-user');
    assert.equal(await authenticator.authenticate('__proto__', 'x'), 'unknown-user');
  });

  it('remembers a success, but never a failure', async (t) => {
    const { store } = await storeWith(t, { alice: hashes.alice });
    const checker = checkerFor(t);
    const authenticator = new Authenticator(store, checker);
    assert.equal(await authenticator.authenticate('alice', 'alice-pw'), 'ok');
    assert.equal(await authenticator.authenticate('alice', 'alice-pw'), 'ok');
    assert.equal(checker.verified.length, 1);
    assert.equal(await authenticator.authenticate('alice', 'nope'), 'wrong-password');
    assert.equal(await authenticator.authenticate('alice', 'nope'), 'wrong-password');
    assert.equal(checker.verified.length, 3);
  });

  it('stops honouring a cached success as soon as the password changes in the file', async (t) => {
    const { store, file } = await storeWith(t, { alice: hashes.alice, bob: hashes.bob });
    const authenticator = new Authenticator(store, checkerFor(t), { cacheTtlMs: 3_600_000 });
    assert.equal(await authenticator.authenticate('alice', 'alice-pw'), 'ok');
    await writeUsers(file, { alice: hashes.aliceNew, bob: hashes.bob });
    await store.reload();
    assert.equal(await authenticator.authenticate('alice', 'alice-pw'), 'wrong-password');
    assert.equal(await authenticator.authenticate('alice', 'alice-new-pw'), 'ok');
  });

  it('stops honouring a cached success as soon as the user is removed', async (t) => {
    const { store, file } = await storeWith(t, { alice: hashes.alice, bob: hashes.bob });
    const authenticator = new Authenticator(store, checkerFor(t), { cacheTtlMs: 3_600_000 });
    assert.equal(await authenticator.authenticate('alice', 'alice-pw'), 'ok');
    await writeUsers(file, { bob: hashes.bob });
    await store.reload();
    assert.equal(await authenticator.authenticate('alice', 'alice-pw'), 'unknown-user');
  });

  it('checks again once the cached success expires', async (t) => {
    const { store } = await storeWith(t, { alice: hashes.alice });
    const checker = checkerFor(t);
    const authenticator = new Authenticator(store, checker, { cacheTtlMs: 1 });
    assert.equal(await authenticator.authenticate('alice', 'alice-pw'), 'ok');
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(await authenticator.authenticate('alice', 'alice-pw'), 'ok');
    assert.equal(checker.verified.length, 2);
  });

  it('evicts the oldest success when the cache is full', async (t) => {
    const { store } = await storeWith(t, { alice: hashes.alice, bob: hashes.bob });
    const checker = checkerFor(t);
    const authenticator = new Authenticator(store, checker, { maxCacheEntries: 1 });
    await authenticator.authenticate('alice', 'alice-pw');
    await authenticator.authenticate('bob', 'bob-pw');
    await authenticator.authenticate('bob', 'bob-pw');
    assert.equal(checker.verified.length, 2);
    await authenticator.authenticate('alice', 'alice-pw');
    assert.equal(checker.verified.length, 3);
  });

  it('runs bcrypt once for identical checks arriving together', async (t) => {
    const { store } = await storeWith(t, { alice: hashes.alice });
    const checker = checkerFor(t);
    const authenticator = new Authenticator(store, checker);
    const results = await Promise.all(Array.from({ length: 8 }, () => authenticator.authenticate('alice', 'alice-pw')));
    assert.deepEqual(new Set(results), new Set(['ok']));
    assert.equal(checker.verified.length, 1);
    const failures = await Promise.all(Array.from({ length: 4 }, () => authenticator.authenticate('alice', 'bad')));
    assert.deepEqual(new Set(failures), new Set(['wrong-password']));
    assert.equal(checker.verified.length, 2);
  });

  it('makes unknown users pay one bcrypt run at the cost the real users have', async (t) => {
    const { store } = await storeWith(t, { alice: hashes.alice, bob: hashes.bob });
    const checker = checkerFor(t);
    const authenticator = new Authenticator(store, checker);
    assert.equal(await authenticator.authenticate('mallory', 'guess'), 'unknown-user');
    assert.equal(await authenticator.authenticate('mallory', 'guess'), 'unknown-user');
    assert.equal(checker.verified.length, 2);
    for (const hash of checker.verified) assert.match(hash, /^\$2y\$05\$[./A-Za-z0-9]{53}$/);
  });

  it('makes unknown users wait in their own source\'s turn and share identical checks, exactly like known users', async (t) => {
    const { store } = await storeWith(t, { alice: hashes.alice });
    const checker = checkerFor(t);
    const authenticator = new Authenticator(store, checker);
    const unknown = await Promise.all(Array.from({ length: 6 }, () => authenticator.authenticate('mallory', 'guess', '203.0.113.9')));
    assert.deepEqual(new Set(unknown), new Set(['unknown-user']));
    const known = await Promise.all(Array.from({ length: 6 }, () => authenticator.authenticate('alice', 'guess', '203.0.113.9')));
    assert.deepEqual(new Set(known), new Set(['wrong-password']));
    assert.deepEqual(checker.sources, ['203.0.113.9', '203.0.113.9'], 'one bcrypt run each, in the caller\'s turn');
  });

  it('remembers a verified password only while it is fresh and the hash unchanged', async (t) => {
    const { store, file } = await storeWith(t, { alice: hashes.alice });
    const authenticator = new Authenticator(store, checkerFor(t), { cacheTtlMs: 3_600_000 });
    assert.equal(authenticator.remembers('alice', 'alice-pw'), false);
    assert.equal(await authenticator.authenticate('alice', 'alice-pw'), 'ok');
    assert.equal(authenticator.remembers('alice', 'alice-pw'), true);
    assert.equal(authenticator.remembers('alice', 'alice-pw!'), false);
    assert.equal(authenticator.remembers('bob', 'alice-pw'), false);
    await writeUsers(file, { alice: hashes.aliceNew });
    await store.reload();
    assert.equal(authenticator.remembers('alice', 'alice-pw'), false);
  });

  it('accepts passwords over 72 bytes as htpasswd -B stored them, refuses huge ones unchecked', async (t) => {
    const long = 'x'.repeat(100);
    const { store } = await storeWith(t, { alice: await apacheHash(long, 4) });
    const checker = checkerFor(t);
    const authenticator = new Authenticator(store, checker);
    assert.equal(await authenticator.authenticate('alice', long), 'ok');
    assert.equal(await authenticator.authenticate('alice', 'x'.repeat(5000)), 'wrong-password');
    assert.equal(await authenticator.authenticate('nobody', 'x'.repeat(5000)), 'unknown-user');
    assert.equal(checker.verified.length, 1);
  });
});
