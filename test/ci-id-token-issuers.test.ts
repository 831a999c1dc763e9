// Tests for CI ID-token issuers that fail or differ: down, erroring, stale keys, lying discovery, a configured jwks_uri, HTTPS with a private CA.

import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCiIdTokenAuthenticator, type CiIdTokenTiming } from '../src/auth/ci-id-token.js';
import { parseCiIdTokenProvider } from '../src/auth/ci-id-token-config.js';
import type { AuthAnswer, PasswordAuthenticator } from '../src/auth/chain.js';
import { ConfigError } from '../src/errors.js';
import { createCertificates } from '../src/tls/certs.js';
import { githubClaims, startJwksIssuer, type JwksIssuer } from './helpers/jwks-issuer.js';
import { recordingLog } from './helpers/recording-log.js';

const audience = 'https://registry.example.com';

function entryFor(issuer: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { issuer, audience, mappings: [{ claims: { repository: 'acme/*' }, user: 'ci-{repository}', groups: ['ci'] }], ...extra };
}

function build(entries: Record<string, unknown>[], timing: Partial<CiIdTokenTiming> = {}): PasswordAuthenticator {
  const values: Record<string, unknown> = { login_users: ['ci'], issuers: entries };
  const config = parseCiIdTokenProvider({ where: (key) => `providers[1]${key ? `.${key}` : ''}`, raw: (key) => values[key], resolvePath: (p) => p }, 'ci-id-token');
  return createCiIdTokenAuthenticator(config, { logger: recordingLog(), timing });
}

async function login(authenticator: PasswordAuthenticator, issuer: JwksIssuer): Promise<AuthAnswer> {
  const password = await issuer.mint(githubClaims('acme/web', 'refs/heads/main'), { audience });
  return authenticator.authenticate({ user: 'ci', password, source: '127.0.0.1' });
}

function assertUnavailable(answer: AuthAnswer, reason: RegExp): void {
  assert.equal(answer.kind, 'unavailable', JSON.stringify(answer));
  assert.match((answer as { reason: string }).reason, reason);
}

describe('CI ID-token issuers', () => {
  let up: JwksIssuer;
  before(async () => {
    up = await startJwksIssuer();
  });
  after(() => up.close());

  it('answers unavailable for an issuer that is down, and keeps the other issuer working', async () => {
    const down = await startJwksIssuer();
    await down.close();
    const authenticator = build([entryFor(down.url), entryFor(up.url)]);
    assertUnavailable(await login(authenticator, down), new RegExp(`^issuer ${down.url}: .*ECONNREFUSED`));
    assert.equal((await login(authenticator, up)).kind, 'yes');
    const probe = await authenticator.probe!();
    assert.equal(probe.ok, false);
    assert.match(probe.detail, new RegExp(`${up.url}: 1 key \\(RS256\\)`));
  });

  it('answers unavailable while the issuer answers errors, without asking again during the backoff; works once it is back', async () => {
    const issuer = await startJwksIssuer();
    try {
      issuer.failWith(503);
      const patient = build([entryFor(issuer.url)], { failureBackoffMs: 600_000 });
      assertUnavailable(await login(patient, issuer), /discovery .* answered HTTP 503/);
      assertUnavailable(await login(patient, issuer), /HTTP 503/);
      assert.equal(issuer.requests.discovery, 1, 'the backoff holds further attempts');

      const eager = build([entryFor(issuer.url)], { failureBackoffMs: 0 });
      assertUnavailable(await login(eager, issuer), /HTTP 503/);
      issuer.failWith(undefined);
      assert.equal((await login(eager, issuer)).kind, 'yes');
      issuer.failWith(500);
      assert.deepEqual(await patient.probe!(), { ok: false, detail: `${issuer.url}: discovery ${issuer.url}/.well-known/openid-configuration answered HTTP 500` });
    } finally {
      await issuer.close();
    }
  });

  it('gives up on an issuer that never answers after the request time limit', async () => {
    const issuer = await startJwksIssuer();
    try {
      issuer.hang = true;
      assertUnavailable(await login(build([entryFor(issuer.url)], { timeoutMs: 200 }), issuer), /abort|timeout/i);
    } finally {
      await issuer.close();
    }
  });

  it('uses keys no older than their age: stale keys with the issuer failing give unavailable', async () => {
    const issuer = await startJwksIssuer();
    try {
      const authenticator = build([entryFor(issuer.url)], { maxKeyAgeMs: 0, failureBackoffMs: 0 });
      assert.equal((await login(authenticator, issuer)).kind, 'yes');
      assert.equal((await login(authenticator, issuer)).kind, 'yes');
      assert.equal(issuer.requests.jwks, 2, 'keys of age 0 are fetched for every token');
      issuer.failWith(502);
      assertUnavailable(await login(authenticator, issuer), /Expected 200 OK/);
    } finally {
      await issuer.close();
    }
  });

  it('refuses a discovery document naming another issuer, and a key set larger than the bound', async () => {
    const issuer = await startJwksIssuer();
    try {
      issuer.discoveryIssuer = 'https://evil.example.com';
      assertUnavailable(await login(build([entryFor(issuer.url)]), issuer), /names issuer "https:\/\/evil\.example\.com"/);
      issuer.discoveryIssuer = issuer.url;
      issuer.jwksPadding = 300 * 1024;
      assertUnavailable(await login(build([entryFor(issuer.url)]), issuer), /more than 262144 bytes/);
    } finally {
      await issuer.close();
    }
  });

  it('takes the keys from a configured jwks_uri without discovery', async () => {
    const issuer = await startJwksIssuer();
    try {
      const authenticator = build([entryFor(issuer.url, { jwks_uri: issuer.jwksUrl })]);
      assert.equal((await login(authenticator, issuer)).kind, 'yes');
      assert.deepEqual(issuer.requests, { discovery: 0, jwks: 1 });
    } finally {
      await issuer.close();
    }
  });
});

describe('CI ID-token issuer over HTTPS with a private CA', () => {
  let folder: string;
  let issuer: JwksIssuer;
  let caFile: string;
  let otherCaFile: string;

  before(async () => {
    folder = await mkdtemp(path.join(tmpdir(), 'ci-id-token-tls-'));
    const [mine, other] = await Promise.all([
      createCertificates({ dir: path.join(folder, 'certs'), caDir: path.join(folder, 'ca'), hosts: ['127.0.0.1'] }),
      createCertificates({ dir: path.join(folder, 'other-certs'), caDir: path.join(folder, 'other-ca'), hosts: ['127.0.0.1'] }),
    ]);
    caFile = mine.caCert;
    otherCaFile = other.caCert;
    issuer = await startJwksIssuer({ tls: { cert: await readFile(mine.serverCert, 'utf8'), key: await readFile(mine.serverKey, 'utf8') }, basePath: '/tenant' });
  });
  after(async () => {
    await issuer.close();
    await rm(folder, { recursive: true, force: true });
  });

  it('trusts the issuer through its ca file, and only through it', async () => {
    assert.match(issuer.url, /^https:\/\/127\.0\.0\.1:\d+\/tenant$/);
    assert.equal((await login(build([entryFor(issuer.url, { ca: caFile })]), issuer)).kind, 'yes');
    assertUnavailable(await login(build([entryFor(issuer.url)]), issuer), /self.signed|unable to (get|verify)/i);
    assertUnavailable(await login(build([entryFor(issuer.url, { ca: otherCaFile })]), issuer), /self.signed|unable to (get|verify)|signature/i);
    const probe = await build([entryFor(issuer.url, { ca: caFile })]).probe!();
    assert.deepEqual(probe, { ok: true, detail: `${issuer.url}: 1 key (RS256)` });
  });

  it('refuses to start with a ca file that cannot be read or holds no certificate, naming the key', async () => {
    const notPem = path.join(folder, 'not-a-ca.pem');
    await writeFile(notPem, 'hello\n');
    for (const [file, reason] of [
      [path.join(folder, 'missing.pem'), /cannot read .*ENOENT/],
      [notPem, /holds no PEM certificate/],
    ] as const) {
      assert.throws(
        () => build([entryFor(issuer.url, { ca: file })]),
        (error: unknown) => error instanceof ConfigError && error.key === 'providers[1].issuers[0].ca' && reason.test(error.reason),
      );
    }
  });
});
