// Tests for the token service's JWTs: issue/verify, every rejection, libtrust key IDs, and registry:2 accepting them.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import jwt from 'jsonwebtoken';
import type { Access } from '../../src/access/access.js';
import { ConfigError } from '../../src/errors.js';
import { libtrustKeyId, TokenAuthority, TokenError, type TokenAuthorityOptions } from '../../src/auth/token.js';
import { makeEcTokenKey, makeRsaTokenKey } from '../helpers/token-keys.js';

const ISSUER = 'registry-gateway';
const SERVICE = 'registry.example.com';

const rsaKey = makeRsaTokenKey();
const otherRsaKey = makeRsaTokenKey('another signer');
const ecKey = makeEcTokenKey();

function options(overrides: Partial<TokenAuthorityOptions> = {}): TokenAuthorityOptions {
  return { ...rsaKey, issuer: ISSUER, service: SERVICE, ttlSeconds: 300, ...overrides };
}

const authority = new TokenAuthority(options());
const pullPush: Access[] = [{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }];

interface DecodedToken {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  signingInput: string;
  signature: Buffer;
}

function decode(token: string): DecodedToken {
  const [header = '', claims = '', signature = ''] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(claims, 'base64url').toString('utf8')) as Record<string, unknown>,
    signingInput: `${header}.${claims}`,
    signature: Buffer.from(signature, 'base64url'),
  };
}

function encodeSegment(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** Signs arbitrary claims with the gateway's own key, to reach the checks that follow the signature. */
function signWithGatewayKey(claims: Record<string, unknown>): string {
  return jwt.sign(claims, rsaKey.privateKeyPem, { algorithm: 'RS256', header: { typ: 'JWT', alg: 'RS256' } });
}

function validClaims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { iss: ISSUER, sub: 'alice', aud: SERVICE, exp: now + 300, nbf: now, iat: now, jti: 'x'.repeat(22), access: [], ...extra };
}

function assertRefused(action: () => unknown, reason: 'expired' | 'invalid'): void {
  assert.throws(action, (error: unknown) => {
    assert.ok(error instanceof TokenError, `expected a TokenError, got ${String(error)}`);
    assert.equal(error.reason, reason);
    return true;
  });
}

test('an issued access token verifies and carries its subject and access', () => {
  const issued = authority.issue('alice', pullPush);
  const verified = authority.verify(issued.token);
  assert.equal(verified.subject, 'alice');
  assert.deepEqual(verified.access, pullPush);
  const { claims } = decode(issued.token);
  assert.equal(verified.expiresAt, claims.exp);
  assert.equal(issued.expiresIn, 300);
  assert.equal(Date.parse(issued.issuedAt) / 1000, claims.iat);
  assert.match(issued.issuedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
});

test('an anonymous token with an empty grant verifies as sub "" with no access', () => {
  const verified = authority.verify(authority.issue('', []).token);
  assert.equal(verified.subject, '');
  assert.deepEqual(verified.access, []);
});

test('the claim set has the fields registry:2 reads', () => {
  const { claims } = decode(authority.issue('alice', pullPush).token);
  assert.equal(claims.iss, ISSUER);
  assert.equal(claims.sub, 'alice');
  assert.equal(claims.aud, SERVICE);
  assert.equal(claims.nbf, claims.iat);
  assert.equal(claims.exp, (claims.iat as number) + 300);
  assert.deepEqual(claims.access, pullPush);
  assert.equal(typeof claims.jti, 'string');
  assert.match(claims.jti as string, /^[A-Za-z0-9_-]+$/);
  assert.ok(Buffer.from(claims.jti as string, 'base64url').length >= 16);
  assert.notEqual(decode(authority.issue('alice', []).token).claims.jti, claims.jti);
});

test('expires_in is never below 60 seconds, even with a shorter ttl', () => {
  const shortLived = new TokenAuthority(options({ ttlSeconds: 10 }));
  const issued = shortLived.issue('alice', []);
  assert.equal(issued.expiresIn, 60);
  const { claims } = decode(issued.token);
  assert.equal((claims.exp as number) - (claims.iat as number), 60);
});

test('a caller changing a verified result does not change the next one', () => {
  const { token } = authority.issue('alice', pullPush);
  const first = authority.verify(token);
  first.access[0]?.actions.push('delete');
  first.access.push({ type: 'registry', name: 'catalog', actions: ['*'] });
  assert.deepEqual(authority.verify(token).access, pullPush);
});

for (const [label, key, algorithm, dsaEncoding] of [
  ['RSA', rsaKey, 'RS256', undefined],
  ['EC P-256', ecKey, 'ES256', 'ieee-p1363'],
] as const) {
  test(`${label}: the header names the key by libtrust kid and carries the certificate that verifies it`, () => {
    const signer = new TokenAuthority(options(key));
    assert.equal(signer.algorithm, algorithm);
    const issued = signer.issue('alice', pullPush);
    const { header, signingInput, signature } = decode(issued.token);
    assert.equal(header.typ, 'JWT');
    assert.equal(header.alg, algorithm);
    assert.equal(header.kid, signer.keyId);
    assert.equal(signer.keyId, libtrustKeyId(crypto.createPublicKey(key.privateKeyPem)));
    assert.ok(Array.isArray(header.x5c) && header.x5c.length === 1);
    const certificate = new crypto.X509Certificate(Buffer.from(header.x5c[0] as string, 'base64'));
    assert.equal(certificate.fingerprint256, new crypto.X509Certificate(key.certificatePem).fingerprint256);
    const verifies = crypto.verify(
      'sha256',
      Buffer.from(signingInput),
      dsaEncoding ? { key: certificate.publicKey, dsaEncoding } : certificate.publicKey,
      signature,
    );
    assert.equal(verifies, true);
    assert.deepEqual(signer.verify(issued.token).access, pullPush);
  });
}

test('libtrust key IDs match published vectors', () => {
  // docs/spec/auth/jwt.md of distribution (its example P-256 key and kid).
  const specKey = crypto.createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: 'm7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q',
      y: 'dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc',
    },
    format: 'jwk',
  });
  assert.equal(libtrustKeyId(specKey), 'PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6');

  // realityone/libtrust-py tests/fixtures/ec-public.pem and tests/test_ec_key.py.
  const libtrustEcKey = crypto.createPublicKey(
    '-----BEGIN PUBLIC KEY-----\n' +
      'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE4pBqYlc5IU5pJh5AOvijtEccStyJ\n' +
      'u0dSAiz4OlDGGFk5PvSlSh+wqUcSyp1ZRSP5kX7Pluof72g5MniaoFrLKg==\n' +
      '-----END PUBLIC KEY-----\n',
  );
  assert.equal(libtrustKeyId(libtrustEcKey), 'UEV2:PPF2:4DMU:WZYF:WOWU:677P:B7XU:SGFA:BMUG:NCTC:R7CL:XFKZ');

  // realityone/libtrust-py tests/fixtures/public.pem (RSA 4096) and tests/test_rsa_key.py.
  const libtrustRsaKey = crypto.createPublicKey(
    '-----BEGIN PUBLIC KEY-----\n' +
      'MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAwq1mCmgn460MC6MnCqra\n' +
      'nQNTgmKuKPl7bNH7Qc6hBDGHlnIjU6q/h2KXF37TC5Y9tsKvQ4b8jd0Sf0dXFHml\n' +
      '8qunSvNnqsSvoD8tSPUKqXS6jrlbGSQXhya7BL1RPGccD5K1xrV73QlI6uFPd3AP\n' +
      'RQYij5EOB8IOWEQujJk/8Mjc0EC9zvk5TUJb59hkOUPZ3CkvSBNLNS8wpQI98FRn\n' +
      'IzHjuaNicqve8054oxmDKifHWy0nnF135cXW8zkH3Zto1q89zD2g+zcVxLcRP84U\n' +
      'he0nSQyg7vEYl4Wl74Eo6/89qL2yE0mEiQN245ACA5B8WFV/t3j/OD3ydOCaAOg2\n' +
      '8vQtzcZ1gh2Ev4RxeR7bKq58g+R0+MMwl7nnW29mbCkcgdVVR4YPmglP7Vb6w7/N\n' +
      'bqFhnxx4E3A05AeevHdMdYCrtgQwogvIhdOHLcVQxJgwy1d2Lg/mv9rovhCJ7d3X\n' +
      'aNEYym6CplCHPMtfnU1LCVkA6b44pFaOVjsAQ8FviFtGXQAToRtwoszSarzslHKY\n' +
      'dPoSGFOsgNJgW67iViOYqGPD97rgJA0VPm0POMNHGw/R6o+08KhDF/OI1EDckmjX\n' +
      'hUggY/WCqWDxD77Ezd/wr9Zlbv/uSIEL9ifvBLq06lLcXMLrQbJrwMbDrngMZMAc\n' +
      'UkTzThmtxNs4uwu45R+zfKcCAwEAAQ==\n' +
      '-----END PUBLIC KEY-----\n',
  );
  assert.equal(libtrustKeyId(libtrustRsaKey), 'IIYO:OWAZ:MBMG:2SIK:IK2I:OP5Z:H6QR:KN6Y:QUGO:BUWN:TYW3:JXVW');
});

test('libtrustKeyId gives the same ID for a private key as for its public half', () => {
  const privateKey = crypto.createPrivateKey(rsaKey.privateKeyPem);
  assert.equal(libtrustKeyId(privateKey), libtrustKeyId(crypto.createPublicKey(privateKey)));
});

test('alg "none" is refused', () => {
  const claims = decode(authority.issue('alice', pullPush).token).claims;
  const unsigned = `${encodeSegment({ typ: 'JWT', alg: 'none' })}.${encodeSegment(claims)}.`;
  assertRefused(() => authority.verify(unsigned), 'invalid');
  const noneWithSignature = `${unsigned}${Buffer.from('x').toString('base64url')}`;
  assertRefused(() => authority.verify(noneWithSignature), 'invalid');
});

test('HS256 signed with the public key as the HMAC secret is refused', () => {
  const publicKey = crypto.createPublicKey(rsaKey.privateKeyPem);
  const secrets = [
    publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    publicKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    rsaKey.certificatePem,
  ];
  for (const secret of secrets) {
    const signingInput = `${encodeSegment({ typ: 'JWT', alg: 'HS256', kid: authority.keyId })}.${encodeSegment(validClaims())}`;
    const mac = crypto.createHmac('sha256', secret).update(signingInput).digest('base64url');
    assertRefused(() => authority.verify(`${signingInput}.${mac}`), 'invalid');
  }
});

test('an expired token is refused with reason "expired"', () => {
  const start = Date.now();
  const earlier = new TokenAuthority(options({ ttlSeconds: 60, now: () => start - 200_000 }));
  const { token } = earlier.issue('alice', pullPush);
  assertRefused(() => new TokenAuthority(options({ now: () => start })).verify(token), 'expired');
});

test('a token expired by 30 s is still accepted (60 s clock skew)', () => {
  const start = Date.now();
  const earlier = new TokenAuthority(options({ ttlSeconds: 60, now: () => start - 90_000 }));
  const { token } = earlier.issue('alice', pullPush);
  assert.deepEqual(new TokenAuthority(options({ now: () => start })).verify(token).access, pullPush);
});

test('a token issued by a clock up to 60 s ahead is accepted, further ahead refused', () => {
  const start = Date.now();
  const verifier = new TokenAuthority(options({ now: () => start }));
  const slightlyAhead = new TokenAuthority(options({ now: () => start + 30_000 }));
  assert.equal(verifier.verify(slightlyAhead.issue('alice', []).token).subject, 'alice');
  const farAhead = new TokenAuthority(options({ now: () => start + 120_000 }));
  assertRefused(() => verifier.verify(farAhead.issue('alice', []).token), 'invalid');
});

test('a remembered token stops being accepted once it expires', () => {
  let clock = Date.now();
  const moving = new TokenAuthority(options({ ttlSeconds: 60, now: () => clock }));
  const { token } = moving.issue('alice', pullPush);
  assert.equal(moving.verify(token).subject, 'alice');
  assert.equal(moving.verify(token).subject, 'alice');
  clock += 125_000;
  assertRefused(() => moving.verify(token), 'expired');
});

test('a token for another audience or from another issuer is refused', () => {
  const otherService = new TokenAuthority(options({ service: 'elsewhere.example.com' }));
  assertRefused(() => authority.verify(otherService.issue('alice', pullPush).token), 'invalid');
  const otherIssuer = new TokenAuthority(options({ issuer: 'someone-else' }));
  assertRefused(() => authority.verify(otherIssuer.issue('alice', pullPush).token), 'invalid');
});

test('a tampered payload is refused', () => {
  const pullOnly: Access[] = [{ type: 'repository', name: 'team/app', actions: ['pull'] }];
  const [header, payload, signature] = authority.issue('alice', pullOnly).token.split('.');
  const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8')) as { access: Access[] };
  claims.access[0] = { type: 'repository', name: 'team/app', actions: ['push'] };
  const tampered = `${header}.${encodeSegment(claims)}.${signature}`;
  assertRefused(() => authority.verify(tampered), 'invalid');
});

test('a token signed by another key is refused, even one claiming our kid and certificate', () => {
  const stranger = new TokenAuthority(options(otherRsaKey));
  assertRefused(() => authority.verify(stranger.issue('alice', pullPush).token), 'invalid');
  const ourHeader = decode(authority.issue('alice', []).token).header;
  const forged = jwt.sign(validClaims({ access: pullPush }), otherRsaKey.privateKeyPem, {
    algorithm: 'RS256',
    header: { ...ourHeader, alg: 'RS256' },
  });
  assertRefused(() => authority.verify(forged), 'invalid');
  const ecSigner = new TokenAuthority(options(ecKey));
  assertRefused(() => authority.verify(ecSigner.issue('alice', pullPush).token), 'invalid');
});

test('malformed token strings are refused as invalid', () => {
  const garbage = crypto.randomBytes(300).toString('base64');
  const samples = ['', 'a.b', 'a.b.c', '...', garbage, `${garbage}.${garbage}.${garbage}`, 'x'.repeat(5_000_000)];
  for (const sample of samples) assertRefused(() => authority.verify(sample), 'invalid');
  assertRefused(() => authority.verify(undefined as unknown as string), 'invalid');
});

test('an access claim of the wrong shape is refused', () => {
  const shapes: unknown[] = [
    undefined,
    null,
    'repository:team/app:pull',
    { type: 'repository', name: 'team/app', actions: ['pull'] },
    [null],
    ['repository:team/app:pull'],
    [{ type: 'repository', name: 'team/app' }],
    [{ type: 'repository', name: 'team/app', actions: 'pull' }],
    [{ type: 'repository', name: 'team/app', actions: [1] }],
    [{ type: 'repository', actions: ['pull'] }],
    [{ name: 'team/app', actions: ['pull'] }],
  ];
  assert.equal(authority.verify(signWithGatewayKey(validClaims({ access: pullPush }))).subject, 'alice');
  for (const access of shapes) {
    const claims = validClaims();
    if (access === undefined) delete claims.access;
    else claims.access = access;
    assertRefused(() => authority.verify(signWithGatewayKey(claims)), 'invalid');
  }
});

test('an access token without exp is refused', () => {
  const claims = validClaims();
  delete claims.exp;
  assertRefused(() => authority.verify(signWithGatewayKey(claims)), 'invalid');
});

test('a refresh token verifies, carries subject and fingerprint, and has no expiry', () => {
  const refresh = authority.issueRefreshToken('alice', 'fp-1234');
  assert.deepEqual(authority.verifyRefreshToken(refresh), { subject: 'alice', credentialFingerprint: 'fp-1234' });
  assert.equal(decode(refresh).claims.exp, undefined);
  let clock = Date.now();
  const longRunning = new TokenAuthority(options({ now: () => clock }));
  clock += 10 * 365 * 86_400_000;
  assert.equal(longRunning.verifyRefreshToken(refresh).credentialFingerprint, 'fp-1234');
});

test('a refresh token is never accepted as an access token, nor the reverse', () => {
  assertRefused(() => authority.verify(authority.issueRefreshToken('alice', 'fp')), 'invalid');
  assertRefused(() => authority.verifyRefreshToken(authority.issue('alice', pullPush).token), 'invalid');
  // Each kind is told by both its audience and its use claim, so one mistake alone is not enough.
  const refreshUseWithServiceAudience = signWithGatewayKey(validClaims({ use: 'refresh', fpr: 'fp' }));
  assertRefused(() => authority.verify(refreshUseWithServiceAudience), 'invalid');
  const refreshAudienceWithoutUse = signWithGatewayKey({ iss: ISSUER, sub: 'alice', aud: `${SERVICE}#refresh`, fpr: 'fp' });
  assertRefused(() => authority.verifyRefreshToken(refreshAudienceWithoutUse), 'invalid');
});

test('a refresh token from another key, issuer or service is refused', () => {
  for (const other of [options(otherRsaKey), options({ issuer: 'someone-else' }), options({ service: 'elsewhere' })]) {
    const refresh = new TokenAuthority(other).issueRefreshToken('alice', 'fp');
    assertRefused(() => authority.verifyRefreshToken(refresh), 'invalid');
  }
  for (const sample of ['', 'a.b', 'x'.repeat(100_000)]) assertRefused(() => authority.verifyRefreshToken(sample), 'invalid');
});

function assertConfigError(action: () => unknown, pattern: RegExp): void {
  assert.throws(action, (error: unknown) => {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.key, 'GATEWAY_TOKEN_KEY');
    assert.match(error.message, pattern);
    return true;
  });
}

test('a key that does not match the certificate is a configuration error', () => {
  assertConfigError(
    () => new TokenAuthority(options({ privateKeyPem: rsaKey.privateKeyPem, certificatePem: otherRsaKey.certificatePem })),
    /does not match/,
  );
  assertConfigError(
    () => new TokenAuthority(options({ privateKeyPem: ecKey.privateKeyPem, certificatePem: rsaKey.certificatePem })),
    /does not match/,
  );
});

test('unsupported key types and unreadable PEM are configuration errors', () => {
  const ed25519 = crypto.generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  assertConfigError(() => new TokenAuthority(options({ privateKeyPem: ed25519 })), /unsupported/);
  const p384 = crypto
    .generateKeyPairSync('ec', { namedCurve: 'secp384r1' })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
  assertConfigError(() => new TokenAuthority(options({ privateKeyPem: p384 })), /unsupported/);
  assertConfigError(() => new TokenAuthority(options({ privateKeyPem: 'not a key' })), /private key/);
  assertConfigError(() => new TokenAuthority(options({ certificatePem: 'not a certificate' })), /certificate/);
});

test('an expired certificate is a configuration error, since registry:2 would refuse every token', () => {
  assertConfigError(() => new TokenAuthority(options({ now: () => Date.now() + 30 * 86_400_000 })), /expired/);
});

// registry:2 itself --------------------------------------------------------------------------

interface RunningRegistry {
  origin: string;
}

async function startRegistry(t: test.TestContext, rootCertBundle: string): Promise<RunningRegistry> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'token-registry-'));
  const bundlePath = path.join(dir, 'token-certs.pem');
  await fs.writeFile(bundlePath, rootCertBundle);
  const config = {
    version: 0.1,
    log: { level: 'info' },
    storage: { filesystem: { rootdirectory: path.join(dir, 'data') } },
    http: { addr: '127.0.0.1:0', secret: crypto.randomBytes(16).toString('hex') },
    auth: { token: { realm: 'https://127.0.0.1/token', service: SERVICE, issuer: ISSUER, rootcertbundle: bundlePath } },
  };
  const configPath = path.join(dir, 'config.yml');
  // YAML is a superset of JSON.
  await fs.writeFile(configPath, JSON.stringify(config));

  const env = { ...process.env };
  delete env.AWS_CA_BUNDLE;
  const child = spawn('/usr/bin/docker-registry', ['serve', configPath], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    await fs.rm(dir, { recursive: true, force: true });
  });

  let log = '';
  const port = await new Promise<number>((resolve, reject) => {
    const onOutput = (chunk: Buffer): void => {
      log = (log + chunk.toString('utf8')).slice(-20_000);
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(log);
      if (match) resolve(Number(match[1]));
    };
    // Keep draining both pipes for the process's whole life, or its logging would block it.
    child.stdout.on('data', onOutput);
    child.stderr.on('data', onOutput);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`docker-registry exited with ${String(code)}:\n${log}`)));
  });
  const origin = `http://127.0.0.1:${port}`;
  await waitUntilAnswering(`${origin}/v2/`);
  return { origin };
}

async function waitUntilAnswering(url: string): Promise<void> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 100; attempt += 1) {
    try {
      await (await fetch(url)).arrayBuffer();
      return;
    } catch (error) {
      lastError = error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`registry never answered at ${url}: ${String(lastError)}`);
}

async function get(url: string, token?: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: response.status, body: await response.text() };
}

test('registry:2 accepts the tokens (rootcertbundle = the token certificates)', async (t) => {
  const { origin } = await startRegistry(t, rsaKey.certificatePem + ecKey.certificatePem);
  const ecAuthority = new TokenAuthority(options(ecKey));
  const pullFoo: Access[] = [{ type: 'repository', name: 'foo', actions: ['pull'] }];

  await t.test('no token: 401, so the acceptances below mean something', async () => {
    assert.equal((await get(`${origin}/v2/`)).status, 401);
  });

  await t.test('GET /v2/ with an RS256 token: 200', async () => {
    assert.equal((await get(`${origin}/v2/`, authority.issue('alice', []).token)).status, 200);
  });

  await t.test('GET /v2/foo/tags/list with repository:foo:pull: 404 NAME_UNKNOWN', async () => {
    const response = await get(`${origin}/v2/foo/tags/list`, authority.issue('alice', pullFoo).token);
    assert.equal(response.status, 404);
    assert.match(response.body, /NAME_UNKNOWN/);
  });

  await t.test('GET /v2/foo/tags/list without the grant: 401', async () => {
    const elsewhere: Access[] = [{ type: 'repository', name: 'bar', actions: ['pull', 'push'] }];
    assert.equal((await get(`${origin}/v2/foo/tags/list`, authority.issue('alice', elsewhere).token)).status, 401);
    assert.equal((await get(`${origin}/v2/foo/tags/list`, authority.issue('alice', []).token)).status, 401);
  });

  await t.test('an ES256 token is accepted too', async () => {
    assert.equal((await get(`${origin}/v2/`, ecAuthority.issue('alice', []).token)).status, 200);
    const response = await get(`${origin}/v2/foo/tags/list`, ecAuthority.issue('alice', pullFoo).token);
    assert.equal(response.status, 404);
  });

  await t.test('a token with only the kid (no x5c) is found by its libtrust key ID', async () => {
    const { header, claims } = decode(authority.issue('alice', pullFoo).token);
    const kidOnly = jwt.sign(claims, rsaKey.privateKeyPem, {
      algorithm: 'RS256',
      header: { typ: 'JWT', alg: 'RS256', kid: header.kid as string },
    });
    assert.equal((await get(`${origin}/v2/foo/tags/list`, kidOnly)).status, 404);
  });

  await t.test('a token from a key outside the bundle: 401', async () => {
    const stranger = new TokenAuthority(options(otherRsaKey));
    assert.equal((await get(`${origin}/v2/`, stranger.issue('alice', []).token)).status, 401);
  });

  await t.test('a refresh token: 401', async () => {
    assert.equal((await get(`${origin}/v2/`, authority.issueRefreshToken('alice', 'fp'))).status, 401);
  });
});
