// Personal access tokens from a sign-in: who issued them (provider, subject, groups), and what such a record must hold.

import { CliError } from '../errors.js';

/** Where a personal access token came from: the OIDC sign-in of `provider`, for the user `subject` with these access groups. */
export interface SignInOrigin {
  source: 'oidc';
  provider: string;
  subject: string;
  groups: string[];
}

/** Bounds on what a sign-in puts in a record: an identity provider's claims are not trusted to be small. */
export const maxOriginLength = 512;
export const maxGroups = 256;

/** The fields of a token record this module judges (as the file's schema read them). */
interface OriginFields {
  source?: 'oidc' | undefined;
  provider?: string | undefined;
  subject?: string | undefined;
  groups?: string[] | undefined;
  scopes: unknown[];
  expiresAt: string | null;
}

/** What a record must hold for its source: the sign-in fields exactly for source oidc, scopes for the rest. */
export function originProblem(record: OriginFields): { key: string; message: string } | undefined {
  const signInKeys = ['provider', 'subject', 'groups'] as const;
  if (record.source === 'oidc') {
    for (const key of signInKeys) {
      if (record[key] === undefined) return { key, message: 'required for a token of source oidc' };
    }
    if (record.expiresAt === null) return { key: 'expiresAt', message: 'a token of source oidc must expire' };
    return undefined;
  }
  for (const key of signInKeys) {
    if (record[key] !== undefined) return { key, message: 'only a token of source oidc has it' };
  }
  if (record.scopes.length === 0) return { key: 'scopes', message: 'must hold at least one scope' };
  return undefined;
}

/** The origin as stored: bounded, groups without repeats. */
export function validOrigin(origin: SignInOrigin): SignInOrigin {
  const texts = [origin.provider, origin.subject, ...origin.groups];
  if (origin.source !== 'oidc' || texts.some((text) => text.length === 0 || text.length > maxOriginLength) || origin.groups.length > maxGroups) {
    throw new CliError(`a personal access token needs a provider, a subject and at most ${maxGroups} groups, each 1 to ${maxOriginLength} characters`);
  }
  return { source: 'oidc', provider: origin.provider, subject: origin.subject, groups: [...new Set(origin.groups)] };
}
