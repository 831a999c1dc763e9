// The authenticator contract (yes, no, not mine, unavailable) and the chain that asks each authenticator in its turn.

import type { Identity } from '../access/access.js';
import { RegistryError } from '../errors.js';

export interface PresentedPassword {
  user: string;
  password: string;
  /** client address group, for fair queues */
  source: string;
}

export type AuthAnswer =
  /** Identity with user, credential (prefixed by the authenticator, see credentialOwner), groups?, scopeLimit? */
  | { kind: 'yes'; identity: Identity }
  /** Mine, and refused (wrong password, expired token...). Final: no later authenticator is asked. */
  | { kind: 'no'; reason: string }
  /** Try the next authenticator. */
  | { kind: 'not-mine' }
  /** Mine or maybe mine, but the provider is down or unreachable. */
  | { kind: 'unavailable'; reason: string };

/** What a credential carried in a token is checked for: every request (access token) or a new access token (refresh token). */
export type TokenUse = 'access-token' | 'refresh-token';

export interface PasswordAuthenticator {
  /** 'htpasswd' | 'ci-tokens' | 'ldap' | 'ci-id-token' | a provider's configured name */
  readonly name: string;
  authenticate(presented: PresentedPassword): Promise<AuthAnswer>;
  /**
   * For a credential carried in an access or refresh token: the identity if still good (user exists,
   * token not revoked), else undefined. May be async for remote providers; the gate calls it on every
   * Bearer request (`use` = 'access-token'), so there it should answer from memory. Without it, no
   * token issued for this authenticator's identities is accepted.
   */
  revalidate?(identity: { user: string; credential: string }, use?: TokenUse): Identity | undefined | Promise<Identity | undefined>;
  /** Whether tokens issued to this identity may include a refresh token (CI ID tokens: no). Only `true` allows it. */
  refreshable?: boolean;
  /**
   * True when a refusal cannot be a guess (a signed token nobody can forge by trying): its refusals
   * are not counted by the login throttle, so CI jobs sharing an address never slow each other down.
   */
  unguessable?: boolean;
  /**
   * The login success cache asks this, without any I/O, whether a yes remembered moments ago (within
   * basic_cache_ttl) still holds: the identity to use, or undefined. Without it, answers are never cached.
   */
  remembered?(identity: Identity): Identity | undefined;
  /** `gateway config check`: contact the provider and say what works. */
  probe?(): Promise<{ ok: boolean; detail: string }>;
  close?(): Promise<void>;
}

export const htpasswdAuthenticatorName = 'htpasswd';
export const ciTokensAuthenticatorName = 'ci-tokens';
/** CI token credentials were `ci:ID` before there was a chain; tokens already issued keep working. */
const ciTokenCredentialPrefix = 'ci';

/** Names a provider cannot take: the built-in authenticators and the CI tokens' credential prefix. */
export const reservedAuthenticatorNames: readonly string[] = [htpasswdAuthenticatorName, ciTokensAuthenticatorName, ciTokenCredentialPrefix];

/**
 * Which authenticator a credential belongs to: `NAME:...` is the provider NAME's, `ci:ID` a CI
 * token's, a bare fingerprint (no colon) htpasswd's.
 */
export function credentialOwner(credential: string): string {
  const colon = credential.indexOf(':');
  if (colon === -1) return htpasswdAuthenticatorName;
  const prefix = credential.slice(0, colon);
  return prefix === ciTokenCredentialPrefix ? ciTokensAuthenticatorName : prefix;
}

/** The credential prefix an authenticator's identities carry. */
export function credentialPrefixOf(name: string): string {
  return name === ciTokensAuthenticatorName ? `${ciTokenCredentialPrefix}:` : `${name}:`;
}

export type ChainAnswer =
  | { kind: 'yes'; identity: Identity; by: string }
  | { kind: 'no'; reason: string; by: string }
  /** Every authenticator said not mine. */
  | { kind: 'unknown' }
  /** Nobody said yes or no, and these could not be asked. */
  | { kind: 'unavailable'; reasons: { by: string; reason: string }[] };

type Maybe<T> = T | Promise<T>;

function isPromise<T>(value: Maybe<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === 'function';
}

/**
 * The authenticators in their configured order. The first yes wins, a no is final, not-mine goes on;
 * an unavailable one is remembered and the next is asked, so a provider that is down never stops
 * the others. An authenticator that throws (other than a RegistryError such as a full queue) counts
 * as unavailable: it never grants anything.
 */
export class AuthenticatorChain {
  readonly #authenticators: readonly PasswordAuthenticator[];
  readonly #byName = new Map<string, PasswordAuthenticator>();

  constructor(authenticators: readonly PasswordAuthenticator[]) {
    for (const authenticator of authenticators) {
      if (this.#byName.has(authenticator.name)) throw new Error(`two authenticators are named ${authenticator.name}`);
      this.#byName.set(authenticator.name, authenticator);
    }
    this.#authenticators = [...authenticators];
  }

  get names(): string[] {
    return this.#authenticators.map((authenticator) => authenticator.name);
  }

  get authenticators(): readonly PasswordAuthenticator[] {
    return this.#authenticators;
  }

  async authenticate(presented: PresentedPassword): Promise<ChainAnswer> {
    const unavailable: { by: string; reason: string }[] = [];
    for (const authenticator of this.#authenticators) {
      let answer: AuthAnswer;
      try {
        answer = await authenticator.authenticate(presented);
      } catch (error) {
        if (error instanceof RegistryError) throw error;
        unavailable.push({ by: authenticator.name, reason: `failed: ${(error as Error).message ?? String(error)}` });
        continue;
      }
      if (answer.kind === 'yes') {
        const identity = this.#vouched(authenticator, answer.identity, undefined);
        if (identity === undefined) {
          unavailable.push({ by: authenticator.name, reason: 'answered yes without a user and a credential of its own' });
          continue;
        }
        return { kind: 'yes', identity, by: authenticator.name };
      }
      if (answer.kind === 'no') return { kind: 'no', reason: answer.reason, by: authenticator.name };
      if (answer.kind === 'unavailable') unavailable.push({ by: authenticator.name, reason: answer.reason });
    }
    return unavailable.length > 0 ? { kind: 'unavailable', reasons: unavailable } : { kind: 'unknown' };
  }

  /** The authenticator owning a credential, when it is in the chain. */
  ownerOf(credential: string | undefined): PasswordAuthenticator | undefined {
    return credential === undefined ? undefined : this.#byName.get(credentialOwner(credential));
  }

  /**
   * The identity behind a token's subject and credential while the owning authenticator still vouches
   * for it; synchronous whenever the owner answers synchronously (the gate's fast path).
   */
  identityOfToken(user: string, credential: string | undefined, use: TokenUse): Maybe<Identity | undefined> {
    const owner = this.ownerOf(credential);
    if (owner?.revalidate === undefined || credential === undefined) return undefined;
    const answer = owner.revalidate({ user, credential }, use);
    const check = (identity: Identity | undefined) => (identity === undefined ? undefined : this.#vouched(owner, identity, user));
    return isPromise(answer) ? Promise.resolve(answer).then(check) : check(answer);
  }

  /** A remembered success, while its authenticator says it still holds. */
  remembered(identity: Identity): Identity | undefined {
    const owner = identity.authenticator === undefined ? undefined : this.#byName.get(identity.authenticator);
    const still = owner?.remembered?.(identity);
    return still === undefined || owner === undefined || identity.user === null ? undefined : this.#vouched(owner, still, identity.user);
  }

  /** Whether a yes of this authenticator may be remembered by the success cache. */
  cachesAnswersOf(name: string): boolean {
    return typeof this.#byName.get(name)?.remembered === 'function';
  }

  /** Whether a no of this authenticator counts as a failed guess for the login throttle. */
  countsGuessesOf(name: string): boolean {
    return this.#byName.get(name)?.unguessable !== true;
  }

  /** Whether tokens for this identity may come with a refresh token. */
  mayRefresh(identity: Identity): boolean {
    const owner = this.ownerOf(identity.credential);
    return identity.user !== null && identity.scopeLimit === undefined && owner?.refreshable === true && owner.revalidate !== undefined;
  }

  async close(): Promise<void> {
    await Promise.all(this.#authenticators.map((authenticator) => authenticator.close?.()));
  }

  /**
   * The identity as the chain hands it on: the user it was asked about, a credential this
   * authenticator owns, and its name; undefined for anything else (a misbehaving authenticator grants nothing).
   */
  #vouched(authenticator: PasswordAuthenticator, identity: Identity, expectedUser: string | undefined): Identity | undefined {
    if (typeof identity.user !== 'string' || identity.user.length === 0) return undefined;
    if (typeof identity.credential !== 'string' || credentialOwner(identity.credential) !== authenticator.name) return undefined;
    // At login a provider may spell the name its own way (a directory's canonical form); a token's subject stays who it is.
    if (expectedUser !== undefined && identity.user !== expectedUser) return undefined;
    const vouched: Identity = { ...identity, authenticator: authenticator.name };
    if (identity.groups !== undefined) vouched.groups = Object.freeze([...new Set(identity.groups)]);
    return vouched;
  }
}
