// The `type: oidc` entry of the YAML `providers:` list: OpenID Connect sign-in for personal access tokens, checked key by key.

import type { ProviderEntry } from '../config/provider-entry.js';
import { endpointProblem } from './ci-id-token-config.js';

export interface OidcProviderConfig {
  type: 'oidc';
  name: string;
  /** The issuer identifier; discovery is at ISSUER/.well-known/openid-configuration. */
  issuer: string;
  clientId: string;
  /** A file holding the client secret (one line). */
  clientSecretFile: string;
  clientAuth: 'client_secret_basic' | 'client_secret_post';
  /** PEM CA bundle that alone is trusted for the issuer's https endpoints; undefined: the system's CAs. */
  caFile: string | undefined;
  /** Always holds openid. */
  scopes: string[];
  /** The claim whose value is the user name (docker login -u NAME); default preferred_username. */
  usernameClaim: string;
  /** The claim listing the user's groups; default groups. */
  groupsClaim: string;
  /** Put before every user name from this provider (e.g. `sso-`), keeping its users apart from local ones. */
  userPrefix: string;
  /** Identity provider group -> access groups. */
  groupMap: ReadonlyMap<string, readonly string[]>;
  /** Groups the map does not name: kept under their own name, or ignored. */
  unmappedGroups: 'keep' | 'ignore';
  /** When either is set, only these users (names as the claim gives them) or members of these provider groups may sign in. */
  allowedUsers: ReadonlySet<string> | undefined;
  allowedGroups: ReadonlySet<string> | undefined;
  /** Lifetime of a personal access token. */
  tokenTtlSeconds: number;
  /** Each request to the identity provider. */
  timeoutSeconds: number;
  /** "FILE:LINE:COLUMN: providers[N]" for messages about this provider. */
  where: string;
}

const claimPattern = /^[A-Za-z0-9_.:/-]{1,128}$/;
const scopePattern = /^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/;
const prefixPattern = /^[A-Za-z0-9._-]{0,32}$/;
const day = 86_400;
const ttlUnits: Record<string, number> = { h: 3600, d: day, w: 7 * day };
export const maxTokenTtlDays = 365;

function textList(entry: ProviderEntry, key: string, item: RegExp | undefined, example: string): string[] | undefined {
  const value = entry.raw(key);
  if (value === undefined) return undefined;
  const items = typeof value === 'string' ? value.split(/\s+/).filter((part) => part.length > 0) : value;
  if (!Array.isArray(items) || items.length === 0 || !items.every((part) => typeof part === 'string' && part.length > 0 && part.length <= 255)) {
    entry.fail(key, `must be a non-empty list of names, e.g. ${key}: ${example}`);
  }
  const bad = item === undefined ? undefined : (items as string[]).find((part) => !item.test(part));
  if (bad !== undefined) entry.fail(key, `${JSON.stringify(bad)} is not allowed here`);
  return [...new Set(items as string[])];
}

function claim(entry: ProviderEntry, key: string, fallback: string): string {
  const value = entry.text(key, fallback);
  if (!claimPattern.test(value)) entry.fail(key, `${JSON.stringify(value)} is not a claim name`);
  return value;
}

/** `30d`, `12w`, `48h`, or a number of days; from one hour to 365 days. */
function tokenTtl(entry: ProviderEntry): number {
  const value = entry.raw('token_ttl');
  if (value === undefined) return 30 * day;
  const match = typeof value === 'number' ? [String(value), String(value), 'd'] : typeof value === 'string' ? /^(\d{1,6})([hdw])$/.exec(value.trim()) : null;
  const seconds = match === null ? Number.NaN : Number(match[1]) * ttlUnits[match[2]!]!;
  if (!Number.isInteger(seconds) || seconds < 3600 || seconds > maxTokenTtlDays * day) {
    entry.fail('token_ttl', `must be from 1h to ${maxTokenTtlDays}d (e.g. 30d, 12w, 48h): personal access tokens always expire`);
  }
  return seconds;
}

export function parseOidcProvider(entry: ProviderEntry, name: string): OidcProviderConfig {
  const issuer = entry.required('issuer', 'https://id.example.com/realms/acme');
  const issuerProblem = endpointProblem(issuer, 'issuer');
  if (issuerProblem !== undefined) entry.fail('issuer', issuerProblem);
  const caFile = entry.path('ca');
  if (caFile !== undefined && new URL(issuer).protocol !== 'https:') entry.fail('ca', 'is for an https:// issuer');

  const scopes = textList(entry, 'scopes', scopePattern, '[openid, profile, email, groups]') ?? ['openid', 'profile', 'email'];
  if (!scopes.includes('openid')) entry.fail('scopes', 'must include openid');

  const groupMap = new Map<string, readonly string[]>();
  for (const [providerGroup, accessGroups] of entry.nameLists('group_map')) groupMap.set(providerGroup, accessGroups);
  const allowedUsers = textList(entry, 'allowed_users', undefined, '[alice, bob]');
  const allowedGroups = textList(entry, 'allowed_groups', undefined, '[developers]');
  const userPrefix = entry.text('user_prefix') ?? '';
  if (!prefixPattern.test(userPrefix)) entry.fail('user_prefix', 'must be up to 32 of A-Z, a-z, 0-9, ., _ and -');

  return {
    type: 'oidc',
    name,
    issuer,
    clientId: entry.required('client_id', 'registry-gateway'),
    clientSecretFile: entry.path('client_secret_file') ?? entry.fail('client_secret_file', 'required: a file holding the client secret (one line)'),
    clientAuth: entry.choice('client_auth', ['client_secret_basic', 'client_secret_post'] as const, 'client_secret_basic'),
    caFile,
    scopes,
    usernameClaim: claim(entry, 'username_claim', 'preferred_username'),
    groupsClaim: claim(entry, 'groups_claim', 'groups'),
    userPrefix,
    groupMap,
    unmappedGroups: entry.choice('unmapped_groups', ['keep', 'ignore'] as const, 'keep'),
    allowedUsers: allowedUsers === undefined ? undefined : new Set(allowedUsers),
    allowedGroups: allowedGroups === undefined ? undefined : new Set(allowedGroups),
    tokenTtlSeconds: tokenTtl(entry),
    timeoutSeconds: entry.wholeNumber('timeout', 1, 120, 10),
    where: entry.where(),
  };
}

/** What `config check` prints for an oidc provider: never the secret. */
export function describeOidcProvider(config: OidcProviderConfig): Record<string, unknown> {
  return { name: config.name, type: config.type, issuer: config.issuer, client_id: config.clientId, scopes: config.scopes.join(' '), token_ttl_days: config.tokenTtlSeconds / day };
}
