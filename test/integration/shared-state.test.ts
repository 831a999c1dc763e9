// Three gateways on one real Redis: the sixth wrong password is held across all three, revocations and maintenance reach all at once, and Redis going away changes nothing for clients.

import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { addUser } from '../../src/auth/htpasswd.js';
import { createCiToken, revokeCiToken } from '../../src/auth/ci-tokens.js';
import { switchOff, switchOn } from '../../src/ops/maintenance-file.js';
import { basic, fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { eventually } from '../helpers/processes.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { RedisSharedState } from '../../src/state/redis-state.js';
import { RegistryApi } from '../helpers/registry-api.js';
import { runCli } from '../helpers/run-cli.js';
import { requestLines } from '../helpers/sources.js';

const tokenPath = '/token?service=registry-gateway';
const users = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'ci'];

function tokenLines(gw: TestGateway, user: string): Record<string, any>[] {
  return requestLines(gw).filter((entry) => entry.path === '/token' && entry.user === user);
}

/** One login at /token as docker does it: its status, and whether the gateway held it back as a throttled guess. */
async function login(gw: TestGateway, user: string, password: string): Promise<{ status: number; throttled: boolean }> {
  const before = tokenLines(gw, user).length;
  const res = await request(gw, 'GET', tokenPath, { headers: { Authorization: basic(user, password) } });
  assert.ok(await eventually(() => tokenLines(gw, user).length > before, 50), 'the login is logged');
  return { status: res.status, throttled: tokenLines(gw, user).at(-1)!.throttled === true };
}

/** Six wrong passwords for `user`, one after another, taking turns over the gateways. */
async function sixWrongPasswords(gateways: TestGateway[], user: string) {
  const outcomes = [];
  for (let i = 0; i < 6; i++) outcomes.push(await login(gateways[i % gateways.length]!, user, `wrong guess ${i}`));
  return outcomes;
}

async function metric(gw: TestGateway, name: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${gw.gateway.metricsPort}/metrics`);
  return (await res.text()).split('\n').filter((line) => line.startsWith(name)).join('\n');
}

/** A gateway in front of the first one's registry, with the first one's users and its own copy of the CI tokens. */
async function startMore(first: TestGateway, count: number, env: Record<string, string>, tokenFiles: string[] = []): Promise<TestGateway[]> {
  const more = [];
  for (let i = 0; i < count; i++) {
    const tokens: Record<string, string> = tokenFiles[i] ? { GATEWAY_CI_TOKENS: tokenFiles[i]! } : {};
    more.push(await startTestGateway({ users: {}, upstream: first.registry!.url, env: { GATEWAY_HTPASSWD: first.htpasswd, ...tokens, ...env } }));
  }
  return more;
}

async function addUsers(gw: TestGateway): Promise<void> {
  for (const user of users) await addUser(gw.htpasswd, user, `${user}-password`, 4);
}

describe('gateways without shared state count on their own, as before', () => {
  const gateways: TestGateway[] = [];
  before(async () => {
    const env = { GATEWAY_METRICS_LISTEN: '' };
    gateways.push(await startTestGateway({ users: {}, env }));
    await addUsers(gateways[0]!);
    gateways.push(...(await startMore(gateways[0]!, 2, env)));
  });
  after(() => Promise.all(gateways.map((gw) => gw.close())));

  test('a single gateway holds back the sixth wrong password; three gateways each see only two', async () => {
    const single = await sixWrongPasswords([gateways[0]!], 'alice');
    assert.deepEqual(single.map((outcome) => outcome.status), [401, 401, 401, 401, 401, 401]);
    assert.deepEqual(single.map((outcome) => outcome.throttled), [false, false, false, false, false, true]);
    const spread = await sixWrongPasswords(gateways, 'bob');
    assert.deepEqual(spread.map((outcome) => outcome.throttled), [false, false, false, false, false, false]);
    assert.equal(gateways.some((gw) => gw.logLines.some((line) => line.includes('Redis'))), false, 'nothing about Redis is said');
  });
});

describe('three gateways sharing one Redis', () => {
  let redis: TestRedis;
  let folder: string;
  const gateways: TestGateway[] = [];
  let ciToken: { id: string; credential: string };
  let pageToken: { id: string; credential: string };
  const copies: string[] = [];

  before(async () => {
    redis = await startRedis();
    folder = await mkdtemp(path.join(os.tmpdir(), 'shared-state-'));
    const env = { GATEWAY_REDIS_URL: redis.url, GATEWAY_METRICS_LISTEN: '127.0.0.1:0' };
    const first = await startTestGateway({ users: {}, env });
    gateways.push(first);
    await addUsers(first);
    // Each of the others reads its own copy of the token file: only a notice can tell them of a revocation.
    const tokens = path.join(first.dir, 'htpasswd', 'ci-tokens.json');
    ciToken = await createCiToken(tokens, { user: 'ci', scopes: [{ type: 'repository', name: 'ci/app', actions: ['pull'] }], ttlSeconds: 3600 });
    pageToken = await createCiToken(tokens, { user: 'ci', scopes: [{ type: 'repository', name: 'ci/web', actions: ['pull'] }], ttlSeconds: 3600 });
    for (const name of ['b.json', 'c.json']) {
      copies.push(path.join(folder, name));
      await copyFile(tokens, path.join(folder, name));
    }
    gateways.push(...(await startMore(first, 2, env, copies)));
  });

  after(async () => {
    await Promise.all(gateways.map((gw) => gw.close()));
    await redis.stop();
    await rm(folder, { recursive: true, force: true });
  });

  test('each gateway says it shares its state, and the metric says Redis is up', async () => {
    for (const gw of gateways) {
      assert.ok(gw.logLines.some((line) => line.includes('Redis answers: login failures')), 'logged once connected');
      assert.equal(await metric(gw, 'registry_gateway_shared_state_up'), 'registry_gateway_shared_state_up{backend="redis"} 1');
    }
  });

  test('the sixth wrong password for a user across all three is held back as one gateway holds it; the right one still gets in', async () => {
    const outcomes = await sixWrongPasswords(gateways, 'carol');
    assert.deepEqual(outcomes.map((outcome) => outcome.status), [401, 401, 401, 401, 401, 401]);
    assert.deepEqual(outcomes.map((outcome) => outcome.throttled), [false, false, false, false, false, true]);
    assert.equal((await login(gateways[0]!, 'carol', 'wrong guess 6')).throttled, true, 'and the seventh, at another gateway');
    assert.equal((await login(gateways[1]!, 'carol', 'carol-password')).status, 200);
    assert.equal((await login(gateways[2]!, 'carol', 'wrong again')).throttled, false, 'the success cleared the count for all');
  });

  test('eight wrong passwords at once, spread over the three: five are checked at once, the three others wait their turn, as on one gateway', async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => request(gateways[i % 3]!, 'GET', tokenPath, { headers: { Authorization: basic('frank', `burst guess ${i}`) } })));
    assert.deepEqual(answers.map((answer) => answer.status), Array(8).fill(401));
    const lines = () => gateways.flatMap((gw) => tokenLines(gw, 'frank'));
    assert.ok(await eventually(() => lines().length === 8, 50), 'every login is logged');
    assert.equal(lines().filter((line) => line.throttled === true).length, 3);
  });

  test('a CI token revoked with `gateway token revoke` is refused by the other gateways, whose token files still hold it', async () => {
    for (const gw of gateways) assert.equal((await login(gw, 'ci', ciToken.credential)).status, 200);
    const revoked = await runCli(['token', 'revoke', ciToken.id, '--tokens', path.join(gateways[0]!.dir, 'htpasswd', 'ci-tokens.json')], {
      cwd: folder,
      env: { GATEWAY_REDIS_URL: redis.url },
    });
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, /were told at once/);
    for (const gw of gateways.slice(1)) {
      assert.ok(await eventually(async () => (await login(gw, 'ci', ciToken.credential)).status === 401, 50), 'refused');
    }
    for (const copy of copies) assert.match(await readFile(copy, 'utf8'), new RegExp(ciToken.id), 'the copy still holds the token');
    assert.ok(await eventually(async () => (await login(gateways[0]!, 'ci', ciToken.credential)).status === 401, 50));
  });

  test('a token revoked by a gateway itself (as its sign-in pages do) is refused there at once and by the others', async () => {
    for (const gw of gateways) assert.equal((await login(gw, 'ci', pageToken.credential)).status, 200);
    assert.equal(await revokeCiToken(path.join(gateways[0]!.dir, 'htpasswd', 'ci-tokens.json'), pageToken.id), true);
    assert.equal((await login(gateways[0]!, 'ci', pageToken.credential)).status, 401, 'before the gateway reads its file again');
    for (const gw of gateways.slice(1)) {
      assert.ok(await eventually(async () => (await login(gw, 'ci', pageToken.credential)).status === 401, 50), 'refused');
    }
  });

  test('maintenance switched in one gateway\'s file is in force at all three; `gateway maintenance off` elsewhere ends it at all three', async () => {
    const tokens = await Promise.all(gateways.map((gw) => fetchToken(gw, 'dave', 'dave-password', ['repository:dave/app:pull,push'])));
    const startUpload = (i: number) => request(gateways[i]!, 'POST', '/v2/dave/app/blobs/uploads/', { headers: { Authorization: `Bearer ${tokens[i]}` } });
    for (let i = 0; i < 3; i++) assert.equal((await startUpload(i)).status, 202);
    const file = path.join(gateways[0]!.dir, 'maintenance', 'maintenance.json');
    await switchOn(file, 'test', 'shared-state test');
    for (let i = 0; i < 3; i++) assert.ok(await eventually(async () => (await startUpload(i)).status === 503), `gateway ${i} refuses writes`);
    for (const gw of gateways.slice(1)) assert.equal(gw.gateway.maintenanceStatus().reason, 'shared-state test');
    // Switched off on a host of its own (a file no gateway reads): only Redis carries it, and it was switched last.
    const off = await runCli(['maintenance', 'off'], { cwd: folder, env: { GATEWAY_REDIS_URL: redis.url, GATEWAY_MAINTENANCE_FILE: path.join(folder, 'elsewhere.json') } });
    assert.equal(off.code, 0, off.stderr);
    assert.match(off.stdout, /were told at once/);
    for (let i = 0; i < 3; i++) assert.ok(await eventually(async () => (await startUpload(i)).status === 202), `gateway ${i} accepts writes again`);
    assert.match(await readFile(file, 'utf8'), /"on": true/, 'the first gateway\'s file still says on');
    await switchOff(file, 'test');
  });

  test('Redis stopped and started again: clients notice nothing, a log line and the metric tell, counters resume', async () => {
    const pusher = new RegistryApi(gateways[0]!, await fetchToken(gateways[0]!, 'erin', 'erin-password', ['repository:erin/app:pull,push']));
    const blob = await pusher.uploadBlob('erin/app', Buffer.from('a layer pulled while Redis is away'));

    const marks = gateways.map((gw) => gw.logLines.length);
    await redis.stop();
    for (const gw of gateways) {
      assert.ok(await eventually(() => gw.logLines.some((line) => line.includes('Redis does not answer'))), 'the gateway says it goes on alone');
      assert.equal(await metric(gw, 'registry_gateway_shared_state_up'), 'registry_gateway_shared_state_up{backend="redis"} 0');
    }
    for (const gw of gateways) {
      const token = await fetchToken(gw, 'erin', 'erin-password', ['repository:erin/app:pull']);
      const pulled = await request(gw, 'GET', `/v2/erin/app/blobs/${blob.digest}`, { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(pulled.status, 200);
      assert.equal(pulled.body, 'a layer pulled while Redis is away');
    }
    // Alone again: two wrong passwords at each gateway hold nobody back, as without Redis.
    assert.deepEqual((await sixWrongPasswords(gateways, 'bob')).map((outcome) => [outcome.status, outcome.throttled]), Array(6).fill([401, false]));

    await redis.start();
    for (const gw of gateways) {
      assert.ok(await eventually(() => gw.logLines.some((line) => line.includes('Redis answers again'))), 'the gateway says it shares again');
      assert.equal(await metric(gw, 'registry_gateway_shared_state_up'), 'registry_gateway_shared_state_up{backend="redis"} 1');
    }
    const outcomes = await sixWrongPasswords(gateways, 'alice');
    assert.deepEqual(outcomes.map((outcome) => outcome.throttled), [false, false, false, false, false, true], 'counted across the three again');
    for (const [i, gw] of gateways.entries()) {
      assert.equal(gw.logLines.filter((line) => line.includes('Redis does not answer')).length, 1, 'one line when it went');
      assert.equal(gw.logLines.filter((line) => line.includes('Redis answers again')).length, 1, 'one line when it came back');
      const since = requestLines({ logLines: gw.logLines.slice(marks[i]) });
      assert.ok(since.length >= 6, `${since.length} requests answered meanwhile`);
      assert.equal(since.filter((entry) => entry.status >= 500).length, 0, 'no client got a server error');
    }
  });
});

describe('RedisSharedState counters on a real Redis', () => {
  let redis: TestRedis;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis?.stop());

  test('count up and take back, never below 0, lapsing a window after the last change', async () => {
    const state = new RedisSharedState({ url: new URL(redis.url), prefix: 'test:' });
    await state.start(3_000);
    try {
      assert.equal(await state.addCount('k', 60_000), 1);
      assert.equal(await state.addCount('k', 60_000), 2);
      assert.equal(await state.addCount('k', 60_000, -1), 1);
      assert.equal(await state.addCount('k', 60_000, -1), 0);
      assert.equal(await state.addCount('k', 60_000, -1), 0, 'never below 0');
      assert.equal(await state.addCount('k', 60_000), 1, 'the next guess counts as one');
      assert.equal(await state.addCount('short', 50), 1);
      assert.ok(await eventually(async () => (await state.readCount('short')) === 0, 50), 'lapsed');
    } finally {
      await state.close();
    }
  });
});
