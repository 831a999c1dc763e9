// CI jobs log in with their OIDC ID token as the password: verified against the configured issuers' keys, its claims mapped to a user and groups.

import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type * as Jose from 'jose';
import type { JWTPayload } from 'jose';
import type { Identity } from '../access/access.js';
import type { FileLog } from '../config/watched-file.js';
import { ConfigError } from '../errors.js';
import type { AuthAnswer, PasswordAuthenticator, PresentedPassword, TokenUse } from './chain.js';
import type { CiIdTokenIssuerConfig, CiIdTokenMappingConfig, CiIdTokenProviderConfig } from './ci-id-token-config.js';
import { IssuerKeys, IssuerUnavailableError, loadJose } from './ci-id-token-keys.js';
import { claimText, compileClaimGlob, compileUserTemplate, mappedUserProblem, printable, type ClaimGlob, type UserTemplate } from './ci-id-token-match.js';

export { ciIdTokenProviderSchema, describeCiIdTokenProvider, parseCiIdTokenProvider, type CiIdTokenEntry, type CiIdTokenProviderConfig } from './ci-id-token-config.js';

/** Longer passwords are refused before anything is parsed: real ID tokens are one or two KiB. */
export const maxIdTokenBytes = 16 * 1024;
/** Accepted clock difference between the issuer and this machine, for exp and nbf. */
export const clockToleranceSeconds = 60;
/** Signature algorithms accepted; `none`, HMAC and everything else are refused before any key is looked up. */
const acceptedAlgorithms = ['RS256', 'ES256'];
/** Compact JWS: three base64url parts (the signature part is never empty: unsigned tokens are not JWTs here). */
const compactJwt = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** A jti this safe goes into the credential as it is; others are replaced by a hash of the token. */
const plainJti = /^[A-Za-z0-9._-]{1,128}$/;

export interface CiIdTokenTiming {
  /** One discovery or JWKS request's time limit. Default 5 s. */
  timeoutMs: number;
  /** Keys are fetched again for an unknown key id at most this often. Default 30 s. */
  unknownKeyCooldownMs: number;
  /** Keys older than this are fetched again before use. Default 10 min. */
  maxKeyAgeMs: number;
  /** After a failed fetch, the issuer counts as unavailable this long without a new attempt. Default 5 s. */
  failureBackoffMs: number;
}

const silentLog: FileLog = { debug() {}, info() {}, warn() {}, error() {} };

const defaultTiming: CiIdTokenTiming = { timeoutMs: 5_000, unknownKeyCooldownMs: 30_000, maxKeyAgeMs: 600_000, failureBackoffMs: 5_000 };

export interface CiIdTokenDependencies {
  /** Issuer discoveries and failures to fetch keys are logged here (never a token); default: nowhere. */
  logger?: FileLog;
  timing?: Partial<CiIdTokenTiming>;
}

interface Mapping {
  /** Names this mapping (with its issuer and audiences) in credentials: a changed or removed mapping ends them. */
  tag: string;
  claims: readonly (readonly [string, ClaimGlob])[];
  user: UserTemplate;
  groups: readonly string[];
}

interface Issuer {
  issuer: string;
  tag: string;
  audiences: string[];
  keys: IssuerKeys;
  mappings: Mapping[];
}

/** Builds the authenticator from a parsed entry (parseCiIdTokenProvider); reads `ca` files now, so a bad one stops the start. */
export function createCiIdTokenAuthenticator(config: CiIdTokenProviderConfig, dependencies: CiIdTokenDependencies): PasswordAuthenticator {
  return new CiIdTokenAuthenticator(config, dependencies);
}

class CiIdTokenAuthenticator implements PasswordAuthenticator {
  readonly name: string;
  readonly refreshable = false;
  /** A refused ID token is no password guess: its signature cannot be found by trying. */
  readonly unguessable = true;
  readonly #loginUsers: ReadonlySet<string>;
  readonly #issuers = new Map<string, Issuer>();
  /** `issuerTag:mappingTag` to what revalidation needs. */
  readonly #mappingsByTag = new Map<string, Mapping>();
  readonly #logger: FileLog;

  constructor(config: CiIdTokenProviderConfig, dependencies: CiIdTokenDependencies) {
    this.name = config.name;
    this.#logger = dependencies.logger ?? silentLog;
    this.#loginUsers = new Set(config.loginUsers);
    const timing = { ...defaultTiming, ...dependencies.timing };
    config.issuers.forEach((entry, index) => {
      const caPem = entry.ca === undefined ? undefined : readCaFile(path.resolve(entry.ca), `${config.where}.issuers[${index}].ca`);
      const keys = new IssuerKeys({ issuer: entry.issuer, jwksUri: entry.jwks_uri, caPem, logger: this.#logger, ...timing });
      const issuer: Issuer = { issuer: entry.issuer, tag: shortHash(entry.issuer), audiences: entry.audience, keys, mappings: entry.mappings.map((mapping) => compileMapping(entry, mapping)) };
      this.#issuers.set(entry.issuer, issuer);
      for (const mapping of issuer.mappings) this.#mappingsByTag.set(`${issuer.tag}:${mapping.tag}`, mapping);
    });
  }

  async authenticate(presented: PresentedPassword): Promise<AuthAnswer> {
    if (!this.#loginUsers.has(presented.user)) return { kind: 'not-mine' };
    const token = presented.password;
    if (token.length > maxIdTokenBytes || Buffer.byteLength(token, 'utf8') > maxIdTokenBytes) {
      return refused(`password longer than ${maxIdTokenBytes} bytes, too long for an ID token`);
    }
    if (!compactJwt.test(token)) return refused('password is not a JWT');
    const { decodeJwt, decodeProtectedHeader, errors, jwtVerify } = await loadJose();
    let alg: unknown;
    let unverified: JWTPayload;
    try {
      alg = decodeProtectedHeader(token).alg;
      unverified = decodeJwt(token);
    } catch {
      return refused('password is not a JWT (unreadable header or claims)');
    }
    if (typeof alg !== 'string' || !acceptedAlgorithms.includes(alg)) {
      return refused(`algorithm ${printable(String(alg))} not accepted (only ${acceptedAlgorithms.join(', ')})`);
    }
    const issuer = typeof unverified.iss === 'string' ? this.#issuers.get(unverified.iss) : undefined;
    if (issuer === undefined) return refused(`issuer ${printable(String(unverified.iss))} is not configured`);

    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(token, issuer.keys.lookup, {
        issuer: issuer.issuer,
        audience: issuer.audiences,
        algorithms: acceptedAlgorithms,
        clockTolerance: clockToleranceSeconds,
        requiredClaims: ['exp'],
      }));
    } catch (error) {
      return this.#refusal(error, issuer.issuer, errors);
    }
    return this.#mapped(issuer, claims, token);
  }

  /**
   * An access token lives while the ID token it came from would still be accepted: the credential
   * carries the ID token's exp and the mapping that matched, so any gateway sharing the
   * configuration answers from it alone. Never for a refresh token: ID-token logins get none.
   */
  revalidate(identity: { user: string; credential: string }, use: TokenUse = 'access-token'): Identity | undefined {
    if (use !== 'access-token') return undefined;
    const parts = identity.credential.split(':');
    if (parts.length !== 5 || parts[0] !== this.name) return undefined;
    const mapping = this.#mappingsByTag.get(`${parts[1]}:${parts[2]}`);
    const exp = Number(parts[3]);
    if (mapping === undefined || !Number.isSafeInteger(exp) || !stillValid(exp)) return undefined;
    const fixedUser = mapping.user.placeholders.length === 0;
    if (fixedUser ? identity.user !== mapping.user.source : mappedUserProblem(identity.user) !== undefined) return undefined;
    return { user: identity.user, credential: identity.credential, groups: mapping.groups, authenticator: this.name };
  }

  /** A login remembered by the success cache holds under the same rule as a token: until the ID token's exp. */
  remembered(identity: Identity): Identity | undefined {
    if (typeof identity.user !== 'string' || identity.credential === undefined) return undefined;
    return this.revalidate({ user: identity.user, credential: identity.credential });
  }

  async probe(): Promise<{ ok: boolean; detail: string }> {
    const results = await Promise.all([...this.#issuers.values()].map((issuer) => issuer.keys.probe()));
    return { ok: results.every((result) => result.ok), detail: results.map((result) => result.detail).join('; ') };
  }

  async close(): Promise<void> {
    // Nothing is held open: every key request uses its own connection and ends with it.
  }

  #mapped(issuer: Issuer, claims: JWTPayload, token: string): AuthAnswer {
    // Only the token's own claims count: never a name inherited from Object (constructor, toString...).
    const claim = (name: string) => (Object.hasOwn(claims, name) ? claimText(claims[name]) : undefined);
    const mapping = issuer.mappings.find((candidate) => candidate.claims.every(([name, glob]) => {
      const value = claim(name);
      return value !== undefined && glob.matches(value);
    }));
    const subject = typeof claims.sub === 'string' ? ` (sub ${printable(claims.sub)})` : '';
    if (mapping === undefined) return refused(`claims match no mapping of issuer ${issuer.issuer}${subject}`);
    const texts = new Map(mapping.claims.map(([name]) => [name, claim(name) ?? ''] as const));
    const rendered = mapping.user.render(texts);
    if ('problem' in rendered) return refused(`mapping for issuer ${issuer.issuer}${subject}: ${rendered.problem}`);
    const exp = claims.exp!;
    const tokenId = typeof claims.jti === 'string' && plainJti.test(claims.jti) ? claims.jti : `h-${shortHash(token, 22)}`;
    const credential = [this.name, issuer.tag, mapping.tag, String(Math.floor(exp)), tokenId].join(':');
    return { kind: 'yes', identity: { user: rendered.user, credential, groups: mapping.groups, authenticator: this.name } };
  }

  #refusal(error: unknown, issuer: string, errors: typeof Jose.errors): AuthAnswer {
    if (error instanceof IssuerUnavailableError) return { kind: 'unavailable', reason: error.message };
    if (error instanceof errors.JWTExpired) return refused('ID token expired');
    if (error instanceof errors.JWTClaimValidationFailed) {
      if (error.claim === 'aud') return refused(`audience not accepted for issuer ${issuer}`);
      if (error.claim === 'nbf') return refused('ID token not yet valid (nbf)');
      return refused(`claim ${printable(error.claim)} ${error.reason === 'missing' ? 'missing' : 'invalid'}`);
    }
    if (error instanceof errors.JOSEAlgNotAllowed) return refused('algorithm not accepted');
    if (error instanceof errors.JWKSNoMatchingKey) return refused(`signed with a key issuer ${issuer} does not publish`);
    if (error instanceof errors.JWSSignatureVerificationFailed) return refused('signature does not verify');
    if (error instanceof errors.JOSEError) return refused(`invalid ID token (${error.code})`);
    this.#logger.error({ issuer, err: error instanceof Error ? error.message : String(error) }, 'CI ID-token check failed unexpectedly');
    return { kind: 'unavailable', reason: 'the ID token could not be checked' };
  }
}

function refused(reason: string): AuthAnswer {
  return { kind: 'no', reason };
}

function stillValid(exp: number): boolean {
  return Date.now() / 1000 < exp + clockToleranceSeconds;
}

function compileMapping(issuer: CiIdTokenIssuerConfig, mapping: CiIdTokenMappingConfig): Mapping {
  const claims = Object.entries(mapping.claims).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const identityOfRule = JSON.stringify([issuer.issuer, [...issuer.audience].sort(), claims, mapping.user, mapping.groups]);
  return {
    tag: shortHash(identityOfRule),
    claims: claims.map(([name, glob]) => [name, compileClaimGlob(glob)] as const),
    user: compileUserTemplate(mapping.user),
    groups: Object.freeze([...new Set(mapping.groups)]),
  };
}

function shortHash(text: string, length = 12): string {
  return createHash('sha256').update(text, 'utf8').digest('base64url').slice(0, length);
}

/** The PEM certificates in `file`, each one parsed, or a ConfigError naming `key`. */
function readCaFile(file: string, key: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(key, `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ConfigError(key, `${file} holds no PEM certificate`);
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch {
      throw new ConfigError(key, `${file} holds a certificate that cannot be read`);
    }
  }
  return blocks.join('\n');
}
