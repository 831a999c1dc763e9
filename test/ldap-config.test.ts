// Tests for the providers section and LDAP text handling: keys named in errors, chain order, RFC 4515 escaping, group names, rules naming directory groups.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { FilterParser } from 'ldapts';
import { parseAccessFile } from '../src/access/access-rules.js';
import type { LdapProviderConfig } from '../src/auth/ldap-config.js';
import { escapeFilterValue, fillFilter, filterTemplateProblem, firstRdnValue } from '../src/auth/ldap-filter.js';
import { loadConfig } from '../src/config/config.js';
import { ConfigError } from '../src/errors.js';

async function configFrom(t: TestContext, yaml: string) {
  const folder = await mkdtemp(path.join(tmpdir(), 'providers-test-'));
  t.after(() => rm(folder, { recursive: true, force: true }));
  const file = path.join(folder, 'gateway.yaml');
  await writeFile(file, yaml);
  return { file, folder, load: () => loadConfig({ file, env: {}, cwd: folder }).config };
}

const ldapEntry = (extra = '') => `  - type: ldap
    url: ldaps://ldap.example.com
    bind_dn: cn=registry,dc=example,dc=com
    bind_password_file: ldap-password
    user_base_dn: ou=people,dc=example,dc=com
${extra}`;

describe('the providers section', () => {
  it('without providers the chain is the CI tokens, then htpasswd; built-ins listed take their place', async (t) => {
    assert.equal(loadConfig({ env: {}, cwd: '/srv' }).config.providers, undefined);
    const { load, folder } = await configFrom(t, `providers:\n${ldapEntry()}  - type: htpasswd\n`);
    const providers = load().providers!;
    assert.deepEqual(providers.map((provider) => provider.name), ['ci-tokens', 'ldap', 'htpasswd']);
    const ldap = providers[1] as LdapProviderConfig;
    assert.equal(ldap.bindPasswordFile, path.join(folder, 'ldap-password'), 'paths are taken from the settings file folder');
    assert.equal(ldap.userFilter, '(uid={user})');
    assert.equal(ldap.tls, 'ldaps');
    assert.match(ldap.where, /gateway\.yaml:2:5: providers\[0\]$/);
  });

  it('names the file, line and key of every mistake', async (t) => {
    const cases: [yaml: string, expected: RegExp][] = [
      [`providers:\n${ldapEntry()}  - type: ldap\n    name: second\n    url: ldaps://other\n`, /gateway\.yaml:7:5: providers\[1\]\.bind_dn: required/],
      [`providers:\n${ldapEntry('    bind_dn_typo: x\n')}`, /gateway\.yaml:7:5: providers\[0\]\.bind_dn_typo: unknown key for provider type "ldap"; known keys: allow_plaintext, bind_dn/],
      [`providers:\n${ldapEntry().replace('ldaps://', 'ldap://')}`, /providers\[0\]\.url: ldap:\/\/ without TLS sends every password in clear/],
      [`providers:\n${ldapEntry('    start_tls: true\n')}`, /providers\[0\]\.start_tls: is for ldap:\/\/ URLs/],
      [`providers:\n${ldapEntry('    user_filter: (uid=someone)\n')}`, /providers\[0\]\.user_filter: must contain \{user\}/],
      [`providers:\n${ldapEntry('    user_filter: (uid={user}\n')}`, /providers\[0\]\.user_filter: must be an LDAP filter in balanced parentheses/],
      [`providers:\n${ldapEntry('    group_filter: (member={dn})\n')}`, /providers\[0\]\.group_base_dn: required for a group search/],
      [`providers:\n${ldapEntry('    timeout: 0\n')}`, /providers\[0\]\.timeout: must be a whole number from 1 to 120/],
      [`providers:\n${ldapEntry()}${ldapEntry()}`, /providers\[1\]\.name: "ldap" is already providers\[0\]/],
      [`providers:\n${ldapEntry('    name: htpasswd\n')}`, /providers\[0\]\.name: "htpasswd" is taken by a built-in authenticator/],
      [`providers:\n  - type: kerberos\n`, /gateway\.yaml:2:11: providers\[0\]\.type: unknown provider type "kerberos"; known: ci-tokens, htpasswd, ldap/],
      [`providers: ldap\n`, /providers: must be a list/],
      [`providers:\n  - type: htpasswd\n    url: x\n`, /providers\[0\]\.url: unknown key/],
    ];
    for (const [yaml, expected] of cases) {
      const { load } = await configFrom(t, yaml);
      assert.throws(load, (error: unknown) => error instanceof ConfigError && expected.test(error.message), `${expected} for\n${yaml}`);
    }
  });

  it('reads group maps ignoring case, and the group search settings', async (t) => {
    const extra = '    group_base_dn: ou=groups,dc=example,dc=com\n    group_filter: (uniqueMember={dn})\n    group_map:\n      Registry Admins: admins\n      devs: [developers, readers]\n    unmapped_groups: ignore\n';
    const { load } = await configFrom(t, `providers:\n${ldapEntry(extra)}`);
    const ldap = load().providers![2] as LdapProviderConfig;
    assert.deepEqual([...ldap.groupMap], [['registry admins', ['admins']], ['devs', ['developers', 'readers']]]);
    assert.equal(ldap.groupFilter, '(uniqueMember={dn})');
    assert.equal(ldap.unmappedGroups, 'ignore');
  });
});

describe('LDAP filter values (RFC 4515)', () => {
  it('escapes *, (, ), \\ and NUL, and nothing else', () => {
    assert.equal(escapeFilterValue('a*()\\\0b'), 'a\\2a\\28\\29\\5c\\00b');
    assert.equal(escapeFilterValue('zoë.o-k_1@x'), 'zoë.o-k_1@x');
  });

  it('puts escaped values into a template, and the filter parses back to the literal value', () => {
    for (const user of ['*', 'alice)(uid=*', '*)(|(uid=*', 'st*r(x)\\y', 'a\0b']) {
      const filter = FilterParser.parseString(fillFilter('(&(objectClass=person)(uid={user}))', { user }));
      assert.equal(filter.toString(), `(&(objectClass=person)(uid=${escapeFilterValue(user)}))`, user);
    }
  });

  it('checks templates for their placeholders and syntax', () => {
    assert.equal(filterTemplateProblem('(sAMAccountName={user})', ['user'], ['user']), undefined);
    assert.equal(filterTemplateProblem('(member={dn})', ['dn', 'user'], []), undefined);
    assert.match(filterTemplateProblem('(member={group})', ['dn', 'user'], []) ?? '', /\{group\} is no placeholder/);
    assert.match(filterTemplateProblem('(&(uid={user})', ['user'], ['user']) ?? '', /balanced parentheses/);
    assert.match(filterTemplateProblem('(uid~{user})', ['user'], ['user']) ?? '', /not a valid LDAP filter \(Invalid expression/);
  });

  it("reads a group's name from its DN, unescaping RFC 4514", () => {
    assert.equal(firstRdnValue('cn=developers,ou=groups,dc=example,dc=test'), 'developers');
    assert.equal(firstRdnValue('CN=Registry Admins,OU=Groups,DC=corp,DC=example'), 'Registry Admins');
    assert.equal(firstRdnValue('cn=a\\,b\\2Bc,ou=g'), 'a,b+c');
    assert.equal(firstRdnValue('cn=Zo\\C3\\AB 🚀,ou=g'), 'Zoë 🚀');
    assert.equal(firstRdnValue('cn=#0403616263,ou=g'), undefined);
    assert.equal(firstRdnValue('nonsense'), undefined);
  });
});

describe('rules naming groups a provider vouches for', () => {
  const rules = parseAccessFile(
    `groups:
  developers: [carol]
  contractors: []
rules:
  - groups: [developers]
    repositories: ["app/**"]
    actions: [pull, push]
  - groups: [contractors]
    repositories: ["app/secret"]
    actions: [pull, push]
    effect: deny
`,
    'access.yml',
  ).rules;
  const push = (name: string) => [{ type: 'repository', name, actions: ['push'] }];

  it('match an identity carrying the group, as well as the access file members', () => {
    assert.equal(rules.grant({ user: 'alice', groups: ['developers'] }, push('app/web')).length, 1);
    assert.equal(rules.grant({ user: 'carol' }, push('app/web')).length, 1);
    assert.equal(rules.grant({ user: 'alice' }, push('app/web')).length, 0);
    assert.equal(rules.grant({ user: 'alice', groups: ['ops'] }, push('app/web')).length, 0);
  });

  it('deny rules naming a group apply to its directory members too, and explanations show the groups', () => {
    assert.equal(rules.grant({ user: 'dave', groups: ['developers', 'contractors'] }, push('app/secret')).length, 0);
    assert.match(rules.explain({ user: 'dave', groups: ['developers', 'contractors'] }, 'push', 'app/secret').reason, /denied by rule 2/);
    assert.match(rules.explain({ user: 'eve', groups: ['ops'] }, 'push', 'app/web').reason, /for eve \(groups: ops\)/);
  });
});

describe('the README section on directory users', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## Directory users'), readme.indexOf('## Operating it'));
  const blocks = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1]!);

  it('shows a settings file the gateway accepts, as the section describes it', async (t) => {
    const { load } = await configFrom(t, blocks[0]!);
    const providers = load().providers!;
    assert.deepEqual(providers.map((provider) => provider.name), ['ci-tokens', 'htpasswd', 'corp', 'ad']);
    const [corp, ad] = providers.slice(2) as LdapProviderConfig[];
    assert.equal(corp!.tls, 'ldaps');
    assert.deepEqual(corp!.groupMap.get('dev-team'), ['developers', 'readers']);
    assert.equal(ad!.tls, 'starttls');
    assert.equal(ad!.groupFilter, '(member:1.2.840.113556.1.4.1941:={dn})');
    assert.equal(ad!.userAttribute, 'sAMAccountName');
  });

  it('shows access rules that decide as the section says for directory groups', () => {
    const rules = parseAccessFile(blocks[1]!, 'README.md').rules;
    assert.equal(rules.explain({ user: 'alice', groups: ['developers'] }, 'push', 'app/web').allowed, true);
    assert.equal(rules.explain({ user: 'alice', groups: ['readers'] }, 'push', 'app/web').allowed, false);
    assert.equal(rules.explain({ user: 'alice' }, 'pull', 'app/web').allowed, false);
  });
});
