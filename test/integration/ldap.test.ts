// Directory users end to end against a real slapd: skopeo push and pull by directory groups, refusals, injection, refresh tokens, a directory that is down.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { basic, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { ldapAccessRules, ldapProviderConfig, type LdapProviderOptions } from '../helpers/ldap-gateway.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import { skopeoCopy, skopeoLogin } from '../helpers/skopeo.js';
import { ODD_UID, startSlapd, type RunningSlapd } from '../helpers/slapd.js';
import { logLineFor } from '../helpers/sources.js';

const extraUsers = ['carol', 'dave', 'erin'].map((uid) => ({ uid, password: `${uid}-password` }));
const extraGroups = [
  { cn: 'Registry Admins', members: ['carol'] },
  { cn: 'developers-2', members: ['dave', 'erin'] },
];
const htpasswdUsers = { admin: 'admin-password' };

/** A directory, a gateway in front of it and a scratch folder with a test image, shared by one describe. */
function setUp(auth: 'token' | 'basic', provider: LdapProviderOptions) {
  const state = {} as { slapd: RunningSlapd; gw: TestGateway; work: string; image: TestImage };
  before(async () => {
    state.work = await mkdtemp(path.join(os.tmpdir(), 'gateway-ldap-'));
    state.slapd = await startSlapd({ users: extraUsers, groups: extraGroups });
    // dave and erin are developers too, through a second group mapped onto the same access group.
    const config = (await ldapProviderConfig(state.slapd, state.work, provider)).replace('      Registry Admins: admins', '      Registry Admins: admins\n      developers-2: developers');
    state.gw = await startTestGateway({ auth, users: htpasswdUsers, access: ldapAccessRules, config });
    state.image = await buildOciImage({ dir: path.join(state.work, 'image'), tag: 'v1', layers: [{ sizeBytes: 64 * 1024 }] });
  });
  after(async () => {
    await state.gw?.close();
    await state.slapd?.stop();
    await rm(state.work, { recursive: true, force: true });
  });
  return state;
}

/** skopeo login and copy as one user, with an auth file of their own. */
async function push(state: { gw: TestGateway; work: string; image: TestImage }, user: string, password: string, target: string): Promise<void> {
  const authFile = path.join(state.work, `auth-${user.replace(/[^a-z0-9]/gi, '_')}.json`);
  await skopeoLogin({ host: state.gw.host, user, password, certDir: state.gw.certDir, authFile });
  await skopeoCopy({ from: state.image.reference, to: `docker://${state.gw.host}/${target}`, certDir: state.gw.certDir, authFile });
}

const tokenFor = (gw: TestGateway, user: string, password: string, scope = 'repository:app/web:pull,push') =>
  request(gw, 'GET', `/token?service=registry-gateway&scope=${encodeURIComponent(scope)}`, { headers: { Authorization: basic(user, password) } });

const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { sub: string; access: { actions: string[] }[] };

describe('directory users (token mode, LDAPS, groups from memberOf)', () => {
  const state = setUp('token', { tls: 'ldaps' });

  test('push and pull as the rules naming their directory groups allow; htpasswd users work as before', async () => {
    await push(state, 'alice', 'alice-password', 'app/web:v1');
    await push(state, 'admin', 'admin-password', 'other/thing:v1');
    await assert.rejects(push(state, 'bob', 'bob-password', 'app/bob:v1'), /denied|unauthorized|authentication required/i, 'ops may only pull');
    const granted = claimsOf((await tokenFor(state.gw, 'bob', 'bob-password')).json().token as string);
    assert.deepEqual(granted.access.map((entry) => entry.actions), [['pull']]);
  });

  test('a directory group mapped by group_map grants what the access group may (catalog for admins)', async () => {
    const res = await tokenFor(state.gw, 'carol', 'carol-password', 'registry:catalog:*');
    assert.equal(res.status, 200);
    assert.deepEqual(claimsOf(res.json().token as string).access, [{ type: 'registry', name: 'catalog', actions: ['*'] }]);
  });

  test('the name typed in another case logs in as the directory spells it', async () => {
    const res = await tokenFor(state.gw, 'ALICE', 'alice-password');
    assert.equal(res.status, 200);
    assert.equal(claimsOf(res.json().token as string).sub, 'alice');
  });

  test('wrong password, unknown user and empty password get 401, and the log says which authenticator refused and why', async () => {
    const cases: [user: string, password: string, authenticator: string | undefined, reason: string][] = [
      ['alice', 'not-her-password', 'corp', 'wrong password'],
      ['nobody', 'alice-password', undefined, 'unknown user'],
      ['alice', '', 'corp', 'empty password'],
    ];
    for (const [user, password, authenticator, reason] of cases) {
      const res = await tokenFor(state.gw, user, password);
      assert.equal(res.status, 401, `${user}/${reason}`);
      assert.equal(res.json().errors[0].code, 'UNAUTHORIZED');
      const line = await logLineFor(state.gw, (entry) => entry.path === '/token' && entry.user === user && entry.reason === reason);
      assert.equal(line.authenticator, authenticator);
    }
    assert.ok(!state.gw.logLines.some((line) => line.includes('not-her-password')), 'never a password in the log');
  });

  test('filter characters in the user name are matched literally, never as filter syntax', async () => {
    for (const [user, password] of [
      ['*', 'alice-password'],
      ['al*', 'alice-password'],
      ['alice)(uid=*', 'alice-password'],
      ['*)(|(uid=*', 'alice-password'],
      ['alice\\', 'alice-password'],
      ['alice\0', 'alice-password'],
      ['st*', 'odd-password'],
      ['st\\2ar\\28x\\29\\5cy', 'odd-password'],
    ]) {
      const res = await tokenFor(state.gw, user!, password!);
      assert.equal(res.status, 401, JSON.stringify(user));
    }
    const literal = await tokenFor(state.gw, ODD_UID, 'odd-password');
    assert.equal(literal.status, 200, 'the entry whose uid holds those characters logs in by its exact name');
    assert.equal(claimsOf(literal.json().token as string).sub, ODD_UID);
  });

  test('a refresh token stops working once the user is removed from the directory; access tokens run out on their own', async () => {
    const form = (fields: Record<string, string>) =>
      request(state.gw, 'POST', '/token', { headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ client_id: 'test', scope: 'repository:app/web:pull', ...fields }).toString() });
    const first = await form({ grant_type: 'password', username: 'dave', password: 'dave-password', access_type: 'offline' });
    assert.equal(first.status, 200);
    const { refresh_token: refreshToken, access_token: accessToken } = first.json() as { refresh_token: string; access_token: string };
    assert.ok(refreshToken, 'a directory login gets a refresh token');
    assert.equal((await form({ grant_type: 'refresh_token', refresh_token: refreshToken })).status, 200);
    await state.slapd.deleteUser('dave');
    const refused = await form({ grant_type: 'refresh_token', refresh_token: refreshToken });
    assert.equal(refused.status, 401);
    assert.match((await logLineFor(state.gw, (entry) => entry.path === '/token' && entry.user === 'dave' && entry.status === 401)).reason, /credential revoked/);
    // Documented: an access token of a directory user is trusted until it expires (token_ttl).
    assert.equal((await request(state.gw, 'GET', '/v2/', { headers: { Authorization: `Bearer ${accessToken}` } })).status, 200);
  });

  test('a directory that is down gives its users 503 UNAVAILABLE while htpasswd users still push', async () => {
    await state.slapd.down();
    try {
      const res = await tokenFor(state.gw, 'erin', 'erin-password');
      assert.equal(res.status, 503);
      assert.equal(res.json().errors[0].code, 'UNAVAILABLE');
      assert.match((await logLineFor(state.gw, (entry) => entry.path === '/token' && entry.user === 'erin')).reason, /^corp unavailable: .*ECONNREFUSED/);
      await push(state, 'admin', 'admin-password', 'other/during-outage:v1');
      assert.equal((await tokenFor(state.gw, 'nobody', 'x')).status, 503, 'an unknown name might be a directory user: unavailable, not a refusal');
    } finally {
      await state.slapd.up();
    }
    assert.equal((await tokenFor(state.gw, 'erin', 'erin-password')).status, 200, 'back once the directory is');
  });
});

describe('directory users (basic mode, StartTLS, groups from a group search)', () => {
  const state = setUp('basic', { tls: 'starttls', groupSearch: true });

  test('push and pull by directory groups; a push the rules do not allow is denied', async () => {
    await push(state, 'alice', 'alice-password', 'app/web:v1');
    await assert.rejects(push(state, 'bob', 'bob-password', 'app/web:v2'), /denied/i);
    const pulled = await request(state.gw, 'GET', '/v2/app/web/tags/list', { headers: { Authorization: basic('bob', 'bob-password') } });
    assert.equal(pulled.status, 200);
    const denied = await request(state.gw, 'GET', '/v2/app/web/tags/list', { headers: { Authorization: basic('bob', 'wrong') } });
    assert.equal(denied.status, 401);
  });

  test('a directory that is down: its users get 503, htpasswd users still push', async () => {
    await state.slapd.down();
    try {
      const res = await request(state.gw, 'GET', '/v2/', { headers: { Authorization: basic('erin', 'erin-password') } });
      assert.equal(res.status, 503);
      assert.equal(res.json().errors[0].code, 'UNAVAILABLE');
      await push(state, 'admin', 'admin-password', 'other/thing:v1');
    } finally {
      await state.slapd.up();
    }
  });

  test('a directory that answers no more (frozen) gives 503 after the configured timeout, not a hang', async () => {
    state.slapd.freeze();
    try {
      const res = await request(state.gw, 'GET', '/v2/', { headers: { Authorization: basic('carol', 'carol-password') } });
      assert.equal(res.status, 503);
    } finally {
      state.slapd.thaw();
    }
  });
});

describe('a directory whose certificate the gateway cannot verify', () => {
  let slapd: RunningSlapd;
  let gw: TestGateway;
  let work: string;
  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'gateway-ldap-untrusted-'));
    slapd = await startSlapd();
    gw = await startTestGateway({ users: htpasswdUsers, access: ldapAccessRules, config: await ldapProviderConfig(slapd, work, { tls: 'ldaps', withoutCa: true }) });
  });
  after(async () => {
    await gw?.close();
    await slapd?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('is never asked for a password: 503 for its users, the reason logged', async () => {
    const res = await tokenFor(gw, 'alice', 'alice-password');
    assert.equal(res.status, 503);
    assert.match((await logLineFor(gw, (entry) => entry.path === '/token' && entry.user === 'alice')).reason, /certificate/);
  });
});
