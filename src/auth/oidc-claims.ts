// From an ID token's claims to a gateway user: the user name claim, the groups claim mapped to access groups, the allowed users and groups.

import type { OidcProviderConfig } from './oidc-config.js';
import { validateUserName } from './htpasswd.js';
import { maxGroups, maxOriginLength } from './token-origin.js';

export interface SignedInUser {
  /** The gateway's name for the user (prefix and claim): docker login -u NAME. */
  user: string;
  /** The ID token's `sub`: the user at the provider, whatever the name. */
  subject: string;
  /** Access groups, after the map. */
  groups: string[];
}

export type ClaimsVerdict = { ok: true; user: SignedInUser } | { ok: false; reason: string };

export type ClaimsConfig = Pick<OidcProviderConfig, 'usernameClaim' | 'groupsClaim' | 'userPrefix' | 'groupMap' | 'unmappedGroups' | 'allowedUsers' | 'allowedGroups'>;

const controlCharacters = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

/** The provider's groups: a list of names (or one name); anything else in the list is left out. */
export function providerGroups(value: unknown): string[] {
  const items = typeof value === 'string' ? [value] : Array.isArray(value) ? value : [];
  const names = items.filter((item): item is string => typeof item === 'string' && item.length > 0 && item.length <= 255 && !controlCharacters.test(item));
  return [...new Set(names)];
}

/** Access groups for the provider's groups: mapped by name (exactly as the provider spells them), the rest kept or ignored. */
export function accessGroups(config: Pick<ClaimsConfig, 'groupMap' | 'unmappedGroups'>, groups: readonly string[]): string[] {
  const result = groups.flatMap((group) => config.groupMap.get(group) ?? (config.unmappedGroups === 'keep' ? [group] : []));
  return [...new Set(result)];
}

/**
 * Who signed in, or why they may not: no subject, no usable user name, or neither an allowed user
 * nor in an allowed group (when the configuration names any).
 */
export function userFromClaims(config: ClaimsConfig, claims: Readonly<Record<string, unknown>>): ClaimsVerdict {
  const subject = claims.sub;
  if (typeof subject !== 'string' || subject.length === 0 || subject.length > maxOriginLength) return { ok: false, reason: 'the ID token has no usable subject (sub)' };
  const name = claims[config.usernameClaim];
  if (typeof name !== 'string' || name.length === 0) return { ok: false, reason: `the ID token has no ${config.usernameClaim} claim to name the user` };
  const user = `${config.userPrefix}${name}`;
  try {
    validateUserName(user);
  } catch (error) {
    return { ok: false, reason: `the ${config.usernameClaim} claim cannot be a user name here: ${(error as Error).message}` };
  }
  if (user.length > maxOriginLength) return { ok: false, reason: `the ${config.usernameClaim} claim is too long` };
  const fromProvider = providerGroups(claims[config.groupsClaim]);
  if (config.allowedUsers !== undefined || config.allowedGroups !== undefined) {
    const allowed = config.allowedUsers?.has(name) === true || fromProvider.some((group) => config.allowedGroups?.has(group) === true);
    if (!allowed) return { ok: false, reason: `user ${name} is neither in allowed_users nor in a group of allowed_groups` };
  }
  const groups = accessGroups(config, fromProvider);
  if (groups.length > maxGroups) return { ok: false, reason: `the user has more than ${maxGroups} groups` };
  return { ok: true, user: { user, subject, groups } };
}
