// Issues and verifies the registry's Bearer JWTs and the token service's refresh tokens; no HTTP here.

import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import { copyAccess, type Access } from '../access/access.js';
import { ConfigError } from '../errors.js';

export interface TokenAuthorityOptions {
  privateKeyPem: string;
  certificatePem: string;
  /** `iss` of every token; registry:2 must be configured with the same `auth.token.issuer`. */
  issuer: string;
  /** `aud` of access tokens; registry:2's `auth.token.service`. */
  service: string;
  /** Access token lifetime; expires_in is never below MIN_EXPIRES_IN_SECONDS. */
  ttlSeconds: number;
  /** Current time in epoch milliseconds; defaults to Date.now (tests move it). */
  now?: () => number;
}

export interface IssuedToken {
  token: string;
  expiresIn: number;
  /** RFC 3339, UTC. */
  issuedAt: string;
}

export interface VerifiedAccessToken {
  subject: string;
  access: Access[];
  /** Which credential the token was issued for (see issue()), so the gate can drop tokens of removed users or revoked CI tokens. */
  credential: string | undefined;
  /** Epoch seconds. */
  expiresAt: number;
}

export type TokenAlgorithm = 'RS256' | 'ES256';

/** Why a token was refused: an authentic but expired token is told apart from everything else. */
export class TokenError extends Error {
  override readonly name = 'TokenError';
  constructor(
    readonly reason: 'expired' | 'invalid',
    message: string,
  ) {
    super(message);
  }
}

/** Older Docker clients refresh a token as soon as it has less than this left, so never issue less. */
const MIN_EXPIRES_IN_SECONDS = 60;
/** The same leeway registry:2 applies to exp and nbf. */
const CLOCK_TOLERANCE_SECONDS = 60;
/** Far above any real token (Node refuses request headers over 16 KiB); stops parsing of junk early. */
const MAX_TOKEN_LENGTH = 64 * 1024;

const KEY_SETTING = 'GATEWAY_TOKEN_KEY';
const REFRESH_USE = 'refresh';
const VERIFIED_CACHE_SIZE = 1024;

/**
 * Holds the signing key and its certificate; the only place tokens are made or checked.
 * Access tokens carry `x5c` (for registry:2 with rootcertbundle = the certificate) and a libtrust
 * `kid`. Refresh tokens use another audience and a `use` claim so neither kind passes as the other.
 */
export class TokenAuthority {
  readonly keyId: string;
  readonly algorithm: TokenAlgorithm;
  private readonly privateKey: crypto.KeyObject;
  private readonly publicKey: crypto.KeyObject;
  private readonly certificateChain: string[];
  private readonly issuer: string;
  private readonly service: string;
  private readonly refreshAudience: string;
  private readonly expiresIn: number;
  private readonly now: () => number;
  private readonly verified = new Map<string, VerifiedAccessToken>();

  constructor(options: TokenAuthorityOptions) {
    this.privateKey = parsePrivateKey(options.privateKeyPem);
    this.algorithm = algorithmFor(this.privateKey);
    const certificate = parseCertificate(options.certificatePem);
    if (!certificate.checkPrivateKey(this.privateKey)) {
      throw new ConfigError(KEY_SETTING, 'the token signing key does not match the token certificate');
    }
    this.now = options.now ?? Date.now;
    assertCertificateCurrent(certificate, this.now());
    this.publicKey = certificate.publicKey;
    this.certificateChain = [certificate.raw.toString('base64')];
    this.keyId = libtrustKeyId(this.publicKey);
    this.issuer = requireText('GATEWAY_TOKEN_ISSUER', options.issuer);
    this.service = requireText('GATEWAY_SERVICE', options.service);
    this.refreshAudience = `${this.service}#refresh`;
    this.expiresIn = expiresInFor(options.ttlSeconds);
  }

  /**
   * Signs an access token granting exactly `access` to `subject` ("" for anonymous). `credential`
   * (claim `cred`) names what the subject logged in with, e.g. a password fingerprint or a CI token id.
   */
  issue(subject: string, access: Access[], credential?: string): IssuedToken {
    const issuedAt = this.nowSeconds();
    const claims = {
      iss: this.issuer,
      sub: subject,
      aud: this.service,
      exp: issuedAt + this.expiresIn,
      nbf: issuedAt,
      iat: issuedAt,
      jti: newTokenId(),
      access: access.map(copyAccess),
      ...(credential === undefined ? {} : { cred: credential }),
    };
    const header = { typ: 'JWT', alg: this.algorithm, kid: this.keyId, x5c: this.certificateChain };
    const token = jwt.sign(claims, this.privateKey, { algorithm: this.algorithm, header });
    return { token, expiresIn: this.expiresIn, issuedAt: rfc3339(issuedAt) };
  }

  /** Checks an access token presented on /v2/; runs on every request, so recent results are cached. */
  verify(token: string): VerifiedAccessToken {
    const known = this.recall(token);
    if (known) return known;
    const claims = this.verifySigned(token, this.service);
    if (claims.use !== undefined) throw invalid('not an access token');
    const entry: VerifiedAccessToken = {
      subject: requireSubject(claims),
      access: parseAccessClaim(claims.access),
      credential: typeof claims.cred === 'string' ? claims.cred : undefined,
      expiresAt: requireTime(claims, 'exp'),
    };
    requireTime(claims, 'nbf');
    requireTime(claims, 'iat');
    this.remember(token, entry);
    return copyVerified(entry);
  }

  /** A refresh token has no expiry: the caller compares the fingerprint with the user's current one. */
  issueRefreshToken(subject: string, credentialFingerprint: string): string {
    const claims = {
      iss: this.issuer,
      sub: subject,
      aud: this.refreshAudience,
      iat: this.nowSeconds(),
      jti: newTokenId(),
      use: REFRESH_USE,
      fpr: credentialFingerprint,
    };
    const header = { typ: 'JWT', alg: this.algorithm, kid: this.keyId };
    return jwt.sign(claims, this.privateKey, { algorithm: this.algorithm, header });
  }

  verifyRefreshToken(token: string): { subject: string; credentialFingerprint: string } {
    const claims = this.verifySigned(token, this.refreshAudience, 'refresh token');
    if (claims.use !== REFRESH_USE) throw invalid('not a refresh token');
    if (typeof claims.fpr !== 'string' || claims.fpr.length === 0) throw invalid('refresh token has no fingerprint');
    return { subject: requireSubject(claims), credentialFingerprint: claims.fpr };
  }

  /** Signature, algorithm, issuer, audience and time checks shared by both kinds of token. */
  private verifySigned(token: string, audience: string, kind = 'token'): jwt.JwtPayload {
    if (typeof token !== 'string' || token.length === 0) throw invalid(`no ${kind}`);
    if (token.length > MAX_TOKEN_LENGTH) throw invalid(`${kind} too long`);
    let payload: string | jwt.JwtPayload;
    try {
      payload = jwt.verify(token, this.publicKey, {
        algorithms: [this.algorithm],
        issuer: this.issuer,
        audience,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        clockTimestamp: this.nowSeconds(),
      });
    } catch (error) {
      if (error instanceof jwt.TokenExpiredError) throw new TokenError('expired', `${kind} expired`);
      throw invalid(`${kind} rejected: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      throw invalid(`${kind} has no claim set`);
    }
    return payload;
  }

  private recall(token: string): VerifiedAccessToken | undefined {
    const entry = this.verified.get(token);
    if (!entry) return undefined;
    this.verified.delete(token);
    // Past exp the full check decides (it still allows the clock tolerance, then says 'expired').
    if (this.nowSeconds() >= entry.expiresAt) return undefined;
    this.verified.set(token, entry);
    return copyVerified(entry);
  }

  private remember(token: string, entry: VerifiedAccessToken): void {
    this.verified.set(token, entry);
    if (this.verified.size > VERIFIED_CACHE_SIZE) {
      const oldest = this.verified.keys().next();
      if (!oldest.done) this.verified.delete(oldest.value);
    }
  }

  private nowSeconds(): number {
    return Math.floor(this.now() / 1000);
  }
}

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/**
 * The key ID registry:2 (libtrust) computes for a public key: SHA-256 of the DER
 * SubjectPublicKeyInfo, first 240 bits, base32 without padding, in 12 groups of 4 joined by ':'.
 */
export function libtrustKeyId(publicKey: crypto.KeyObject): string {
  const key = publicKey.type === 'private' ? crypto.createPublicKey(publicKey) : publicKey;
  const spki = key.export({ type: 'spki', format: 'der' });
  const digest = crypto.createHash('sha256').update(spki).digest().subarray(0, 30);
  const groups = base32(digest).match(/.{4}/g) ?? [];
  return groups.join(':');
}

function base32(bytes: Uint8Array): string {
  let output = '';
  let buffered = 0;
  let bufferedBits = 0;
  for (const byte of bytes) {
    buffered = ((buffered << 8) | byte) & 0xffff;
    bufferedBits += 8;
    while (bufferedBits >= 5) {
      output += BASE32_ALPHABET[(buffered >>> (bufferedBits - 5)) & 31];
      bufferedBits -= 5;
    }
  }
  if (bufferedBits > 0) output += BASE32_ALPHABET[(buffered << (5 - bufferedBits)) & 31];
  return output;
}

function parsePrivateKey(pem: string): crypto.KeyObject {
  try {
    return crypto.createPrivateKey(pem);
  } catch {
    throw new ConfigError(KEY_SETTING, 'the token signing key is not a readable PEM private key');
  }
}

function parseCertificate(pem: string): crypto.X509Certificate {
  try {
    return new crypto.X509Certificate(pem);
  } catch {
    throw new ConfigError(KEY_SETTING, 'the token certificate is not a readable PEM certificate');
  }
}

function algorithmFor(key: crypto.KeyObject): TokenAlgorithm {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') {
    if ((details?.modulusLength ?? 0) < 2048) {
      throw new ConfigError(KEY_SETTING, 'an RSA token signing key needs at least 2048 bits');
    }
    return 'RS256';
  }
  if (key.asymmetricKeyType === 'ec' && details?.namedCurve === 'prime256v1') return 'ES256';
  throw new ConfigError(
    KEY_SETTING,
    `unsupported token signing key type ${key.asymmetricKeyType ?? 'unknown'} (use RSA, or EC P-256)`,
  );
}

/** registry:2 refuses an x5c certificate outside its validity period ("token signed by untrusted key"). */
function assertCertificateCurrent(certificate: crypto.X509Certificate, nowMs: number): void {
  if (Date.parse(certificate.validTo) <= nowMs) {
    throw new ConfigError(KEY_SETTING, `the token certificate expired on ${certificate.validTo}`);
  }
  if (Date.parse(certificate.validFrom) > nowMs) {
    throw new ConfigError(KEY_SETTING, `the token certificate is not valid before ${certificate.validFrom}`);
  }
}

function requireText(setting: string, value: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new ConfigError(setting, 'must not be empty');
  return value;
}

function expiresInFor(ttlSeconds: number): number {
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) {
    throw new ConfigError('GATEWAY_TOKEN_TTL', 'must be a positive number of seconds');
  }
  return Math.max(MIN_EXPIRES_IN_SECONDS, Math.floor(ttlSeconds));
}

function newTokenId(): string {
  return crypto.randomBytes(18).toString('base64url');
}

function rfc3339(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace('.000Z', 'Z');
}

function invalid(message: string): TokenError {
  return new TokenError('invalid', message);
}

function requireSubject(claims: jwt.JwtPayload): string {
  if (typeof claims.sub !== 'string') throw invalid('token has no subject');
  return claims.sub;
}

function requireTime(claims: jwt.JwtPayload, name: 'exp' | 'nbf' | 'iat'): number {
  const value: unknown = claims[name];
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalid(`token has no ${name}`);
  return value;
}

/** Only well-formed entries reach the authorizer; anything else means the token is not ours. */
function parseAccessClaim(claim: unknown): Access[] {
  if (!Array.isArray(claim)) throw invalid('token access claim is not an array');
  return claim.map((entry: unknown) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw invalid('token access entry is not an object');
    }
    const { type, name, actions } = entry as Record<string, unknown>;
    if (typeof type !== 'string' || typeof name !== 'string') {
      throw invalid('token access entry lacks a type or name');
    }
    if (!Array.isArray(actions) || !actions.every((action) => typeof action === 'string')) {
      throw invalid('token access entry actions are not a list of strings');
    }
    return { type, name, actions: [...(actions as string[])] };
  });
}

/** Callers get their own copy, so nothing they do can change a cached result. */
function copyVerified(entry: VerifiedAccessToken): VerifiedAccessToken {
  return { subject: entry.subject, access: entry.access.map(copyAccess), credential: entry.credential, expiresAt: entry.expiresAt };
}
