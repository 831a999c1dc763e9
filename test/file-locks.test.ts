// Edits of htpasswd and the CI token file from several processes at once: every edit lands, or fails saying so.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { lock } from 'proper-lockfile';
import { listCiTokens } from '../src/auth/ci-tokens.js';
import { FileLockError, lockPathOf } from '../src/config/files.js';
import { addUser, listUsers } from '../src/auth/htpasswd.js';
import { runCli } from './helpers/run-cli.js';

const EDITORS = 8;

async function temporaryFolder(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-locks-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('edits from several processes at once', () => {
  test(`${EDITORS} \`gateway user add\` at the same time leave all ${EDITORS} users`, async (t) => {
    const dir = await temporaryFolder(t);
    const htpasswd = path.join(dir, 'htpasswd', 'htpasswd');
    const names = Array.from({ length: EDITORS }, (_, index) => `user${index}`);
    const runs = await Promise.all(
      names.map((name) => runCli(['user', 'add', name, '--password-stdin', '--cost', '4'], { cwd: dir, env: { GATEWAY_HTPASSWD: htpasswd }, input: `${name}-password\n` })),
    );
    for (const run of runs) assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(await listUsers(htpasswd), names);
    await assert.rejects(stat(lockPathOf(htpasswd)), { code: 'ENOENT' }, 'every lock was released');
  });

  test(`${EDITORS} \`gateway token create\` at the same time leave all ${EDITORS} tokens`, async (t) => {
    const dir = await temporaryFolder(t);
    const htpasswd = path.join(dir, 'htpasswd', 'htpasswd');
    const tokens = path.join(dir, 'htpasswd', 'ci-tokens.json');
    await addUser(htpasswd, 'buildbot', 'buildbot-password', 4);
    const env = { GATEWAY_HTPASSWD: htpasswd, GATEWAY_CI_TOKENS: tokens };
    const runs = await Promise.all(
      Array.from({ length: EDITORS }, (_, index) =>
        runCli(['token', 'create', '--user', 'buildbot', '--scope', `repository:app${index}:pull`, '--ttl', '1d'], { cwd: dir, env }),
      ),
    );
    for (const run of runs) assert.equal(run.code, 0, run.stderr);
    const listed = await listCiTokens(tokens);
    assert.equal(listed.length, EDITORS);
    assert.deepEqual(listed.map((record) => record.scopes[0]!.name).sort(), Array.from({ length: EDITORS }, (_, index) => `app${index}`).sort());
  });
});

describe('the edit lock', () => {
  test('an edit that cannot get the lock fails naming the file and the lock, and changes nothing', async (t) => {
    const dir = await temporaryFolder(t);
    const htpasswd = path.join(dir, 'htpasswd');
    await addUser(htpasswd, 'alice', 'alice-password', 4);
    const before = await readFile(htpasswd, 'utf8');
    // Held as another gateway command would hold it: the lock folder, kept fresh while it runs.
    const release = await lock(htpasswd, { realpath: false, lockfilePath: lockPathOf(htpasswd), stale: 5_000 });
    t.after(() => release().catch(() => undefined));
    await assert.rejects(
      addUser(htpasswd, 'bob', 'bob-password', 4),
      (error) => error instanceof FileLockError && error.message.startsWith(`${htpasswd} is being edited by another process (lock ${lockPathOf(htpasswd)}); nothing was changed`),
    );
    assert.equal(await readFile(htpasswd, 'utf8'), before);
  });

  test('a lock left behind by a process that died is taken over', async (t) => {
    const dir = await temporaryFolder(t);
    const htpasswd = path.join(dir, 'htpasswd');
    await mkdir(lockPathOf(htpasswd));
    const longAgo = new Date(Date.now() - 60_000);
    await utimes(lockPathOf(htpasswd), longAgo, longAgo);
    await addUser(htpasswd, 'alice', 'alice-password', 4);
    assert.deepEqual(await listUsers(htpasswd), ['alice']);
  });
});
