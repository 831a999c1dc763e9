// Turns presented Basic credentials (an htpasswd password or a CI token) into an identity, throttling failures.

import type { Authorizer, Identity } from '../access/access.js';
import { credentialKey, type Authenticator } from './authenticator.js';
import type { CiTokenStore } from './ci-token-store.js';
import { readAuthorization, type BasicCredentials } from './credentials.js';
import { RegistryError } from '../errors.js';
import type { UserStore } from './htpasswd.js';
import { addressGroup, type LoginThrottle } from './throttle.js';

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
 * What a login tells the access log: the user name tried and, when it fails, why. Written into the
 * response's locals; never the password or token.
 */
export interface LoginLog {
  user?: string;
  reason?: string;
  /** The guess waited for its turn: failures and guesses in flight had used up the free ones. */
  throttled?: boolean;
}

/**
 * Checks a user and password. Wrong password and unknown user look the same from outside (the log
 * tells them apart). A password verified moments ago is no guess and is never held up; other
 * guesses go through the throttle: a wrong one is answered late, a right one at once.
 */
export async function logIn(
  services: LoginServices,
  credentials: BasicCredentials,
  address: string | undefined,
  realm: string,
  log: LoginLog = {},
  gone: () => boolean = () => false,
): Promise<Identity> {
  const { user, password } = credentials;
  const from = address ?? 'unknown';
  log.user = user;
  if (services.authenticator.remembers(user, password)) {
    services.throttle.recordSuccess(user, from);
    return { user, credential: services.users.credentialFingerprint(user) };
  }
  const guess = services.throttle.admit(user, from, credentialKey(user, password));
  if (!guess.allowed) {
    log.reason = 'throttled';
    throw new RegistryError('TOOMANYREQUESTS', 'too many failed logins; try again later').withHeader('Retry-After', String(guess.retryAfterSeconds));
  }
  if (guess.throttled) log.throttled = true;
  try {
    await guess.turn;
    // A client that hung up while its guess waited gets no check: nobody would hear the answer.
    if (gone()) {
      log.reason = 'client went away';
      throw new RegistryError('UNAUTHORIZED', 'the client went away').withHeader('WWW-Authenticate', basicChallenge(realm));
    }
    const outcome = await check(services, user, password, addressGroup(from));
    if ('identity' in outcome) {
      guess.succeeded();
      return outcome.identity;
    }
    log.reason = outcome.failure;
    const delay = guess.failed();
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    throw new RegistryError('UNAUTHORIZED', 'incorrect username or password').withHeader('WWW-Authenticate', basicChallenge(realm));
  } catch (error) {
    if (error instanceof RegistryError && error.code === 'TOOMANYREQUESTS' && log.reason === undefined) log.reason = 'too many password checks waiting';
    throw error;
  } finally {
    guess.release();
  }
}

/**
 * Who a Basic-auth caller is: a checked user, or anonymous when no credentials came and the rules
 * let anonymous callers in; otherwise a 401 with the Basic challenge.
 */
export async function identifyBasicCaller(
  services: LoginServices,
  authorizer: Authorizer,
  request: { authorization: string | undefined; address: string | undefined; log?: LoginLog; gone?: () => boolean },
  realm: string,
): Promise<Identity> {
  const log = request.log ?? {};
  const presented = readAuthorization(request.authorization);
  if (presented.kind === 'basic') return logIn(services, presented.credentials, request.address, realm, log, request.gone);
  if (presented.kind === 'none') {
    log.user = anonymousName;
    if (authorizer.allowsAnonymous()) return { user: null };
  }
  log.reason = presented.kind === 'malformed' ? 'malformed credentials' : 'no credentials';
  const message = presented.kind === 'malformed' ? 'malformed Authorization header' : 'authentication required';
  throw new RegistryError('UNAUTHORIZED', message).withHeader('WWW-Authenticate', basicChallenge(realm));
}

/** How logs name a caller without credentials. */
export const anonymousName = 'anonymous';

type CheckOutcome = { identity: Identity } | { failure: string };

async function check(services: LoginServices, user: string, password: string, source: string): Promise<CheckOutcome> {
  const ciToken = services.ciTokens.verify(user, password);
  if (ciToken !== undefined) {
    if (ciToken.outcome !== 'ok') return { failure: 'invalid CI token' };
    return { identity: { user, credential: `ci:${ciToken.record.id}`, scopeLimit: ciToken.record.scopes } };
  }
  const result = await services.authenticator.authenticate(user, password, source);
  if (result === 'unknown-user') return { failure: 'unknown user' };
  if (result === 'wrong-password') return { failure: 'wrong password' };
  return { identity: { user, credential: services.users.credentialFingerprint(user) } };
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
