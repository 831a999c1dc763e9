// A running gateway whose htpasswd, access file or CI token file disappears, breaks or comes back: last good content stays, nothing widens.

import assert from 'node:assert/strict';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { createCiToken } from '../../src/auth/ci-tokens.js';
import { addUser } from '../../src/auth/htpasswd.js';
import { basic, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';

const users = { alice: 'alice-password', bob: 'bob-password' };

/** bob may pull public/**, nothing of alice's. */
const rules = `
rules:
  - users: [authenticated]
    repositories: ["{user}/**"]
    actions: ["*"]
  - users: [bob]
    repositories: ["public/**"]
    actions: [pull]
`;

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`${what} did not happen within 5 s`);
}

interface LogEntry {
  level: number;
  msg: string;
  file?: string;
  err?: string;
}

const ERROR = 50;

function logEntries(gw: TestGateway, since = 0): LogEntry[] {
  return gw.logLines.slice(since).map((line) => JSON.parse(line) as LogEntry);
}

/** Waits until the gateway has logged something about `file` since `since` (whatever it decided). */
async function reacted(gw: TestGateway, file: string, since: number): Promise<void> {
  await eventually(async () => logEntries(gw, since).some((entry) => entry.file === file), `the gateway reacting to ${file}`);
}

/** The access a token request for `scope` gets, as the token's claim lists it. */
async function grantedTo(gw: TestGateway, user: string, password: string, scope: string): Promise<unknown[]> {
  const res = await request(gw, 'GET', `/token?service=registry-gateway&scope=${encodeURIComponent(scope)}`, { headers: { Authorization: basic(user, password) } });
  assert.equal(res.status, 200, res.body);
  return JSON.parse(Buffer.from(res.json().token.split('.')[1], 'base64url').toString()).access as unknown[];
}

async function loginStatus(gw: TestGateway, user: string, password: string): Promise<number> {
  return (await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic(user, password) } })).status;
}

describe('the access file while the gateway runs', () => {
  test('deleting it keeps the last good rules (no grant grows); a valid file put back is loaded', async (t) => {
    const gw = await startTestGateway({ users, access: rules });
    t.after(() => gw.close());
    const file = path.join(gw.dir, 'access.yml');
    const aliceApp = 'repository:alice/app:pull,push';
    assert.deepEqual(await grantedTo(gw, 'bob', 'bob-password', aliceApp), []);

    const marker = gw.logLines.length;
    await rm(file);
    await reacted(gw, file, marker);
    assert.deepEqual(await grantedTo(gw, 'bob', 'bob-password', aliceApp), [], 'bob gains nothing when the file goes');
    assert.deepEqual(await grantedTo(gw, 'bob', 'bob-password', 'repository:public/x:pull'), [{ type: 'repository', name: 'public/x', actions: ['pull'] }]);
    const errors = logEntries(gw, marker).filter((entry) => entry.level === ERROR && entry.file === file);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.err ?? '', /access\.yml is missing/);

    await gw.gateway.reload();
    await gw.gateway.reload();
    assert.equal(logEntries(gw, marker).filter((entry) => entry.level === ERROR && entry.file === file).length, 1, 'the same state is logged once');

    await writeFile(file, `${rules}  - users: [bob]\n    repositories: ["alice/app"]\n    actions: [pull]\n`);
    await eventually(async () => (await grantedTo(gw, 'bob', 'bob-password', aliceApp)).length === 1, 'the restored file being loaded');
    assert.deepEqual(await grantedTo(gw, 'bob', 'bob-password', aliceApp), [{ type: 'repository', name: 'alice/app', actions: ['pull'] }]);
  });

  test('renaming it away keeps the last good rules; a new file renamed into place is loaded', async (t) => {
    const gw = await startTestGateway({ users, access: rules });
    t.after(() => gw.close());
    const file = path.join(gw.dir, 'access.yml');
    const marker = gw.logLines.length;
    await rename(file, `${file}.old`);
    await reacted(gw, file, marker);
    assert.deepEqual(await grantedTo(gw, 'bob', 'bob-password', 'repository:alice/app:pull'), []);
    assert.deepEqual(await grantedTo(gw, 'alice', 'alice-password', 'repository:bob/app:pull'), []);

    const next = path.join(gw.dir, '.access.yml.new');
    await writeFile(next, `${rules}  - users: [alice]\n    repositories: ["bob/app"]\n    actions: [pull]\n`);
    await rename(next, file);
    await eventually(async () => (await grantedTo(gw, 'alice', 'alice-password', 'repository:bob/app:pull')).length === 1, 'the renamed file being loaded');
  });
});

describe('htpasswd while the gateway runs', () => {
  test('renamed away, its users still log in and the error is logged once; renamed back with a new user, it is loaded', async (t) => {
    const gw = await startTestGateway({ users });
    t.after(() => gw.close());
    const moved = `${gw.htpasswd}.moved`;
    const marker = gw.logLines.length;
    await rename(gw.htpasswd, moved);
    await reacted(gw, gw.htpasswd, marker);
    assert.equal(await loginStatus(gw, 'alice', 'alice-password'), 200);
    assert.equal(await loginStatus(gw, 'bob', 'wrong-password'), 401);
    await gw.gateway.reload();
    await gw.gateway.reload();
    const errors = logEntries(gw, marker).filter((entry) => entry.level === ERROR && entry.file === gw.htpasswd);
    assert.equal(errors.length, 1, 'logged once per change of state, not on every reload');
    assert.match(errors[0]!.err ?? '', /is missing/);

    await addUser(moved, 'carol', 'carol-password', 4);
    await rename(moved, gw.htpasswd);
    await eventually(async () => (await loginStatus(gw, 'carol', 'carol-password')) === 200, 'the file coming back being loaded');
    assert.equal(await loginStatus(gw, 'alice', 'alice-password'), 200);
  });
});

describe('the CI token file while the gateway runs', () => {
  test('deleting it keeps the tokens working; a broken version is reported and the tokens stay', async (t) => {
    const gw = await startTestGateway({ users });
    t.after(() => gw.close());
    const file = path.join(gw.dir, 'htpasswd', 'ci-tokens.json');
    const created = await createCiToken(file, { user: 'alice', scopes: [{ type: 'repository', name: 'alice/app', actions: ['pull'] }], ttlSeconds: null });
    await eventually(async () => (await loginStatus(gw, 'alice', created.credential)) === 200, 'the new token being loaded');
    const saved = await readFile(file, 'utf8');

    let marker = gw.logLines.length;
    await rm(file);
    await reacted(gw, file, marker);
    assert.equal(await loginStatus(gw, 'alice', created.credential), 200, 'deleting the file revokes nothing');
    assert.deepEqual(await grantedTo(gw, 'alice', created.credential, 'repository:alice/app:pull,push'), [{ type: 'repository', name: 'alice/app', actions: ['pull'] }]);

    marker = gw.logLines.length;
    await writeFile(file, saved.slice(0, -10));
    await reacted(gw, file, marker);
    const errors = logEntries(gw, marker).filter((entry) => entry.level === ERROR && entry.file === file);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.err ?? '', /not valid JSON/);
    assert.equal(await loginStatus(gw, 'alice', created.credential), 200);
  });
});
