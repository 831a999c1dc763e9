// Tests for CI ID-token logins against real JWKS issuers on 127.0.0.1: mapping, every refusal, key rotation, issuers down, a private CA.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { base64url } from 'jose';
import { createCiIdTokenAuthenticator, maxIdTokenBytes, type CiIdTokenTiming } from '../src/auth/ci-id-token.js';
import { parseCiIdTokenProvider } from '../src/auth/ci-id-token-config.js';
import type { AuthAnswer, PasswordAuthenticator } from '../src/auth/chain.js';
import { githubClaims, gitlabClaims, publicKeyPem, startJwksIssuer, type JwksIssuer } from './helpers/jwks-issuer.js';
import { recordingLog, type RecordingLog } from './helpers/recording-log.js';

const audience = 'https://registry.example.com';

/** An authenticator for these issuers: `github` maps acme's repositories, `gitlab` acme's projects on protected refs. */
function authenticatorFor(
  issuers: { github?: JwksIssuer; gitlab?: JwksIssuer; extra?: Record<string, unknown>[] },
  timing: Partial<CiIdTokenTiming> = {},
  logger: RecordingLog = recordingLog(),
): PasswordAuthenticator {
  const entries: Record<string, unknown>[] = [];
  if (issuers.github) {
    entries.push({
      issuer: issuers.github.url,
      audience,
      mappings: [
        { claims: { repository: 'acme/web', ref: 'refs/heads/main' }, user: 'ci-acme-web', groups: ['ci', 'web-publishers'] },
        { claims: { repository_owner: 'acme', repository: 'acme/*' }, user: 'ci-{repository}', groups: ['ci'] },
        { claims: { repository_owner: 'odd', sub: 'repo:odd/**' }, user: 'x-{sub}' },
      ],
    });
  }
  if (issuers.gitlab) {
    entries.push({
      issuer: issuers.gitlab.url,
      audience: ['https://other.example.com', audience],
      mappings: [{ claims: { project_path: 'acme/**', ref_protected: 'true' }, user: 'gitlab-{project_path}', groups: ['ci', 'gitlab'] }],
    });
  }
  entries.push(...(issuers.extra ?? []));
  const values: Record<string, unknown> = { login_users: ['ci', 'deploy-bot'], issuers: entries };
  const config = parseCiIdTokenProvider({ where: (key) => `providers[1]${key ? `.${key}` : ''}`, raw: (key) => values[key], resolvePath: (p) => p }, 'ci-id-token');
  return createCiIdTokenAuthenticator(config, { logger, timing });
}

function login(authenticator: PasswordAuthenticator, password: string, user = 'ci'): Promise<AuthAnswer> {
  return authenticator.authenticate({ user, password, source: '127.0.0.1' });
}

function assertRefused(answer: AuthAnswer, reason: RegExp): void {
  assert.equal(answer.kind, 'no', JSON.stringify(answer));
  assert.match((answer as { reason: string }).reason, reason);
}

/** Header and claims of a token with the given header, signed or not by `sign`. */
function handMade(header: Record<string, unknown>, claims: Record<string, unknown>, sign: (input: string) => string): string {
  const input = `${base64url.encode(JSON.stringify(header))}.${base64url.encode(JSON.stringify(claims))}`;
  return `${input}.${sign(input)}`;
}

describe('CI ID-token logins', () => {
  let github: JwksIssuer;
  let gitlab: JwksIssuer;
  let stranger: JwksIssuer;

  before(async () => {
    [github, gitlab, stranger] = await Promise.all([startJwksIssuer(), startJwksIssuer({ alg: 'ES256', basePath: '/gitlab' }), startJwksIssuer()]);
  });
  after(() => Promise.all([github, gitlab, stranger].map((issuer) => issuer.close())));

  it('maps a GitHub-shaped token to its user and groups, with a credential that revalidates until the token expires', async () => {
    const authenticator = authenticatorFor({ github, gitlab });
    const claims = githubClaims('acme/web', 'refs/heads/main');
    const answer = await login(authenticator, await github.mint(claims, { audience }));
    assert.equal(answer.kind, 'yes', JSON.stringify(answer));
    const identity = (answer as Extract<AuthAnswer, { kind: 'yes' }>).identity;
    assert.equal(identity.user, 'ci-acme-web');
    assert.deepEqual(identity.groups, ['ci', 'web-publishers']);
    assert.equal(identity.authenticator, 'ci-id-token');
    const parts = identity.credential!.split(':');
    assert.equal(parts[0], 'ci-id-token');
    assert.equal(parts[4], claims.jti, 'the jti names the login');
    assert.ok(Math.abs(Number(parts[3]) - (Date.now() / 1000 + 300)) < 60, 'the exp of the ID token');

    const credential = identity.credential!;
    assert.deepEqual(authenticator.revalidate!({ user: 'ci-acme-web', credential }), identity);
    assert.deepEqual(authenticator.remembered!(identity), identity);
    assert.equal(authenticator.revalidate!({ user: 'ci-acme-web', credential }, 'refresh-token'), undefined, 'no refresh tokens');
    assert.equal(authenticator.refreshable, false);
    assert.equal(authenticator.revalidate!({ user: 'admin', credential }), undefined, 'another user with the same credential');
    const expired = [...parts.slice(0, 3), String(Math.floor(Date.now() / 1000) - 61), parts[4]].join(':');
    assert.equal(authenticator.revalidate!({ user: 'ci-acme-web', credential: expired }), undefined, 'past exp and the clock tolerance');
    const otherMapping = [parts[0], parts[1], 'AAAAAAAAAAAA', parts[3], parts[4]].join(':');
    assert.equal(authenticator.revalidate!({ user: 'ci-acme-web', credential: otherMapping }), undefined);
    const withoutThatMapping = authenticatorFor({ gitlab });
    assert.equal(withoutThatMapping.revalidate!({ user: 'ci-acme-web', credential }), undefined, 'a removed mapping ends its tokens');
  });

  it('fills a user template from the matched claims, and refuses a result that is no user name', async () => {
    const authenticator = authenticatorFor({ github });
    const answer = await login(authenticator, await github.mint(githubClaims('acme/tools', 'refs/heads/dev'), { audience }));
    assert.equal(answer.kind, 'yes', JSON.stringify(answer));
    assert.equal((answer as Extract<AuthAnswer, { kind: 'yes' }>).identity.user, 'ci-acme/tools');
    assertRefused(await login(authenticator, await github.mint(githubClaims('odd/thing', 'refs/heads/main'), { audience })), /contains ':'/);
  });

  it('maps a GitLab-shaped ES256 token from a second issuer (one of several audiences, issuer under a path)', async () => {
    const authenticator = authenticatorFor({ github, gitlab });
    const answer = await login(authenticator, await gitlab.mint(gitlabClaims('acme/platform/api', 'main'), { audience }), 'deploy-bot');
    assert.equal(answer.kind, 'yes', JSON.stringify(answer));
    const identity = (answer as Extract<AuthAnswer, { kind: 'yes' }>).identity;
    assert.equal(identity.user, 'gitlab-acme/platform/api');
    assert.deepEqual(identity.groups, ['ci', 'gitlab']);
    assertRefused(await login(authenticator, await gitlab.mint(gitlabClaims('acme/platform/api', 'feature', { ref_protected: 'false' }), { audience })), /match no mapping/);
  });

  it('refuses a token whose claims match no mapping, saying whose token it was', async () => {
    const authenticator = authenticatorFor({ github, extra: [{ issuer: stranger.url, audience, mappings: [{ claims: { constructor: '**' }, user: 'x' }] }] });
    assertRefused(await login(authenticator, await stranger.mint({ sub: 'anyone' }, { audience })), /match no mapping .*sub anyone/);
    assertRefused(await login(authenticator, await github.mint(githubClaims('evil/web', 'refs/heads/main'), { audience })), /match no mapping .*sub repo:evil\/web:ref:refs\/heads\/main/);
  });

  it('refuses a token from an issuer that is not configured, without contacting it', async () => {
    stranger.requests.discovery = stranger.requests.jwks = 0;
    const authenticator = authenticatorFor({ github });
    assertRefused(await login(authenticator, await stranger.mint(githubClaims('acme/web', 'refs/heads/main'), { audience })), /issuer http:\/\/127\.0\.0\.1:\d+ is not configured/);
    assertRefused(await login(authenticator, await stranger.mint(githubClaims('acme/web', 'refs/heads/main'), { audience, issuer: `${github.url}/` })), /not configured/);
    assert.deepEqual(stranger.requests, { discovery: 0, jwks: 0 });
  });

  it('refuses a wrong audience, an expired token and one not yet valid', async () => {
    const authenticator = authenticatorFor({ github });
    const claims = githubClaims('acme/web', 'refs/heads/main');
    assertRefused(await login(authenticator, await github.mint(claims, { audience: 'https://elsewhere.example.com' })), /audience not accepted/);
    assertRefused(await login(authenticator, await github.mint(claims, { audience: [] })), /audience not accepted/);
    assertRefused(await login(authenticator, await github.mint(claims, { audience, expiresIn: -120 })), /expired/);
    const { nbf: _, ...withoutNbf } = claims;
    assertRefused(await login(authenticator, await github.mint(withoutNbf, { audience, notBefore: 600, expiresIn: 900 })), /not yet valid/);
    const withinTolerance = await login(authenticator, await github.mint(claims, { audience, expiresIn: -20 }));
    assert.equal(withinTolerance.kind, 'yes', 'a clock 20 s apart is tolerated');
  });

  it('refuses alg none and HS256 signed with the public key, before fetching any key', async () => {
    const issuer = await startJwksIssuer();
    try {
      const authenticator = authenticatorFor({ github: issuer });
      const claims = { ...githubClaims('acme/web', 'refs/heads/main'), iss: issuer.url, aud: audience, exp: Math.floor(Date.now() / 1000) + 300 };
      assertRefused(await login(authenticator, handMade({ alg: 'none', typ: 'JWT' }, claims, () => '')), /not a JWT/);
      assertRefused(await login(authenticator, handMade({ alg: 'none', typ: 'JWT' }, claims, () => 'c2ln')), /algorithm none not accepted/);
      for (const secret of [await publicKeyPem(issuer.currentKey), JSON.stringify(issuer.currentKey.jwk)]) {
        const forged = handMade({ alg: 'HS256', typ: 'JWT', kid: issuer.currentKey.kid }, claims, (input) => createHmac('sha256', secret).update(input).digest('base64url'));
        assertRefused(await login(authenticator, forged), /algorithm HS256 not accepted/);
      }
      assertRefused(await login(authenticator, handMade({ alg: 'RS512', kid: issuer.currentKey.kid }, claims, () => 'c2ln')), /algorithm RS512 not accepted/);
      assert.deepEqual(issuer.requests, { discovery: 0, jwks: 0 });
    } finally {
      await issuer.close();
    }
  });

  it('refuses a token signed by another key under a published kid', async () => {
    const authenticator = authenticatorFor({ github });
    const impostor = await github.strayKey();
    assertRefused(await login(authenticator, await github.mint(githubClaims('acme/web', 'refs/heads/main'), { audience, key: impostor, kid: github.currentKey.kid })), /signature does not verify/);
  });

  it('fetches the keys again after a rotation, and refuses a kid nobody has without asking the issuer again', async () => {
    const issuer = await startJwksIssuer();
    try {
      const claims = githubClaims('acme/web', 'refs/heads/main');
      const rotating = authenticatorFor({ github: issuer }, { unknownKeyCooldownMs: 0 });
      assert.equal((await login(rotating, await issuer.mint(claims, { audience }))).kind, 'yes');
      assert.deepEqual(issuer.requests, { discovery: 1, jwks: 1 });
      await issuer.rotate();
      assert.equal((await login(rotating, await issuer.mint(claims, { audience }))).kind, 'yes', 'the new key was fetched');
      assert.equal(issuer.requests.jwks, 2);

      const patient = authenticatorFor({ github: issuer }, { unknownKeyCooldownMs: 600_000 });
      assert.equal((await login(patient, await issuer.mint(claims, { audience }))).kind, 'yes');
      const fetched = issuer.requests.jwks;
      const stray = await issuer.strayKey();
      const ghosts = await Promise.all(Array.from({ length: 20 }, () => issuer.mint(claims, { audience, key: stray })));
      const answers = await Promise.all(ghosts.map((token) => login(patient, token)));
      for (const answer of answers) assertRefused(answer, /key issuer .* does not publish/);
      for (const token of ghosts.slice(0, 5)) assertRefused(await login(patient, token), /does not publish/);
      assert.equal(issuer.requests.jwks, fetched, 'unknown kids within the cooldown fetch nothing');
      assert.equal(issuer.requests.discovery, 2, 'one discovery per authenticator');
    } finally {
      await issuer.close();
    }
  });

  it('refuses a huge token without reading it, a password that is not a JWT, and answers not-mine for other users', async () => {
    const authenticator = authenticatorFor({ github });
    const valid = await github.mint(githubClaims('acme/web', 'refs/heads/main'), { audience });
    assertRefused(await login(authenticator, `${valid}.${'A'.repeat(maxIdTokenBytes)}`), /longer than 16384 bytes/);
    assertRefused(await login(authenticator, await github.mint(githubClaims('acme/web', 'refs/heads/main', { padding: 'x'.repeat(maxIdTokenBytes) }), { audience })), /longer than/);
    assertRefused(await login(authenticator, 'hunter2'), /not a JWT/);
    assertRefused(await login(authenticator, 'a.b.c'), /not a JWT/);
    assertRefused(await login(authenticator, `${valid}\n`), /not a JWT/);
    assert.deepEqual(await login(authenticator, valid, 'alice'), { kind: 'not-mine' });
    assert.deepEqual(await login(authenticator, 'hunter2', 'admin'), { kind: 'not-mine' });
  });

  it('never logs a token', async () => {
    const logger = recordingLog();
    const issuer = await startJwksIssuer();
    const token = await issuer.mint(githubClaims('acme/web', 'refs/heads/main'), { audience });
    const authenticator = authenticatorFor({ github: issuer }, {}, logger);
    assert.equal((await login(authenticator, token)).kind, 'yes');
    await issuer.close();
    const refused = authenticatorFor({ github: issuer }, {}, logger);
    assert.equal((await login(refused, token)).kind, 'unavailable');
    assert.ok(logger.entries.length >= 2, 'discovery and the failure were logged');
    const [, , signature] = token.split('.');
    for (const entry of logger.entries) assert.ok(!JSON.stringify(entry).includes(signature!), entry.message);
  });
});
