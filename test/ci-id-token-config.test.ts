// Tests for the ci-id-token provider entry: errors naming the key, owner pinning for shared issuers, claim globs and user templates.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { describeCiIdTokenProvider, parseCiIdTokenProvider, type CiIdTokenEntry } from '../src/auth/ci-id-token-config.js';
import { compileClaimGlob, compileUserTemplate } from '../src/auth/ci-id-token-match.js';
import { ConfigError } from '../src/errors.js';

/** A providers[2] entry as the providers list hands it over. */
function entryOf(values: Record<string, unknown>): CiIdTokenEntry {
  return {
    where: (key) => `/etc/gateway/gateway.yml:7:5: providers[2]${key === undefined ? '' : `.${key}`}`,
    raw: (key) => values[key],
    resolvePath: (value) => path.resolve('/etc/gateway', value),
  };
}

const github = 'https://token.actions.githubusercontent.com';

function valid(): Record<string, unknown> {
  return {
    login_users: ['ci'],
    issuers: [
      {
        issuer: github,
        audience: 'https://registry.example.com',
        mappings: [{ claims: { repository: 'acme/web', ref: 'refs/heads/main' }, user: 'ci-acme-web', groups: ['ci'] }],
      },
    ],
  };
}

/** `valid()` with one change made by `edit`. */
function edited(edit: (values: { login_users: unknown; issuers: Record<string, unknown>[] }) => void): Record<string, unknown> {
  const values = valid() as { login_users: unknown; issuers: Record<string, unknown>[] };
  edit(values);
  return values;
}

function refusedAs(key: string, reason: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.key, `/etc/gateway/gateway.yml:7:5: ${key}`);
    assert.match(error.reason, reason);
    return true;
  };
}

describe('parseCiIdTokenProvider', () => {
  it('reads a complete entry, audience as a list, groups defaulting to none, ca from the file folder', () => {
    const config = parseCiIdTokenProvider(
      entryOf(
        edited((values) => {
          values.issuers[0]!.ca = 'issuer-ca.pem';
          values.issuers.push({ issuer: 'https://gitlab.example.com', audience: ['a', 'b'], mappings: [{ claims: { project_path: 'x/y' }, user: 'ci-x' }] });
        }),
      ),
      'ci-id-token',
    );
    assert.equal(config.type, 'ci-id-token');
    assert.equal(config.name, 'ci-id-token');
    assert.deepEqual(config.loginUsers, ['ci']);
    assert.deepEqual(config.issuers[0]!.audience, ['https://registry.example.com']);
    assert.equal(config.issuers[0]!.ca, '/etc/gateway/issuer-ca.pem');
    assert.deepEqual(config.issuers[1]!.audience, ['a', 'b']);
    assert.deepEqual(config.issuers[1]!.mappings[0]!.groups, []);
    assert.equal(config.where, '/etc/gateway/gateway.yml:7:5: providers[2]');
    assert.deepEqual(describeCiIdTokenProvider(config).issuers, [
      { issuer: github, audience: ['https://registry.example.com'], jwks_uri: 'discovery', mappings: 1 },
      { issuer: 'https://gitlab.example.com', audience: ['a', 'b'], jwks_uri: 'discovery', mappings: 1 },
    ]);
  });

  const refusals: [string, (values: { login_users: unknown; issuers: Record<string, unknown>[] }) => void, string, RegExp][] = [
    ['a missing audience', (v) => delete v.issuers[0]!.audience, 'providers[2].issuers[0].audience', /^required$/],
    ['no login users', (v) => (v.login_users = undefined), 'providers[2].login_users', /^required$/],
    ['an empty login user list', (v) => (v.login_users = []), 'providers[2].login_users', /at least one user/],
    ['a login user with a colon', (v) => (v.login_users = ['ci:x']), 'providers[2].login_users[0]', /contains ':'/],
    ['no issuers', (v) => (v.issuers = []), 'providers[2].issuers', /at least one issuer/],
    ['an http issuer off loopback', (v) => (v.issuers[0]!.issuer = 'http://idp.example.com'), 'providers[2].issuers[0].issuer', /https:\/\//],
    ['an issuer with a query', (v) => (v.issuers[0]!.issuer = 'https://idp.example.com/?x=1'), 'providers[2].issuers[0].issuer', /query/],
    ['a jwks_uri with credentials', (v) => (v.issuers[0]!.jwks_uri = 'https://u:p@idp.example.com/keys'), 'providers[2].issuers[0].jwks_uri', /password/],
    ['an unknown key', (v) => (v.issuers[0]!.audiences = 'x'), 'providers[2].issuers[0].audiences', /unknown key/],
    ['no mappings', (v) => (v.issuers[0]!.mappings = []), 'providers[2].issuers[0].mappings', /at least one mapping/],
    ['a mapping without claims', (v) => (v.issuers[0]!.mappings = [{ claims: {}, user: 'x' }]), 'providers[2].issuers[0].mappings[0].claims', /at least one claim/],
    ['a glob with ***', (v) => (v.issuers[0]!.mappings = [{ claims: { repository: 'acme/***' }, user: 'x' }]), 'providers[2].issuers[0].mappings[0].claims.repository', /three \*/],
    ['a mapping to "anonymous"', (v) => (v.issuers[0]!.mappings = [{ claims: { repository: 'acme/web' }, user: 'anonymous' }]), 'providers[2].issuers[0].mappings[0].user', /special name/],
    ['a placeholder for an unmatched claim', (v) => (v.issuers[0]!.mappings = [{ claims: { repository: 'acme/*' }, user: 'ci-{actor}' }]), 'providers[2].issuers[0].mappings[0].user', /\{actor\}/],
    ['a stray brace', (v) => (v.issuers[0]!.mappings = [{ claims: { repository: 'acme/*' }, user: 'ci-{repository' }]), 'providers[2].issuers[0].mappings[0].user', /\{ or \}/],
    ['a group that is not text', (v) => (v.issuers[0]!.mappings = [{ claims: { repository: 'acme/web' }, user: 'x', groups: [7] }]), 'providers[2].issuers[0].mappings[0].groups[0]', /must be a string/],
    ['the same issuer twice', (v) => v.issuers.push(v.issuers[0]!), 'providers[2].issuers[1].issuer', /listed twice/],
  ];
  for (const [what, edit, key, reason] of refusals) {
    it(`refuses ${what}, naming ${key}`, () => assert.throws(() => parseCiIdTokenProvider(entryOf(edited(edit)), 'ci-id-token'), refusedAs(key, reason)));
  }

  it('refuses GitHub and GitLab.com mappings that do not pin the owner: anyone there can mint a token for any audience', () => {
    const unpinned = [{ ref: 'refs/heads/main' }, { repository: '*/web' }, { repository_owner: 'ac*' }, { sub: 'repo:*' }, { repository: '**' }];
    for (const claims of unpinned) {
      const values = edited((v) => (v.issuers[0]!.mappings = [{ claims, user: 'ci' }]));
      assert.throws(() => parseCiIdTokenProvider(entryOf(values), 'x'), refusedAs('providers[2].issuers[0].mappings[0].claims', /repository_owner/), JSON.stringify(claims));
    }
    const gitlab = edited((v) => (v.issuers[0] = { issuer: 'https://gitlab.com', audience: 'a', mappings: [{ claims: { ref: 'main' }, user: 'ci' }] }));
    assert.throws(() => parseCiIdTokenProvider(entryOf(gitlab), 'x'), refusedAs('providers[2].issuers[0].mappings[0].claims', /namespace_path/));
    const pinned = [{ repository_owner: 'acme' }, { repository: 'acme/*' }, { sub: 'repo:acme/web:*' }, { repository_owner_id: '1024', ref: 'refs/heads/*' }];
    for (const claims of pinned) {
      assert.doesNotThrow(() => parseCiIdTokenProvider(entryOf(edited((v) => (v.issuers[0]!.mappings = [{ claims, user: 'ci' }]))), 'x'), JSON.stringify(claims));
    }
    const selfHosted = edited((v) => (v.issuers[0] = { issuer: 'https://gitlab.example.com', audience: 'a', mappings: [{ claims: { ref: 'main' }, user: 'ci' }] }));
    assert.doesNotThrow(() => parseCiIdTokenProvider(entryOf(selfHosted), 'x'));
  });

  it('reads bare YAML numbers and booleans in claims as their text', () => {
    const values = edited((v) => (v.issuers[0]!.mappings = [{ claims: { repository_owner_id: 1024, ref_protected: true }, user: 'ci' }]));
    assert.deepEqual(parseCiIdTokenProvider(entryOf(values), 'x').issuers[0]!.mappings[0]!.claims, { repository_owner_id: '1024', ref_protected: 'true' });
    const nested = edited((v) => (v.issuers[0]!.mappings = [{ claims: { repository_owner: 'acme', ref: ['a'] }, user: 'ci' }]));
    assert.throws(() => parseCiIdTokenProvider(entryOf(nested), 'x'), refusedAs('providers[2].issuers[0].mappings[0].claims.ref', /must be text/));
  });

  it('allows plain http for an issuer on loopback only', () => {
    for (const issuer of ['http://127.0.0.1:8080', 'http://[::1]:8080', 'http://localhost:8080/tenant']) {
      assert.doesNotThrow(() => parseCiIdTokenProvider(entryOf(edited((v) => (v.issuers[0]!.issuer = issuer))), 'x'), issuer);
    }
  });
});

describe('claim globs', () => {
  const cases: [glob: string, value: string, matches: boolean][] = [
    ['acme/web', 'acme/web', true],
    ['acme/web', 'acme/web2', false],
    ['acme/web', 'Acme/web', false],
    ['acme/*', 'acme/web', true],
    ['acme/*', 'acme/', true],
    ['acme/*', 'acme/platform/api', false],
    ['acme/**', 'acme/platform/api', true],
    ['refs/heads/release-*', 'refs/heads/release-1.2', true],
    ['refs/heads/release-*', 'refs/heads/release/1.2', false],
    ['repo:acme/*:ref:refs/heads/main', 'repo:acme/web:ref:refs/heads/main', true],
    ['repo:acme/*:ref:refs/heads/main', 'repo:acme/web:ref:refs/heads/dev', false],
    ['a?c', 'abc', false],
    ['a?c', 'a?c', true],
    ['**/build.yml@refs/heads/main', 'acme/web/.github/workflows/build.yml@refs/heads/main', true],
  ];
  for (const [glob, value, expected] of cases) {
    it(`${glob} ${expected ? 'matches' : 'does not match'} ${value}`, () => assert.equal(compileClaimGlob(glob).matches(value), expected));
  }

  it('answers globs with many stars against long values without backtracking', () => {
    const glob = compileClaimGlob('*a*a*a*a*a*a*a*a*a*a*a*a*b');
    assert.equal(glob.matches('a'.repeat(1000)), false);
    assert.equal(glob.matches(`${'a'.repeat(998)}b`), true);
    assert.equal(glob.matches(`${'a'.repeat(1100)}b`), false, 'values over 1024 characters never match');
  });
});

describe('user templates', () => {
  it('fills placeholders and refuses a result that is no user name', () => {
    const template = compileUserTemplate('ci-{repository}');
    assert.deepEqual(template.placeholders, ['repository']);
    assert.deepEqual(template.render(new Map([['repository', 'acme/web']])), { user: 'ci-acme/web' });
    const bad = template.render(new Map([['repository', 'acme web']]));
    assert.ok('problem' in bad && /whitespace/.test(bad.problem));
    assert.ok('problem' in compileUserTemplate('{sub}').render(new Map([['sub', 'repo:acme/web']])));
    assert.ok('problem' in compileUserTemplate('{owner}').render(new Map([['owner', 'anonymous']])));
  });
});
