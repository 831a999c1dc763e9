// Tests for OIDC sign-in settings and personal access tokens: the oidc provider entry, claims to user and groups, and token records that work without an htpasswd user.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { CiTokenAuthenticator } from '../src/auth/ci-token-authenticator.js';
import { CiTokenStore } from '../src/auth/ci-token-store.js';
import { createCiToken, listCiTokens, revokeCiToken, revokeCiTokensOfUser } from '../src/auth/ci-tokens.js';
import { userFromClaims, type ClaimsConfig } from '../src/auth/oidc-claims.js';
import type { OidcProviderConfig } from '../src/auth/oidc-config.js';
import { loadConfig } from '../src/config/config.js';
import { ConfigError, FileFormatError } from '../src/errors.js';

async function folder(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'oidc-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function providerFrom(t: TestContext, lines: string[]): Promise<OidcProviderConfig> {
  const dir = await folder(t);
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(file, ['providers:', '  - type: oidc', ...lines.map((line) => `    ${line}`), ''].join('\n'));
  const providers = loadConfig({ file, env: {}, cwd: dir }).config.providers ?? [];
  return providers.find((provider) => provider.type === 'oidc') as OidcProviderConfig;
}

const minimal = ['issuer: https://id.example.com/realms/acme', 'client_id: registry', 'client_secret_file: oidc-secret'];

describe('the oidc provider entry', () => {
  it('has defaults for the claims, scopes and token lifetime, and takes paths from the settings file folder', async (t) => {
    const config = await providerFrom(t, minimal);
    assert.equal(config.name, 'oidc');
    assert.equal(config.usernameClaim, 'preferred_username');
    assert.equal(config.groupsClaim, 'groups');
    assert.deepEqual(config.scopes, ['openid', 'profile', 'email']);
    assert.equal(config.tokenTtlSeconds, 30 * 86_400);
    assert.equal(config.clientAuth, 'client_secret_basic');
    assert.ok(path.isAbsolute(config.clientSecretFile));
    const custom = await providerFrom(t, [...minimal, 'scopes: openid groups', 'token_ttl: 12w', 'group_map:', '  "Registry Admins": [admins, ops]', 'allowed_groups: [staff]']);
    assert.deepEqual(custom.scopes, ['openid', 'groups']);
    assert.equal(custom.tokenTtlSeconds, 84 * 86_400);
    assert.deepEqual(custom.groupMap.get('Registry Admins'), ['admins', 'ops']);
    assert.deepEqual([...(custom.allowedGroups ?? [])], ['staff']);
  });

  const refused: [lines: string[], key: RegExp][] = [
    [['client_id: registry', 'client_secret_file: s'], /providers\[0\]\.issuer: required/],
    [['issuer: http://id.example.com', 'client_id: registry', 'client_secret_file: s'], /providers\[0\]\.issuer: must be an https:\/\/ URL/],
    [minimal.slice(0, 2), /providers\[0\]\.client_secret_file: required/],
    [[...minimal, 'scopes: [profile, email]'], /providers\[0\]\.scopes: must include openid/],
    [[...minimal, 'token_ttl: 366d'], /providers\[0\]\.token_ttl: must be from 1h to 365d/],
    [[...minimal, 'token_ttl: never'], /providers\[0\]\.token_ttl/],
    [[...minimal, 'username_claim: "a b"'], /providers\[0\]\.username_claim/],
    [[...minimal, 'user_prefix: "a:"'], /providers\[0\]\.user_prefix/],
    [[...minimal, 'client_secret: inline'], /providers\[0\]\.client_secret: unknown key/],
  ];
  for (const [lines, message] of refused) {
    it(`refuses ${lines.at(-1)}, naming the key and line`, async (t) => {
      await assert.rejects(providerFrom(t, lines), (error: unknown) => error instanceof ConfigError && message.test(error.message) && /gateway\.yaml:\d+:\d+/.test(error.message));
    });
  }
});

describe('claims to a user', () => {
  const base: ClaimsConfig = { usernameClaim: 'preferred_username', groupsClaim: 'groups', userPrefix: '', groupMap: new Map([['ops', ['operators']]]), unmappedGroups: 'keep', allowedUsers: undefined, allowedGroups: undefined };

  it('names the user by the claim, maps groups and keeps the unmapped ones', () => {
    assert.deepEqual(userFromClaims(base, { sub: 's1', preferred_username: 'alice', groups: ['ops', 'dev', 'dev', 3, ''] }), { ok: true, user: { user: 'alice', subject: 's1', groups: ['operators', 'dev'] } });
    assert.deepEqual(userFromClaims({ ...base, unmappedGroups: 'ignore', userPrefix: 'sso-' }, { sub: 's1', preferred_username: 'alice', groups: 'ops' }), { ok: true, user: { user: 'sso-alice', subject: 's1', groups: ['operators'] } });
  });

  it('refuses a missing subject or name, a name that cannot be a user name, and users the allow lists leave out', () => {
    const refused = (claims: Record<string, unknown>, config: ClaimsConfig = base) => {
      const verdict = userFromClaims(config, claims);
      return verdict.ok ? '' : verdict.reason;
    };
    assert.match(refused({ preferred_username: 'alice' }), /subject/);
    assert.match(refused({ sub: 's1' }), /no preferred_username claim/);
    assert.match(refused({ sub: 's1', preferred_username: 'a:b' }), /cannot be a user name/);
    assert.match(refused({ sub: 's1', preferred_username: 'a b' }), /cannot be a user name/);
    const allowed = { ...base, allowedUsers: new Set(['bob']), allowedGroups: new Set(['staff']) };
    assert.match(refused({ sub: 's1', preferred_username: 'alice', groups: ['dev'] }, allowed), /allowed_users/);
    assert.equal(refused({ sub: 's1', preferred_username: 'alice', groups: ['staff'] }, allowed), '');
    assert.equal(refused({ sub: 's2', preferred_username: 'bob' }, allowed), '');
  });
});

describe('personal access tokens in the CI-token file', () => {
  const origin = { source: 'oidc' as const, provider: 'sso', subject: 'sub-1', groups: ['developers'] };
  const none = { has: () => false };

  it('work without an htpasswd user, carry their groups and no scope limit, and only while their provider is configured', async (t) => {
    const file = path.join(await folder(t), 'ci-tokens.json');
    const token = await createCiToken(file, { user: 'alice', scopes: [], ttlSeconds: 3600, origin });
    assert.deepEqual({ source: token.record.source, provider: token.record.provider, subject: token.record.subject, groups: token.record.groups, scopes: token.record.scopes }, { ...origin, scopes: [] });
    const store = await CiTokenStore.load(file, { users: none, signInProviders: new Set(['sso']) });
    const answer = await new CiTokenAuthenticator(store).authenticate({ user: 'alice', password: token.credential, source: 'test' });
    assert.deepEqual(answer, { kind: 'yes', identity: { user: 'alice', credential: `ci:${token.id}`, groups: ['developers'] } });
    assert.deepEqual(new CiTokenAuthenticator(store).revalidate({ user: 'alice', credential: `ci:${token.id}` }), { user: 'alice', credential: `ci:${token.id}`, groups: ['developers'] });
    assert.equal(store.activeScopes(token.id), undefined, 'read as CI token scopes, it grants nothing');

    const unconfigured = await CiTokenStore.load(file, { users: none });
    assert.deepEqual(unconfigured.verify('alice', token.credential), { outcome: 'invalid' });
    const shadowed = await CiTokenStore.load(file, { users: { has: (user) => user === 'alice' }, signInProviders: new Set(['sso']) });
    assert.deepEqual(shadowed.verify('alice', token.credential), { outcome: 'invalid' }, 'an htpasswd user of the same name is someone else');
    assert.deepEqual(store.verify('alice', token.credential, new Date(Date.now() + 3601_000)), { outcome: 'invalid' }, 'expired');
  });

  it('must expire and name their sign-in; removing an htpasswd user of the same name leaves them', async (t) => {
    const file = path.join(await folder(t), 'ci-tokens.json');
    await assert.rejects(createCiToken(file, { user: 'alice', scopes: [], ttlSeconds: null, origin }), /must expire/);
    await assert.rejects(createCiToken(file, { user: 'alice', scopes: [], ttlSeconds: 60 }), /at least one scope/);
    const token = await createCiToken(file, { user: 'alice', scopes: [], ttlSeconds: 60, origin });
    assert.equal(await revokeCiTokensOfUser(file, 'alice'), 0);
    assert.equal(await revokeCiToken(file, token.id, (record) => record.subject === 'someone-else'), false);
    assert.equal((await listCiTokens(file)).length, 1);
    assert.equal(await revokeCiToken(file, token.id, (record) => record.subject === 'sub-1'), true);
  });

  it('a file of older tokens reads as before; a record mixing the kinds is refused whole', async (t) => {
    const file = path.join(await folder(t), 'ci-tokens.json');
    const old = await createCiToken(file, { user: 'ci', scopes: [{ type: 'repository', name: 'app', actions: ['pull'] }], ttlSeconds: null });
    const text = await readFile(file, 'utf8');
    assert.doesNotMatch(text, /source|subject|groups/);
    assert.deepEqual((await listCiTokens(file))[0], old.record);
    const json = JSON.parse(text) as { tokens: Record<string, unknown>[] };
    const variants: [change: Record<string, unknown>, message: RegExp][] = [
      [{ groups: ['x'] }, /tokens\[0\]\.groups: only a token of source oidc has it/],
      [{ scopes: [] }, /tokens\[0\]\.scopes: must hold at least one scope/],
      [{ source: 'oidc', provider: 'sso', subject: 's', groups: [] }, /tokens\[0\]\.expiresAt: a token of source oidc must expire/],
      [{ source: 'oidc', provider: 'sso', groups: [], expiresAt: '2030-01-01T00:00:00.000Z' }, /tokens\[0\]\.subject: required/],
      [{ source: 'ldap' }, /source/],
    ];
    for (const [change, message] of variants) {
      await writeFile(file, JSON.stringify({ version: 1, tokens: [{ ...json.tokens[0], ...change }] }));
      await assert.rejects(listCiTokens(file), (error: unknown) => error instanceof FileFormatError && message.test(error.message), JSON.stringify(change));
    }
  });
});
