// Logins under attack, end to end: a flood from one address starves nobody, a held guess blocks no right password, parallel guesses count.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { hashPassword } from '../../src/auth/htpasswd.js';
import { basic, startTestGateway } from '../helpers/gateway.js';
import { requestLines, SourceClient } from '../helpers/sources.js';

const tokenPath = '/token?service=registry-gateway';

describe('password checks are shared fairly between sources', () => {
  test('300 concurrent logins with made-up names from one address; a real user from another address gets in', async (t) => {
    // bcrypt cost 12, so checks take long enough that the flood is still queued when the real user comes.
    const folder = await mkdtemp(path.join(os.tmpdir(), 'login-fairness-'));
    t.after(() => rm(folder, { recursive: true, force: true }));
    const htpasswd = path.join(folder, 'htpasswd');
    await mkdir(folder, { recursive: true });
    await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 12)}\nbob:${await hashPassword('bob-password', 12)}\n`);
    const gw = await startTestGateway({ users: {}, env: { GATEWAY_HTPASSWD: htpasswd } });
    t.after(() => gw.close());
    const flood = new SourceClient(gw, '127.0.0.1');
    const alice = new SourceClient(gw, '127.0.0.2');
    t.after(() => {
      flood.close();
      alice.close();
    });
    await Promise.all([flood.open(300), alice.open(1)]);

    let firstRefusal: () => void = () => {};
    const refused = new Promise<void>((resolve) => (firstRefusal = resolve));
    const floodAnswers = Array.from({ length: 300 }, (_, i) =>
      flood.get(tokenPath, { Authorization: basic(`made-up-${i}`, 'guess') }).then((res) => {
        if (res.status === 429) firstRefusal();
        return res;
      }),
    );
    // Only once the flood is being refused does the real user come: the queue is as full as the flood can make it.
    await refused;
    const real = await alice.get(tokenPath, { Authorization: basic('alice', 'alice-password') });
    assert.equal(real.status, 200, real.body);

    const statuses = (await Promise.all(floodAnswers)).map((res) => res.status);
    assert.deepEqual(new Set(statuses), new Set([401, 429]));
    const tooMany = (await Promise.all(floodAnswers)).find((res) => res.status === 429)!;
    assert.equal(JSON.parse(tooMany.body).errors[0].code, 'TOOMANYREQUESTS');
    const logged = requestLines(gw).filter((entry) => entry.path === '/token' && entry.status === 429);
    assert.ok(logged.length > 0 && logged.every((entry) => entry.reason === 'too many password checks waiting' && String(entry.user).startsWith('made-up-')));
  });
});

describe('the throttle holds guesses, never the right password', () => {
  test('a password that worked before gets in at once while wrong guesses from the same address are held and queued', async (t) => {
    const gw = await startTestGateway({ users: { bob: 'bob-password' } });
    t.after(() => gw.close());
    const client = new SourceClient(gw, '127.0.0.3');
    t.after(() => client.close());
    await client.open(10);
    const attempt = (password: string) => client.get(tokenPath, { Authorization: basic('bob', password) });
    assert.equal((await attempt('bob-password')).status, 200, 'bob has logged in before');
    const warmUp = await Promise.all(Array.from({ length: 6 }, (_, i) => attempt(`guess ${i}`)));
    assert.deepEqual(new Set(warmUp.map((res) => res.status)), new Set([401]));
    // Two more guesses wait their turn and are held; the right password goes out right behind them.
    const [first, second, right] = await Promise.all([attempt('one more guess'), attempt('and another'), attempt('bob-password')]);
    assert.equal(right.status, 200, right.body);
    assert.deepEqual([first.status, second.status], [401, 401], 'the held guesses are answered late, not refused');
    assert.ok(right.order < first.order && right.order < second.order, 'the right password was answered before the held wrong ones');
  });

  test('40 parallel guesses on open connections: at most five checked without waiting their turn, the rest spaced out', async (t) => {
    const gw = await startTestGateway({ users: { carol: 'carol-password' } });
    t.after(() => gw.close());
    const client = new SourceClient(gw, '127.0.0.4');
    t.after(() => client.close());
    await client.open(42);
    assert.equal((await client.get(tokenPath, { Authorization: basic('carol', 'carol-password') })).status, 200, 'carol has logged in before');
    const guesses = Array.from({ length: 40 }, (_, i) => client.get(tokenPath, { Authorization: basic('carol', `guess ${i}`) }));
    // Wait until the free guesses have been answered and the first throttled one is being held.
    const checked = () => requestLines(gw).filter((entry) => entry.path === '/token' && entry.status === 401 && entry.user === 'carol');
    while (checked().length < 5) await new Promise((resolve) => setTimeout(resolve, 20));
    const right = await client.get(tokenPath, { Authorization: basic('carol', 'carol-password') });
    assert.equal(right.status, 200, right.body);
    const answered = checked();
    assert.ok(answered.length < 40, `all ${answered.length} guesses were answered before the right password`);
    assert.ok(answered.every((entry) => entry.reason === 'wrong password'));
    const unthrottled = answered.filter((entry) => entry.throttled !== true).length;
    assert.ok(unthrottled <= 5, `${unthrottled} guesses were checked without waiting their turn`);
    // The rest are cut when the gateway stops; none of them got in.
    void Promise.allSettled(guesses);
  });
});
