// Tests for CI tokens: the credential works as a password for its user only, until it expires or is revoked.

import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { Access } from '../src/access/access.js';
import { CiTokenStore, type KnownUsers } from '../src/auth/ci-token-store.js';
import {
  createCiToken,
  isCiTokenCredential,
  listCiTokens,
  parseCiTokenScopes,
  parseTtl,
  revokeCiToken,
  revokeCiTokensOfUser,
} from '../src/auth/ci-tokens.js';
import { CliError, ConfigError, FileFormatError } from '../src/errors.js';
import { recordingLog } from './helpers/recording-log.js';

async function tokenFile(t: TestContext): Promise<string> {
  const folder = await mkdtemp(path.join(tmpdir(), 'ci-tokens-test-'));
  t.after(() => rm(folder, { recursive: true, force: true }));
  return path.join(folder, 'nested', 'ci-tokens.json');
}

const appPullPush: Access[] = [{ type: 'repository', name: 'app', actions: ['pull', 'push'] }];
const created = new Date('2030-01-01T00:00:00.000Z');
const secondsLater = (seconds: number) => new Date(created.getTime() + seconds * 1000);

/** The part of a credential that must never be written anywhere. */
function secretOf(credential: string): string {
  return credential.slice('gwt_'.length + 12 + 1);
}

/** For tests about something else than whether the token's user exists. */
const anyUser: KnownUsers = { has: () => true };

function cliErrorMentioning(text: string) {
  return (error: unknown) => error instanceof CliError && error.message.includes(text);
}

describe('parseTtl', () => {
  const accepted: [text: string, seconds: number | null][] = [
    ['30d', 30 * 86_400],
    ['12h', 12 * 3600],
    ['90m', 90 * 60],
    ['3600s', 3600],
    ['1w', 604_800],
    ['2W', 2 * 604_800],
    [' 7d ', 7 * 86_400],
    ['never', null],
    ['NEVER', null],
  ];
  for (const [text, seconds] of accepted) {
    it(`${JSON.stringify(text)} -> ${seconds}`, () => assert.equal(parseTtl(text), seconds));
  }

  const refused = ['', '30', 'd', '30x', '-1d', '1.5h', '30 d', '0d', '0s', 'forever', '1d12h', '200000w'];
  for (const text of refused) {
    it(`refuses ${JSON.stringify(text)}, naming it`, () => {
      assert.throws(() => parseTtl(text), cliErrorMentioning(`"${text}"`));
    });
  }
});

describe('isCiTokenCredential', () => {
  it('recognises a created credential and nothing that merely resembles one', async (t) => {
    const file = await tokenFile(t);
    const { credential } = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    assert.match(credential, /^gwt_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/);
    assert.equal(isCiTokenCredential(credential), true);
    for (const password of ['', 'hunter2', 'gwt_', `${credential}x`, credential.slice(0, -1), credential.replace('gwt_', 'gwx_'), ` ${credential}`]) {
      assert.equal(isCiTokenCredential(password), false, password);
    }
  });
});

describe('createCiToken and CiTokenStore.verify', () => {
  it('accepts the credential for its user and returns the record with its scopes', async (t) => {
    const file = await tokenFile(t);
    const token = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: 3600, description: 'nightly build', now: created });
    assert.deepEqual(token.record, {
      id: token.id,
      user: 'ci',
      scopes: appPullPush,
      createdAt: '2030-01-01T00:00:00.000Z',
      expiresAt: '2030-01-01T01:00:00.000Z',
      secretHash: token.record.secretHash,
      description: 'nightly build',
    });
    const store = await CiTokenStore.load(file, { users: anyUser });
    const verdict = store.verify('ci', token.credential, secondsLater(60));
    assert.deepEqual(verdict, { outcome: 'ok', record: token.record });
  });

  it('answers invalid for a wrong secret, another user, an unknown id or after expiry', async (t) => {
    const file = await tokenFile(t);
    const token = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: 3600, now: created });
    const other = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null, now: created });
    const store = await CiTokenStore.load(file, { users: anyUser });
    const secret = secretOf(token.credential);
    const flipped = secret.slice(0, -2) + (secret.at(-2) === 'A' ? 'B' : 'A') + secret.at(-1);
    const cases: [name: string, user: string, credential: string, at: Date][] = [
      ['wrong secret', 'ci', `gwt_${token.id}_${flipped}`, secondsLater(1)],
      ["another token's secret", 'ci', `gwt_${token.id}_${secretOf(other.credential)}`, secondsLater(1)],
      ['another user', 'alice', token.credential, secondsLater(1)],
      ['user differing in case', 'CI', token.credential, secondsLater(1)],
      ['unknown id', 'ci', `gwt_${'a'.repeat(12)}_${secret}`, secondsLater(1)],
      ['at the expiry time', 'ci', token.credential, secondsLater(3600)],
      ['after expiry', 'ci', token.credential, secondsLater(86_400)],
    ];
    for (const [name, user, credential, at] of cases) {
      assert.deepEqual(store.verify(user, credential, at), { outcome: 'invalid' }, name);
    }
    assert.equal(store.verify('ci', token.credential, secondsLater(3599))?.outcome, 'ok');
  });

  it('a token without expiry keeps working decades later', async (t) => {
    const file = await tokenFile(t);
    const token = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null, now: created });
    assert.equal(token.record.expiresAt, null);
    const store = await CiTokenStore.load(file, { users: anyUser });
    assert.equal(store.verify('ci', token.credential, secondsLater(50 * 365 * 86_400))?.outcome, 'ok');
  });

  it('leaves a password that is not a CI credential to htpasswd (undefined)', async (t) => {
    const file = await tokenFile(t);
    await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    const store = await CiTokenStore.load(file, { users: anyUser });
    for (const password of ['', 'correct horse battery staple', 'gwt_short', 'eyJhbGciOiJSUzI1NiJ9.e30.sig']) {
      assert.equal(store.verify('ci', password), undefined, password);
    }
  });

  it('stores no secret, only its sha256, in a file of mode 0600 in a created folder', async (t) => {
    const file = await tokenFile(t);
    const token = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    const text = await readFile(file, 'utf8');
    assert.equal(text.includes(secretOf(token.credential)), false);
    assert.equal(text.includes(token.credential), false);
    assert.equal(text.includes(token.record.secretHash), true);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const parsed = JSON.parse(text) as { version: number; tokens: unknown[] };
    assert.equal(parsed.version, 1);
    assert.deepEqual(parsed.tokens, [token.record]);
  });

  it('gives every token its own id and credential, and loses none when created concurrently', async (t) => {
    const file = await tokenFile(t);
    const tokens = await Promise.all(
      Array.from({ length: 20 }, (_, index) => createCiToken(file, { user: `ci${index}`, scopes: appPullPush, ttlSeconds: null })),
    );
    assert.equal(new Set(tokens.map((token) => token.id)).size, 20);
    const listed = await listCiTokens(file);
    assert.deepEqual(listed.map((record) => record.id).sort(), tokens.map((token) => token.id).sort());
    const store = await CiTokenStore.load(file, { users: anyUser });
    tokens.forEach((token, index) => assert.equal(store.verify(`ci${index}`, token.credential)?.outcome, 'ok'));
  });

  it('refuses invalid scopes, naming them, and requires at least one', async (t) => {
    const file = await tokenFile(t);
    const refused: [scopes: Access[], named: string][] = [
      [[], 'at least one scope'],
      [[{ type: 'repository', name: 'Bad Name', actions: ['pull'] }], 'repository:Bad Name:pull'],
      [[{ type: 'repository', name: 'app', actions: ['pul'] }], '"pul"'],
      [[{ type: 'repository', name: 'app', actions: [] }], 'repository:app:'],
      [[{ type: 'blob', name: 'app', actions: ['pull'] }], 'blob:app:pull'],
      [[{ type: 'registry', name: 'catalog', actions: ['pull'] }], '"pull"'],
    ];
    for (const [scopes, named] of refused) {
      await assert.rejects(createCiToken(file, { user: 'ci', scopes, ttlSeconds: null }), cliErrorMentioning(named));
    }
    await assert.rejects(readFile(file), { code: 'ENOENT' });
  });

  it('refuses user names htpasswd refuses, and bad TTLs and descriptions', async (t) => {
    const file = await tokenFile(t);
    type Options = Parameters<typeof createCiToken>[1];
    const base: Options = { user: 'ci', scopes: appPullPush, ttlSeconds: null };
    const refused: [options: Options, named: string][] = [
      [{ ...base, user: '' }, 'invalid user name'],
      [{ ...base, user: 'ci:admin' }, 'invalid user name'],
      [{ ...base, user: 'c i' }, 'invalid user name'],
      [{ ...base, ttlSeconds: 0 }, 'TTL'],
      [{ ...base, ttlSeconds: 1.5 }, 'TTL'],
      [{ ...base, description: 'two\nlines' }, 'description'],
      [{ ...base, description: 'x'.repeat(201) }, 'description'],
    ];
    for (const [options, named] of refused) {
      await assert.rejects(createCiToken(file, options), cliErrorMentioning(named));
    }
  });
});

describe('parseCiTokenScopes', () => {
  it('reads command-line scopes, several per value, merging repeats', () => {
    assert.deepEqual(parseCiTokenScopes(['repository:app:push,pull', 'repository:app:delete registry:catalog:*']), [
      { type: 'repository', name: 'app', actions: ['delete', 'pull', 'push'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
  });

  it('names the invalid scope', () => {
    assert.throws(() => parseCiTokenScopes(['repository:app:pull', 'repository:app']), cliErrorMentioning('"repository:app"'));
    assert.throws(() => parseCiTokenScopes(['  ']), cliErrorMentioning('at least one scope'));
  });
});

describe('revokeCiToken and reload', () => {
  it('a revoked token stops working after reload, and in a store loaded afterwards', async (t) => {
    const file = await tokenFile(t);
    const revoked = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    const kept = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    const store = await CiTokenStore.load(file, { users: anyUser });
    assert.equal(store.verify('ci', revoked.credential)?.outcome, 'ok');

    assert.equal(await revokeCiToken(file, revoked.id), true);
    assert.equal(await revokeCiToken(file, revoked.id), false);
    assert.equal(store.verify('ci', revoked.credential)?.outcome, 'ok', 'the store changes only on reload');
    await store.reload();
    assert.deepEqual(store.verify('ci', revoked.credential), { outcome: 'invalid' });
    assert.equal(store.verify('ci', kept.credential)?.outcome, 'ok');

    const second = await CiTokenStore.load(file, { users: anyUser });
    assert.deepEqual(second.verify('ci', revoked.credential), { outcome: 'invalid' });
    assert.deepEqual(second.list().map((record) => record.id), [kept.id]);
  });

  it('picks up tokens created after loading', async (t) => {
    const file = await tokenFile(t);
    const store = await CiTokenStore.load(file, { users: anyUser });
    assert.deepEqual(store.list(), []);
    const token = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    assert.deepEqual(store.verify('ci', token.credential), { outcome: 'invalid' });
    await store.reload();
    assert.equal(store.verify('ci', token.credential)?.outcome, 'ok');
  });

  it('keeps the last good set and logs the file and reason when the file turns corrupt', async (t) => {
    const file = await tokenFile(t);
    const token = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    const log = recordingLog();
    const store = await CiTokenStore.load(file, { users: anyUser, logger: log });
    const good = JSON.parse(await readFile(file, 'utf8')) as { version: number; tokens: Record<string, unknown>[] };
    const corrupt: [name: string, text: string][] = [
      ['truncated JSON', '{ "version": 1, "tokens": [ {'],
      ['another version', JSON.stringify({ ...good, version: 2 })],
      ['no tokens list', JSON.stringify({ version: 1 })],
      ['malformed hash', JSON.stringify({ version: 1, tokens: [{ ...good.tokens[0], secretHash: 'abc' }] })],
      ['invalid scope', JSON.stringify({ version: 1, tokens: [{ ...good.tokens[0], scopes: [{ type: 'repository', name: 'UP', actions: ['pull'] }] }] })],
      ['invalid user', JSON.stringify({ version: 1, tokens: [{ ...good.tokens[0], user: 'a:b' }] })],
      ['duplicate id', JSON.stringify({ version: 1, tokens: [good.tokens[0], good.tokens[0]] })],
    ];
    for (const [name, text] of corrupt) {
      await writeFile(file, text);
      const errorsBefore = log.messages('error').length;
      assert.equal(await store.reload(), false, name);
      const logged = log.entries.filter((entry) => entry.level === 'error').slice(errorsBefore);
      assert.equal(logged.length, 1, name);
      assert.ok(String(logged[0]!.fields.err).includes(file), name);
      await assert.rejects(
        CiTokenStore.load(file, { users: anyUser }),
        (error) => error instanceof ConfigError && error.message.startsWith(`GATEWAY_CI_TOKENS (ci_tokens): ${file}`),
        name,
      );
      assert.equal(store.verify('ci', token.credential)?.outcome, 'ok', name);
      assert.deepEqual(store.list(), [token.record], name);
    }
  });

  it('keeps the last good set when the file is deleted, and loads it when it comes back', async (t) => {
    const file = await tokenFile(t);
    const token = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    const log = recordingLog();
    const store = await CiTokenStore.load(file, { users: anyUser, logger: log });
    const saved = await readFile(file, 'utf8');
    await rm(file);
    assert.equal(await store.reload(), false);
    assert.equal(await store.reload(), false);
    assert.equal(store.verify('ci', token.credential)?.outcome, 'ok', 'deleting the file revokes nothing');
    assert.equal(log.messages('error').length, 1, 'logged once, not on every reload');
    assert.match(String(log.entries.find((entry) => entry.level === 'error')!.fields.err), /is missing/);
    await writeFile(file, saved);
    await revokeCiToken(file, token.id);
    assert.equal(await store.reload(), true);
    assert.deepEqual(store.verify('ci', token.credential), { outcome: 'invalid' });
  });

  it('never overwrites a corrupt file when creating or revoking', async (t) => {
    const file = await tokenFile(t);
    const token = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    const corrupt = (await readFile(file, 'utf8')).slice(0, -20);
    await writeFile(file, corrupt);
    await assert.rejects(createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null }), FileFormatError);
    await assert.rejects(revokeCiToken(file, token.id), FileFormatError);
    assert.equal(await readFile(file, 'utf8'), corrupt);
  });

  it('treats a missing file as no tokens', async (t) => {
    const file = await tokenFile(t);
    assert.deepEqual(await listCiTokens(file), []);
    assert.equal(await revokeCiToken(file, 'abcdefghijkl'), false);
    await assert.rejects(readFile(file), { code: 'ENOENT' }, 'revoking from a missing file creates nothing');
    const store = await CiTokenStore.load(file, { users: anyUser });
    assert.deepEqual(store.list(), []);
  });

  it('edits through a symlink without replacing the link', async (t) => {
    const file = await tokenFile(t);
    await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    const link = path.join(path.dirname(file), 'link.json');
    await symlink(file, link);
    const token = await createCiToken(link, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    assert.equal((await lstat(link)).isSymbolicLink(), true);
    assert.equal((await listCiTokens(file)).length, 2);
    const store = await CiTokenStore.load(link, { users: anyUser });
    assert.equal(store.verify('ci', token.credential)?.outcome, 'ok');
  });

  it('list() and verify() hand out copies that cannot change what later checks grant', async (t) => {
    const file = await tokenFile(t);
    const token = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    const store = await CiTokenStore.load(file, { users: anyUser });
    store.list()[0]!.scopes[0]!.actions.push('delete');
    const first = store.verify('ci', token.credential);
    assert.ok(first?.outcome === 'ok');
    first.record.scopes.push({ type: 'registry', name: 'catalog', actions: ['*'] });
    first.record.user = 'admin';
    const again = store.verify('ci', token.credential);
    assert.ok(again?.outcome === 'ok');
    assert.deepEqual(again.record.scopes, appPullPush);
    assert.equal(again.record.user, 'ci');
  });
});

describe('CI tokens and their user', () => {
  it('a token works only while its user exists, for new logins and for tokens already issued', async (t) => {
    const file = await tokenFile(t);
    const token = await createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null });
    const users = new Set(['ci']);
    const store = await CiTokenStore.load(file, { users });
    assert.equal(store.verify('ci', token.credential)?.outcome, 'ok');
    assert.deepEqual(store.activeScopes(token.id), appPullPush);
    users.delete('ci');
    assert.deepEqual(store.verify('ci', token.credential), { outcome: 'invalid' });
    assert.equal(store.activeScopes(token.id), undefined);
    users.add('ci');
    assert.equal(store.verify('ci', token.credential)?.outcome, 'ok');
  });

  it('warns about tokens of users that do not exist when loading', async (t) => {
    const file = await tokenFile(t);
    await createCiToken(file, { user: 'ghost', scopes: appPullPush, ttlSeconds: null });
    const log = recordingLog();
    await CiTokenStore.load(file, { users: new Set(['ci']), logger: log });
    assert.deepEqual(log.messages('warn'), ['CI tokens of user "ghost" do not work: there is no such user in htpasswd']);
  });

  it('revokeCiTokensOfUser removes every token of that user and no other', async (t) => {
    const file = await tokenFile(t);
    const mine = await Promise.all([1, 2].map(() => createCiToken(file, { user: 'ci', scopes: appPullPush, ttlSeconds: null })));
    const other = await createCiToken(file, { user: 'deploy', scopes: appPullPush, ttlSeconds: null });
    assert.equal(await revokeCiTokensOfUser(file, 'ci'), 2);
    assert.deepEqual((await listCiTokens(file)).map((record) => record.id), [other.id]);
    assert.equal(await revokeCiTokensOfUser(file, 'ci'), 0);
    const store = await CiTokenStore.load(file, { users: anyUser });
    for (const token of mine) assert.deepEqual(store.verify('ci', token.credential), { outcome: 'invalid' });
  });
});
