// Turns presented Basic credentials (an htpasswd password or a CI token) into an identity, throttling failures.

import type { Authorizer, Identity } from './access.js';
import type { Authenticator } from './authenticator.js';
import type { CiTokenStore } from './ci-tokens.js';
import { readAuthorization, type BasicCredentials } from './credentials.js';
import { RegistryError } from './errors.js';
import type { UserStore } from './htpasswd.js';
import type { LoginThrottle } from './throttle.js';

export interface LoginServices {
  authenticator: Authenticator;
  users: UserStore;
  ciTokens: CiTokenStore;
  throttle: LoginThrottle;
}

export function basicChallenge(realm: string): string {
  return `Basic realm="${realm}",charset="UTF-8"`;
}

/**
 * Checks a user and password. Wrong password and unknown user look the same from outside.
 * Failures from one (user, address) pair are slowed down and serialised; other addresses, and
 * every successful login, are never held up.
 */
export async function logIn(services: LoginServices, credentials: BasicCredentials, address: string | undefined, realm: string): Promise<Identity> {
  const { user, password } = credentials;
  const from = address ?? 'unknown';
  const admission = services.throttle.admit(user, from);
  if (!admission.allowed) {
    throw new RegistryError('TOOMANYREQUESTS', 'too many failed logins; try again later').withHeader('Retry-After', String(admission.retryAfterSeconds));
  }
  try {
    const identity = await check(services, user, password);
    if (identity) {
      services.throttle.recordSuccess(user, from);
      return identity;
    }
    services.throttle.recordFailure(user, from);
    const delay = services.throttle.failureDelayMs(user, from);
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    throw new RegistryError('UNAUTHORIZED', 'incorrect username or password').withHeader('WWW-Authenticate', basicChallenge(realm));
  } finally {
    admission.release();
  }
}

/**
 * Who a Basic-auth caller is: a checked user, or anonymous when no credentials came and the rules
 * let anonymous callers in; otherwise a 401 with the Basic challenge.
 */
export async function identifyBasicCaller(
  services: LoginServices,
  authorizer: Authorizer,
  request: { authorization: string | undefined; address: string | undefined },
  realm: string,
): Promise<Identity> {
  const presented = readAuthorization(request.authorization);
  if (presented.kind === 'basic') return logIn(services, presented.credentials, request.address, realm);
  if (presented.kind === 'none' && authorizer.allowsAnonymous()) return { user: null };
  const message = presented.kind === 'malformed' ? 'malformed Authorization header' : 'authentication required';
  throw new RegistryError('UNAUTHORIZED', message).withHeader('WWW-Authenticate', basicChallenge(realm));
}

async function check(services: LoginServices, user: string, password: string): Promise<Identity | undefined> {
  const ciToken = services.ciTokens.verify(user, password);
  if (ciToken !== undefined) {
    if (ciToken.outcome !== 'ok') return undefined;
    return { user, credential: `ci:${ciToken.record.id}`, scopeLimit: ciToken.record.scopes };
  }
  if ((await services.authenticator.authenticate(user, password)) !== 'ok') return undefined;
  return { user, credential: services.users.credentialFingerprint(user) };
}

/**
 * The identity behind an access token, as long as its credential is still good: a removed user,
 * a changed password or a revoked CI token ends every token issued for it, not just new logins.
 */
export function identityOfToken(services: Pick<LoginServices, 'users' | 'ciTokens'>, subject: string, credential: string | undefined): Identity | undefined {
  if (subject === '') return { user: null };
  if (credential?.startsWith('ci:')) {
    const scopes = services.ciTokens.activeScopes(credential.slice(3));
    return scopes === undefined ? undefined : { user: subject, credential, scopeLimit: scopes };
  }
  return identityOfPassword(services.users, subject, credential);
}

/** The user behind a password fingerprint, while that user exists with that same password. */
export function identityOfPassword(users: UserStore, user: string, fingerprint: string | undefined): Identity | undefined {
  const current = users.credentialFingerprint(user);
  if (current === undefined || current !== fingerprint) return undefined;
  return { user, credential: current };
}
