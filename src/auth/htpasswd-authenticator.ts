// The htpasswd users as a member of the authenticator chain: bcrypt check, password fingerprint as credential.

import type { Identity } from '../access/access.js';
import type { Authenticator } from './authenticator.js';
import { htpasswdAuthenticatorName, type AuthAnswer, type PasswordAuthenticator, type PresentedPassword } from './chain.js';
import type { UserStore } from './htpasswd.js';

/** The user behind a password fingerprint, while that user exists with that same password. */
export function identityOfPassword(users: UserStore, user: string, fingerprint: string | undefined): Identity | undefined {
  const current = users.credentialFingerprint(user);
  if (current === undefined || current !== fingerprint) return undefined;
  return { user, credential: current };
}

/**
 * An unknown name is not mine, after the same bcrypt run a known one costs (so the answer's timing
 * does not tell names apart); a wrong password is a final no. Tokens live while the user's hash does.
 */
export class HtpasswdAuthenticator implements PasswordAuthenticator {
  readonly name = htpasswdAuthenticatorName;
  readonly refreshable = true;
  readonly #users: UserStore;
  readonly #checker: Authenticator;

  constructor(users: UserStore, checker: Authenticator) {
    this.#users = users;
    this.#checker = checker;
  }

  async authenticate({ user, password, source }: PresentedPassword): Promise<AuthAnswer> {
    const result = await this.#checker.authenticate(user, password, source);
    if (result === 'unknown-user') return { kind: 'not-mine' };
    if (result === 'wrong-password') return { kind: 'no', reason: 'wrong password' };
    const credential = this.#users.credentialFingerprint(user);
    // Removed while its check ran.
    if (credential === undefined) return { kind: 'not-mine' };
    return { kind: 'yes', identity: { user, credential } };
  }

  revalidate(identity: { user: string; credential: string }): Identity | undefined {
    return identityOfPassword(this.#users, identity.user, identity.credential);
  }

  /** A remembered login holds while the user keeps the same hash: a password change or removal ends it. */
  remembered(identity: Identity): Identity | undefined {
    return identity.user === null ? undefined : identityOfPassword(this.#users, identity.user, identity.credential);
  }
}
