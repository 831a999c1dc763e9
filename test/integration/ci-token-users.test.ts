// A CI token belongs to a user in htpasswd: none for unknown users, and none survives its user, for logins and tokens already issued.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { createCiToken } from '../../src/auth/ci-tokens.js';
import { addUser } from '../../src/auth/htpasswd.js';
import { basic, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { runCli } from '../helpers/run-cli.js';

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`${what} did not happen within 5 s`);
}

async function loginStatus(gw: TestGateway, user: string, password: string): Promise<number> {
  return (await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic(user, password) } })).status;
}

/** An access token for `scope`, from a login with `password` (a CI token). */
async function accessToken(gw: TestGateway, user: string, password: string, scope: string): Promise<string> {
  const res = await request(gw, 'GET', `/token?service=registry-gateway&scope=${encodeURIComponent(scope)}`, { headers: { Authorization: basic(user, password) } });
  assert.equal(res.status, 200, res.body);
  return res.json().token as string;
}

/** Status of a tags request carrying an access token: 401 once the token's credential is gone. */
async function tagsStatus(gw: TestGateway, name: string, token: string): Promise<number> {
  return (await request(gw, 'GET', `/v2/${name}/tags/list`, { headers: { Authorization: `Bearer ${token}` } })).status;
}

describe('CI tokens die with their user', () => {
  test('`gateway user remove` ends them at once (logins and issued access tokens), and adding the user again does not revive them', async (t) => {
    const gw = await startTestGateway({ users: { alice: 'alice-password', buildbot: 'buildbot-password' } });
    t.after(() => gw.close());
    const env = { GATEWAY_HTPASSWD: gw.htpasswd, GATEWAY_CI_TOKENS: path.join(gw.dir, 'htpasswd', 'ci-tokens.json') };
    const created = await runCli(['token', 'create', '--user', 'buildbot', '--scope', 'repository:buildbot/app:pull', '--ttl', '1d'], { cwd: gw.dir, env });
    assert.equal(created.code, 0, created.stderr);
    const credential = created.stdout.trim();
    await eventually(async () => (await loginStatus(gw, 'buildbot', credential)) === 200, 'the new CI token being accepted');
    const issued = await accessToken(gw, 'buildbot', credential, 'repository:buildbot/app:pull');
    assert.notEqual(await tagsStatus(gw, 'buildbot/app', issued), 401);

    const removed = await runCli(['user', 'remove', 'buildbot'], { cwd: gw.dir, env });
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, /removed user "buildbot" from .* and 1 CI token of theirs from .*ci-tokens\.json/);
    await eventually(async () => (await tagsStatus(gw, 'buildbot/app', issued)) === 401, 'the issued access token being refused');
    assert.equal(await loginStatus(gw, 'buildbot', credential), 401);

    await addUser(gw.htpasswd, 'buildbot', 'buildbot-password', 4);
    await eventually(async () => (await loginStatus(gw, 'buildbot', 'buildbot-password')) === 200, 'the user coming back');
    assert.equal(await loginStatus(gw, 'buildbot', credential), 401, 'the token was deleted, not suspended');
    assert.equal(await tagsStatus(gw, 'buildbot/app', issued), 401);
  });

  test('removing the user by editing htpasswd by hand ends their CI tokens at once too', async (t) => {
    const gw = await startTestGateway({ users: { alice: 'alice-password', deployer: 'deployer-password' } });
    t.after(() => gw.close());
    const tokens = path.join(gw.dir, 'htpasswd', 'ci-tokens.json');
    const created = await createCiToken(tokens, { user: 'deployer', scopes: [{ type: 'repository', name: 'deployer/app', actions: ['pull'] }], ttlSeconds: null });
    await eventually(async () => (await loginStatus(gw, 'deployer', created.credential)) === 200, 'the new CI token being accepted');
    const issued = await accessToken(gw, 'deployer', created.credential, 'repository:deployer/app:pull');
    assert.notEqual(await tagsStatus(gw, 'deployer/app', issued), 401);

    const original = await readFile(gw.htpasswd, 'utf8');
    await writeFile(gw.htpasswd, original.split('\n').filter((line) => !line.startsWith('deployer:')).join('\n'));
    await eventually(async () => (await tagsStatus(gw, 'deployer/app', issued)) === 401, 'the issued access token being refused');
    assert.equal(await loginStatus(gw, 'deployer', created.credential), 401);
    assert.equal(await loginStatus(gw, 'alice', 'alice-password'), 200);
  });
});

describe('gateway token create', () => {
  test('refuses a user who is not in htpasswd, naming the file, and writes no token', async (t) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-ghost-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const htpasswd = path.join(dir, 'users', 'htpasswd');
    const tokens = path.join(dir, 'users', 'ci-tokens.json');
    const env = { GATEWAY_HTPASSWD: htpasswd, GATEWAY_CI_TOKENS: tokens };
    const create = (user: string) => runCli(['token', 'create', '--user', user, '--scope', 'repository:app:pull'], { cwd: dir, env });

    const noFile = await create('ghost');
    assert.equal(noFile.code, 1);
    assert.match(noFile.stderr, new RegExp(`^gateway: no user "ghost": ${htpasswd.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not exist; add the user first with \`gateway user add ghost\``));

    await addUser(htpasswd, 'alice', 'alice-password', 4);
    const ghost = await create('ghost');
    assert.equal(ghost.code, 1);
    assert.ok(ghost.stderr.startsWith(`gateway: no user "ghost" in ${htpasswd}; add the user first`), ghost.stderr);
    assert.equal(ghost.stdout, '');
    await assert.rejects(stat(tokens), { code: 'ENOENT' });

    const alice = await create('alice');
    assert.equal(alice.code, 0, alice.stderr);
    assert.match(alice.stdout, /^gwt_[a-z2-7]{12}_\S{43}\n$/);
  });
});
