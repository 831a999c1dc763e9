// Turns presented Basic credentials into an identity through the authenticator chain: the one place for throttling, the success cache, login logging and token revalidation.

import type { Authorizer, Identity } from '../access/access.js';
import { credentialKey, type Authenticator } from './authenticator.js';
import { AuthenticatorChain } from './chain.js';
import { CiTokenAuthenticator } from './ci-token-authenticator.js';
import type { CiTokenStore } from './ci-token-store.js';
import { readAuthorization, type BasicCredentials } from './credentials.js';
import { RegistryError } from '../errors.js';
import type { UserStore } from './htpasswd.js';
import { HtpasswdAuthenticator } from './htpasswd-authenticator.js';
import type { SuccessCache } from './success-cache.js';
import { addressGroup } from '../ip-address.js';
import type { Throttle } from '../state/shared-throttle.js';

export { identityOfPassword } from './htpasswd-authenticator.js';

export interface LoginServices {
  /** htpasswd's bcrypt checks. */
  authenticator: Authenticator;
  users: UserStore;
  ciTokens: CiTokenStore;
  /** This process's LoginThrottle, or one that shares its counts with other gateways. */
  throttle: Throttle;
  /** The authenticators in their configured order; without it, the CI tokens, then htpasswd. */
  chain?: AuthenticatorChain;
  /** Logins that succeeded moments ago (basic_cache_ttl); without it, nothing is remembered here. */
  successes?: SuccessCache;
}

const defaultChains = new WeakMap<LoginServices, AuthenticatorChain>();

/**
 * The chain the services name, else the built-in one, made once per services object: CI tokens
 * first (a token never costs a bcrypt run), then htpasswd.
 */
export function chainOf(services: LoginServices): AuthenticatorChain {
  if (services.chain !== undefined) return services.chain;
  let chain = defaultChains.get(services);
  if (chain === undefined) {
    chain = new AuthenticatorChain([new CiTokenAuthenticator(services.ciTokens), new HtpasswdAuthenticator(services.users, services.authenticator)]);
    defaultChains.set(services, chain);
  }
  return chain;
}

export function basicChallenge(realm: string): string {
  return `Basic realm="${realm}",charset="UTF-8"`;
}

/**
 * What a login tells the access log: the user name tried, the authenticator that answered and, when
 * it fails, why. Written into the response's locals; never the password or token.
 */
export interface LoginLog {
  user?: string;
  reason?: string;
  /** The authenticator that said yes, or no, or could not be asked. */
  authenticator?: string;
  /** The guess waited for its turn: failures and guesses in flight had used up the free ones. */
  throttled?: boolean;
}

/** How long a client is asked to wait when the only authenticators that might know it could not be asked. */
const unavailableRetrySeconds = 10;

/**
 * Checks a user and password against the chain. Wrong password and unknown user look the same from
 * outside (the log tells them apart). A login that succeeded moments ago is answered from the success
 * cache; credentials proven before are no guess and never held up; other guesses go through the
 * throttle: a wrong one is answered late, a right one at once. When nobody said yes or no and some
 * provider was unreachable, the answer is 503 (UNAVAILABLE), and the guess counts for nothing.
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
  const chain = chainOf(services);
  const key = credentialKey(user, password);
  const remembered = services.successes?.recall(key, (identity) => chain.remembered(identity));
  if (remembered !== undefined) {
    services.throttle.recordSuccess(user, from);
    noteSuccess(log, remembered);
    return remembered;
  }
  const guess = await services.throttle.admit(user, from, key);
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
    const answer = await chain.authenticate({ user, password, source: addressGroup(from) });
    if (answer.kind === 'yes') {
      guess.succeeded();
      if (chain.cachesAnswersOf(answer.by)) services.successes?.remember(key, answer.identity);
      noteSuccess(log, answer.identity);
      return answer.identity;
    }
    services.successes?.forget(key);
    if (answer.kind === 'unavailable') {
      log.authenticator = answer.reasons[0]!.by;
      log.reason = answer.reasons.map((entry) => `${entry.by} unavailable: ${entry.reason}`).join('; ');
      throw new RegistryError('UNAVAILABLE', 'the identity provider cannot be reached; try again later').withHeader('Retry-After', String(unavailableRetrySeconds));
    }
    if (answer.kind === 'no') log.authenticator = answer.by;
    log.reason = answer.kind === 'no' ? answer.reason : 'unknown user';
    if (answer.kind === 'no' && !chain.countsGuessesOf(answer.by)) {
      throw new RegistryError('UNAUTHORIZED', 'incorrect username or password').withHeader('WWW-Authenticate', basicChallenge(realm));
    }
    const delay = await guess.failed();
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    throw new RegistryError('UNAUTHORIZED', 'incorrect username or password').withHeader('WWW-Authenticate', basicChallenge(realm));
  } catch (error) {
    if (error instanceof RegistryError && error.code === 'TOOMANYREQUESTS' && log.reason === undefined) log.reason = 'too many password checks waiting';
    throw error;
  } finally {
    guess.release();
  }
}

/** The log names who got in as the authenticator spells them (a directory may differ in case from what was typed). */
function noteSuccess(log: LoginLog, identity: Identity): void {
  if (identity.user !== null) log.user = identity.user;
  if (identity.authenticator !== undefined) log.authenticator = identity.authenticator;
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

/**
 * The identity behind an access token, as long as its credential is still good: a removed user, a
 * changed password or a revoked CI token ends every token issued for it, not just new logins. The
 * owning authenticator decides; for htpasswd and CI tokens the answer is synchronous (the gate's
 * fast path), a directory trusts its identities until the access token expires.
 */
export function identityOfToken(services: LoginServices, subject: string, credential: string | undefined): Identity | undefined | Promise<Identity | undefined> {
  if (subject === '') return { user: null };
  return chainOf(services).identityOfToken(subject, credential, 'access-token');
}

/** The identity behind a refresh token, asked afresh of its authenticator (a directory looks the user up again). */
export async function identityOfRefreshToken(services: LoginServices, subject: string, credential: string): Promise<Identity | undefined> {
  if (subject === '') return undefined;
  return chainOf(services).identityOfToken(subject, credential, 'refresh-token');
}

/** Whether tokens issued to this identity may come with a refresh token (htpasswd and directory users; never a CI token). */
export function mayRefresh(services: LoginServices, identity: Identity): boolean {
  return chainOf(services).mayRefresh(identity);
}
