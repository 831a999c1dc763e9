// Turns presented Basic credentials into an identity, or a 401 carrying the Basic challenge.

import type { Identity } from './access.js';
import type { Authenticator } from './authenticator.js';
import type { BasicCredentials } from './credentials.js';
import { RegistryError } from './errors.js';

export function basicChallenge(realm: string): string {
  return `Basic realm="${realm}",charset="UTF-8"`;
}

/** Checks a user and password; wrong password and unknown user look the same from outside. */
export async function logIn(authenticator: Authenticator, credentials: BasicCredentials, realm: string): Promise<Identity> {
  const result = await authenticator.authenticate(credentials.user, credentials.password);
  if (result === 'ok') return { user: credentials.user };
  throw new RegistryError('UNAUTHORIZED', 'incorrect username or password').withHeader('WWW-Authenticate', basicChallenge(realm));
}
