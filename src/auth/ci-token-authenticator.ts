// The CI tokens as a member of the authenticator chain: a token-shaped password is theirs, its scopes limit the grant.

import type { Identity } from '../access/access.js';
import { ciTokensAuthenticatorName, credentialPrefixOf, type AuthAnswer, type PasswordAuthenticator, type PresentedPassword } from './chain.js';
import { tokenGrant, tokenIdentity, type CiTokenStore } from './ci-token-store.js';

const prefix = credentialPrefixOf(ciTokensAuthenticatorName);

/**
 * A password that is no CI token credential is not mine; one that is, but unknown, revoked, expired
 * or another user's, is a final no. No refresh tokens: the CI token is itself the long-lived credential.
 */
export class CiTokenAuthenticator implements PasswordAuthenticator {
  readonly name = ciTokensAuthenticatorName;
  readonly refreshable = false;
  readonly #tokens: Pick<CiTokenStore, 'verify' | 'activeGrant'>;

  constructor(tokens: Pick<CiTokenStore, 'verify' | 'activeGrant'>) {
    this.#tokens = tokens;
  }

  async authenticate({ user, password }: PresentedPassword): Promise<AuthAnswer> {
    const verdict = this.#tokens.verify(user, password);
    if (verdict === undefined) return { kind: 'not-mine' };
    if (verdict.outcome !== 'ok') return { kind: 'no', reason: 'invalid CI token' };
    return { kind: 'yes', identity: tokenIdentity(user, `${prefix}${verdict.record.id}`, tokenGrant(verdict.record)) };
  }

  /** Checked on every request: revoking the token or removing its user takes effect at once. */
  revalidate({ user, credential }: { user: string; credential: string }): Identity | undefined {
    if (!credential.startsWith(prefix)) return undefined;
    const grant = this.#tokens.activeGrant(credential.slice(prefix.length));
    return grant === undefined ? undefined : tokenIdentity(user, credential, grant);
  }
}
