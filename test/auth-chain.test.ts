// Tests for the authenticator chain and the one login path around it: order, final no, unavailable providers, success cache, token revalidation.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Identity } from '../src/access/access.js';
import type { Authenticator } from '../src/auth/authenticator.js';
import { AuthenticatorChain, credentialOwner, type AuthAnswer, type PasswordAuthenticator, type PresentedPassword } from '../src/auth/chain.js';
import type { CiTokenStore } from '../src/auth/ci-token-store.js';
import type { UserStore } from '../src/auth/htpasswd.js';
import { identityOfRefreshToken, identityOfToken, logIn, mayRefresh, type LoginLog, type LoginServices } from '../src/auth/login.js';
import { SuccessCache } from '../src/auth/success-cache.js';
import { LoginThrottle } from '../src/auth/throttle.js';
import { RegistryError } from '../src/errors.js';

/** An authenticator that answers from a script and counts what it was asked. */
class Scripted implements PasswordAuthenticator {
  asked: PresentedPassword[] = [];
  refreshable = true;
  revalidated: string[] = [];
  constructor(
    readonly name: string,
    private readonly answer: (presented: PresentedPassword) => AuthAnswer | Error,
    private readonly stillGood: (identity: { user: string; credential: string }) => Identity | undefined | Promise<Identity | undefined> = (identity) => identity,
    readonly remembered?: (identity: Identity) => Identity | undefined,
  ) {}

  async authenticate(presented: PresentedPassword): Promise<AuthAnswer> {
    this.asked.push(presented);
    const answer = this.answer(presented);
    if (answer instanceof Error) throw answer;
    return answer;
  }

  revalidate(identity: { user: string; credential: string }): Identity | undefined | Promise<Identity | undefined> {
    this.revalidated.push(identity.credential);
    return this.stillGood(identity);
  }
}

const presented = (user: string, password = 'pw'): PresentedPassword => ({ user, password, source: '192.0.2.1' });
const yes = (name: string, user: string, groups?: string[]): AuthAnswer => ({ kind: 'yes', identity: { user, credential: `${name}:${user}`, ...(groups ? { groups } : {}) } });

/** LoginServices around a chain; the built-in stores are never reached because the chain is given. */
function servicesWith(chain: AuthenticatorChain, successes?: SuccessCache): LoginServices {
  const unused = {} as never;
  return { authenticator: unused as Authenticator, users: unused as UserStore, ciTokens: unused as CiTokenStore, throttle: new LoginThrottle({ baseDelayMs: 1, maxDelayMs: 1 }), chain, successes };
}

async function attempt(services: LoginServices, user: string, password: string): Promise<{ status: number; identity?: Identity; log: LoginLog; error?: RegistryError }> {
  const log: LoginLog = {};
  try {
    const identity = await logIn(services, { user, password }, '192.0.2.1', 'https://registry.test', log);
    return { status: 200, identity, log };
  } catch (error) {
    if (!(error instanceof RegistryError)) throw error;
    return { status: error.status, log, error };
  }
}

describe('credential owners', () => {
  it('reads the owner from the prefix: bare fingerprints are htpasswd, ci: the CI tokens, NAME: a provider', () => {
    assert.equal(credentialOwner('AbCdEf0123456789_-xyzw'), 'htpasswd');
    assert.equal(credentialOwner('ci:abcdefghijkl'), 'ci-tokens');
    assert.equal(credentialOwner('corp-ldap:fingerprint'), 'corp-ldap');
  });
});

describe('the authenticator chain', () => {
  it('asks in order: not-mine goes on, the first yes wins and later ones are not asked', async () => {
    const first = new Scripted('first', () => ({ kind: 'not-mine' }));
    const second = new Scripted('second', (p) => yes('second', p.user, ['developers']));
    const third = new Scripted('third', (p) => yes('third', p.user));
    const answer = await new AuthenticatorChain([first, second, third]).authenticate(presented('alice'));
    assert.equal(answer.kind, 'yes');
    assert.deepEqual(answer.kind === 'yes' ? answer.identity : undefined, { user: 'alice', credential: 'second:alice', groups: ['developers'], authenticator: 'second' });
    assert.deepEqual([first.asked.length, second.asked.length, third.asked.length], [1, 1, 0]);
  });

  it('takes a no as final, even when a later authenticator would say yes', async () => {
    const refusing = new Scripted('htpasswd', () => ({ kind: 'no', reason: 'wrong password' }));
    const later = new Scripted('ldap', (p) => yes('ldap', p.user));
    assert.deepEqual(await new AuthenticatorChain([refusing, later]).authenticate(presented('alice')), { kind: 'no', reason: 'wrong password', by: 'htpasswd' });
    assert.equal(later.asked.length, 0);
  });

  it('remembers an unavailable provider and goes on: a later yes wins, otherwise the answer is unavailable, never yes', async () => {
    const down = new Scripted('ldap', () => ({ kind: 'unavailable', reason: 'connect ECONNREFUSED' }));
    const broken = new Scripted('other', () => new Error('bug'));
    const htpasswd = new Scripted('htpasswd', (p) => (p.user === 'admin' ? { kind: 'yes', identity: { user: 'admin', credential: 'fingerprint' } } : { kind: 'not-mine' }));
    const chain = new AuthenticatorChain([down, broken, htpasswd]);
    assert.equal((await chain.authenticate(presented('admin'))).kind, 'yes');
    assert.deepEqual(await chain.authenticate(presented('alice')), {
      kind: 'unavailable',
      reasons: [
        { by: 'ldap', reason: 'connect ECONNREFUSED' },
        { by: 'other', reason: 'failed: bug' },
      ],
    });
    assert.deepEqual(await new AuthenticatorChain([htpasswd]).authenticate(presented('alice')), { kind: 'unknown' });
  });

  it('lets a full queue (a RegistryError) through instead of asking the next authenticator', async () => {
    const full = new Scripted('ldap', () => new RegistryError('TOOMANYREQUESTS', 'queue full'));
    const next = new Scripted('htpasswd', (p) => yes('htpasswd', p.user));
    await assert.rejects(new AuthenticatorChain([full, next]).authenticate(presented('alice')), (error: unknown) => error instanceof RegistryError && error.code === 'TOOMANYREQUESTS');
    assert.equal(next.asked.length, 0);
  });

  it('grants nothing for a yes that carries another authenticator\'s credential or no user', async () => {
    const impostor = new Scripted('ldap', () => ({ kind: 'yes', identity: { user: 'alice', credential: 'ci:abcdefghijkl', scopeLimit: [] } }));
    const nameless = new Scripted('other', () => ({ kind: 'yes', identity: { user: null, credential: 'other:x' } }));
    const answer = await new AuthenticatorChain([impostor, nameless]).authenticate(presented('alice'));
    assert.equal(answer.kind, 'unavailable');
  });

  it('revalidates a token credential with its owner, synchronously when the owner answers synchronously', async () => {
    const fast = new Scripted('htpasswd', () => ({ kind: 'not-mine' }), (identity) => (identity.credential === 'current' ? identity : undefined));
    const slow = new Scripted('ldap', () => ({ kind: 'not-mine' }), async (identity) => ({ ...identity, groups: ['ops'] }));
    const chain = new AuthenticatorChain([fast, slow]);
    const sync = chain.identityOfToken('alice', 'current', 'access-token');
    assert.ok(!(sync instanceof Promise), 'no promise on the fast path');
    assert.deepEqual(sync, { user: 'alice', credential: 'current', authenticator: 'htpasswd' });
    assert.equal(chain.identityOfToken('alice', 'old', 'access-token'), undefined);
    assert.deepEqual(await chain.identityOfToken('bob', 'ldap:fp', 'refresh-token'), { user: 'bob', credential: 'ldap:fp', groups: ['ops'], authenticator: 'ldap' });
    assert.equal(chain.identityOfToken('alice', 'gone-provider:fp', 'access-token'), undefined, 'a provider no longer configured vouches for nobody');
    assert.equal(chain.identityOfToken('alice', undefined, 'access-token'), undefined);
    const renaming = new AuthenticatorChain([new Scripted('ldap', () => ({ kind: 'not-mine' }), (identity) => ({ ...identity, user: 'root' }))]);
    assert.equal(await renaming.identityOfToken('alice', 'ldap:fp', 'refresh-token'), undefined, 'a token subject never becomes someone else');
  });
});

describe('logging in through the chain', () => {
  it('answers 503 UNAVAILABLE when only an unreachable provider might know the user, and counts no failed guess', async () => {
    const chain = new AuthenticatorChain([new Scripted('htpasswd', () => ({ kind: 'not-mine' })), new Scripted('ldap', () => ({ kind: 'unavailable', reason: 'connect ECONNREFUSED' }))]);
    const services = servicesWith(chain);
    for (let i = 0; i < 8; i++) {
      const outcome = await attempt(services, 'alice', `guess ${i}`);
      assert.equal(outcome.status, 503);
      assert.equal(outcome.error?.code, 'UNAVAILABLE');
      assert.deepEqual(outcome.log, { user: 'alice', authenticator: 'ldap', reason: 'ldap unavailable: connect ECONNREFUSED' });
    }
    assert.equal(services.throttle.failureDelayMs('alice', '192.0.2.1'), 0, 'eight unavailable answers are no failures');
  });

  it('counts no failed guess for the refusals of an authenticator whose secrets cannot be guessed (signed ID tokens)', async () => {
    const idTokens = Object.assign(new Scripted('ci-id-token', () => ({ kind: 'no', reason: 'token expired' })), { unguessable: true });
    const passwords = new Scripted('htpasswd', () => ({ kind: 'no', reason: 'wrong password' }));
    const services = servicesWith(new AuthenticatorChain([idTokens]));
    for (let i = 0; i < 8; i++) assert.equal((await attempt(services, 'ci', `expired ${i}`)).status, 401);
    assert.equal(services.throttle.failureDelayMs('ci', '192.0.2.1'), 0, 'eight refused ID tokens slow nobody down');
    const guessed = servicesWith(new AuthenticatorChain([passwords]));
    for (let i = 0; i < 8; i++) await attempt(guessed, 'alice', `guess ${i}`);
    assert.ok(guessed.throttle.failureDelayMs('alice', '192.0.2.1') > 0, 'eight wrong passwords do');
  });

  it('answers 401 for a no and for an unknown user, logging which authenticator refused and why', async () => {
    const chain = new AuthenticatorChain([new Scripted('ldap', (p) => (p.user === 'alice' ? { kind: 'no', reason: 'wrong password' } : { kind: 'not-mine' }))]);
    const services = servicesWith(chain);
    assert.deepEqual((await attempt(services, 'alice', 'x')).log, { user: 'alice', authenticator: 'ldap', reason: 'wrong password' });
    const unknown = await attempt(services, 'nobody', 'x');
    assert.equal(unknown.status, 401);
    assert.deepEqual(unknown.log, { user: 'nobody', reason: 'unknown user' });
  });

  it('answers a success again from the success cache while its authenticator says it holds, and asks again once it does not', async () => {
    let holds = true;
    const directory = new Scripted('ldap', (p) => yes('ldap', p.user.toLowerCase(), ['developers']), undefined, (identity) => (holds ? identity : undefined));
    const services = servicesWith(new AuthenticatorChain([directory]), new SuccessCache({ ttlMs: 60_000 }));
    const first = await attempt(services, 'ALICE', 'pw');
    assert.deepEqual(first.identity, { user: 'alice', credential: 'ldap:alice', groups: ['developers'], authenticator: 'ldap' });
    assert.deepEqual(first.log, { user: 'alice', authenticator: 'ldap' }, 'the log names the user as the directory spells them');
    assert.deepEqual((await attempt(services, 'ALICE', 'pw')).identity, first.identity);
    assert.equal(directory.asked.length, 1, 'the second login came from the cache');
    assert.equal((await attempt(services, 'ALICE', 'other password')).status, 200);
    assert.equal(directory.asked.length, 2, 'another password is another cache entry');
    holds = false;
    await attempt(services, 'ALICE', 'pw');
    assert.equal(directory.asked.length, 3);
  });

  it('never caches the answers of an authenticator that cannot say whether they still hold', async () => {
    const idTokens = new Scripted('ci-id-token', (p) => yes('ci-id-token', p.user));
    const services = servicesWith(new AuthenticatorChain([idTokens]), new SuccessCache({ ttlMs: 60_000 }));
    await attempt(services, 'ci', 'token');
    await attempt(services, 'ci', 'token');
    assert.equal(idTokens.asked.length, 2);
  });

  it('drops a cached success when the same credentials are refused later', async () => {
    let refuse = false;
    const directory = new Scripted('ldap', (p) => (refuse ? { kind: 'no', reason: 'wrong password' } : yes('ldap', p.user)), undefined, (identity) => (refuse ? undefined : identity));
    const successes = new SuccessCache({ ttlMs: 60_000 });
    const services = servicesWith(new AuthenticatorChain([directory]), successes);
    await attempt(services, 'alice', 'pw');
    assert.equal(successes.size, 1);
    refuse = true;
    assert.equal((await attempt(services, 'alice', 'pw')).status, 401);
    assert.equal(successes.size, 0);
  });

  it('checks tokens with the owning authenticator and gives refresh tokens only where it allows them', async () => {
    const directory = new Scripted('ldap', (p) => yes('ldap', p.user), async (identity) => (identity.user === 'alice' ? { ...identity, groups: ['ops'] } : undefined));
    const idTokens = new Scripted('ci-id-token', (p) => yes('ci-id-token', p.user));
    idTokens.refreshable = false;
    const services = servicesWith(new AuthenticatorChain([directory, idTokens]));
    assert.deepEqual(identityOfToken(services, '', undefined), { user: null });
    assert.deepEqual(await identityOfRefreshToken(services, 'alice', 'ldap:alice'), { user: 'alice', credential: 'ldap:alice', groups: ['ops'], authenticator: 'ldap' });
    assert.equal(await identityOfRefreshToken(services, 'bob', 'ldap:bob'), undefined);
    assert.equal(mayRefresh(services, { user: 'alice', credential: 'ldap:alice' }), true);
    assert.equal(mayRefresh(services, { user: 'ci', credential: 'ci-id-token:x' }), false);
    assert.equal(mayRefresh(services, { user: 'ci', credential: 'ldap:x', scopeLimit: [] }), false);
  });
});
