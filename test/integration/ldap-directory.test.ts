// The LDAP authenticator against a real slapd, without a gateway: ambiguous names, group search and mapping, truncated answers, the same entry for refresh tokens.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LdapProviderConfig } from '../../src/auth/ldap-config.js';
import { LdapAuthenticator } from '../../src/auth/ldap.js';
import { LDAP_GROUPS_DN, LDAP_PEOPLE_DN, startSlapd, type RunningSlapd } from '../helpers/slapd.js';

const manyGroups = 1001;

describe('the LDAP authenticator against slapd', () => {
  let slapd: RunningSlapd;
  const fingerprintKey = Buffer.alloc(32, 7);

  const config = (changes: Partial<LdapProviderConfig> = {}): LdapProviderConfig => ({
    type: 'ldap',
    name: 'corp',
    url: slapd.ldapsUrl,
    tls: 'ldaps',
    caFile: undefined,
    bindDn: slapd.reader.dn,
    bindPasswordFile: '(given directly)',
    userBaseDn: LDAP_PEOPLE_DN,
    userFilter: '(uid={user})',
    userScope: 'sub',
    userAttribute: 'uid',
    groupAttribute: 'memberOf',
    groupBaseDn: undefined,
    groupFilter: '(member={dn})',
    groupNameAttribute: 'cn',
    groupMap: new Map(),
    unmappedGroups: 'keep',
    timeoutSeconds: 2,
    maxConnections: 2,
    where: 'test',
    ...changes,
  });
  const authenticator = (changes: Partial<LdapProviderConfig> = {}, bindPassword = slapd.reader.password) =>
    new LdapAuthenticator({ config: config(changes), bindPassword, ca: slapd.caPem, fingerprintKey });
  const logIn = (changes: Partial<LdapProviderConfig>, user: string, password: string) => authenticator(changes).authenticate({ user, password, source: '192.0.2.1' });

  before(async () => {
    slapd = await startSlapd({
      users: [{ uid: 'frank', password: 'frank-password' }, { uid: 'grace', password: 'grace-password' }],
      groups: [
        { cn: 'Registry Admins', members: ['alice'] },
        { cn: 'qa', members: ['alice', 'bob'] },
      ],
    });
  });
  after(() => slapd?.stop());

  test('a filter that finds more than one entry is a refusal, never the first entry found', async () => {
    assert.deepEqual(await logIn({ userFilter: '(|(uid={user})(uid=bob))' }, 'alice', 'alice-password'), { kind: 'no', reason: 'the name matches more than one directory entry' });
    assert.equal((await logIn({}, 'alice', 'alice-password')).kind, 'yes');
  });

  test('groups come from memberOf or from a search, mapped by name ignoring case, others kept or ignored', async () => {
    const fromMemberOf = await logIn({ groupMap: new Map([['registry admins', ['admins']]]) }, 'alice', 'alice-password');
    assert.deepEqual(fromMemberOf.kind === 'yes' ? fromMemberOf.identity.groups : undefined, ['admins', 'developers', 'qa']);
    const searched = await logIn({ groupBaseDn: LDAP_GROUPS_DN, groupFilter: '(&(objectClass=groupOfNames)(member={dn}))', groupMap: new Map([['qa', ['testers', 'readers']]]), unmappedGroups: 'ignore' }, 'alice', 'alice-password');
    assert.deepEqual(searched.kind === 'yes' ? searched.identity.groups : undefined, ['readers', 'testers']);
  });

  test('more groups than it reads whole is a refusal, not a partial list a deny rule could miss', async () => {
    const ldif = Array.from({ length: manyGroups }, (_, i) => `dn: cn=bulk-${i},${LDAP_GROUPS_DN}\nobjectClass: groupOfNames\ncn: bulk-${i}\nmember: ${slapd.userDn('frank')}\n\n`).join('');
    await slapd.modify(ldif);
    const expected = { kind: 'no', reason: 'too many directory groups to read them all (at most 1000)' };
    assert.deepEqual(await logIn({}, 'frank', 'frank-password'), expected);
    assert.deepEqual(await logIn({ groupBaseDn: LDAP_GROUPS_DN }, 'frank', 'frank-password'), expected);
  });

  test('a missing base DN or a refused service account is unavailable, never a refusal of the user', async () => {
    const missingBase = await logIn({ userBaseDn: 'ou=nowhere,dc=example,dc=test' }, 'alice', 'alice-password');
    assert.deepEqual(missingBase, { kind: 'unavailable', reason: 'search under ou=nowhere,dc=example,dc=test: NoSuchObject (result code 32)' });
    const refused = await authenticator({}, 'wrong').authenticate({ user: 'alice', password: 'alice-password', source: 's' });
    assert.equal(refused.kind, 'unavailable');
    assert.match(refused.kind === 'unavailable' ? refused.reason : '', /refused the service account/);
    assert.deepEqual(await authenticator().probe(), { ok: true, detail: `${slapd.ldapsUrl} (ldaps): bound as ${slapd.reader.dn}; user_base_dn ${LDAP_PEOPLE_DN} found` });
  });

  test('a refresh token holds for the same entry only: groups read afresh, gone with the user, not back with a new entry of the same name', async () => {
    const directory = authenticator();
    const login = await directory.authenticate({ user: 'grace', password: 'grace-password', source: 's' });
    assert.equal(login.kind, 'yes');
    const credential = login.kind === 'yes' ? login.identity.credential! : '';
    assert.match(credential, /^corp:[A-Za-z0-9_-]{32}$/);
    assert.ok(!credential.includes('grace') && !credential.includes('ou='), 'the credential shows no DN');
    await slapd.addMember('qa', 'grace');
    assert.deepEqual(await directory.revalidate({ user: 'grace', credential }, 'refresh-token'), { user: 'grace', credential, groups: ['qa'] });
    assert.deepEqual(directory.revalidate({ user: 'grace', credential }, 'access-token'), { user: 'grace', credential, groups: ['qa'] }, 'access tokens: trusted, with the groups last read');
    assert.equal(await directory.revalidate({ user: 'grace', credential: 'other:x' }, 'refresh-token'), undefined);
    await slapd.deleteUser('grace');
    assert.equal(await directory.revalidate({ user: 'grace', credential }, 'refresh-token'), undefined);
    await slapd.addUser({ uid: 'grace', password: 'grace-password' });
    assert.equal(await directory.revalidate({ user: 'grace', credential }, 'refresh-token'), undefined, 'a new entry under the same DN is someone else');
  });

  test('a directory that is down makes refresh tokens fail with 503, not pass and not end', async () => {
    const directory = authenticator();
    const login = await directory.authenticate({ user: 'bob', password: 'bob-password', source: 's' });
    const credential = login.kind === 'yes' ? login.identity.credential! : '';
    await slapd.down();
    try {
      await assert.rejects(Promise.resolve(directory.revalidate({ user: 'bob', credential }, 'refresh-token')), (error: unknown) => (error as { code?: string }).code === 'UNAVAILABLE');
    } finally {
      await slapd.up();
    }
  });
});
