// The `type: ci-id-token` entry of the YAML `providers:` list: its schema, and errors that name the key at fault.

import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { claimGlobProblem, compileUserTemplate, mappedUserProblem, ownerPinProblem } from './ci-id-token-match.js';

/** A string setting; a missing one is reported as `required`. */
function text() {
  return z.string({ error: (issue) => (issue.input === undefined ? 'required' : 'must be a string') });
}

function list<T extends z.ZodType>(item: T) {
  return z.array(item, { error: (issue) => (issue.input === undefined ? 'required' : 'must be a list') });
}

const loopbackHosts = new Set(['127.0.0.1', '[::1]', 'localhost']);

/**
 * Why `value` cannot be an issuer's URL or JWKS URL, or undefined. Keys are only trusted over TLS;
 * plain http is allowed for a loopback address only (an issuer on the same machine).
 */
export function endpointProblem(value: string, kind: 'issuer' | 'jwks'): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `${JSON.stringify(value)} is not a URL`;
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopbackHosts.has(url.hostname))) {
    return 'must be an https:// URL (http:// only for 127.0.0.1, [::1] or localhost)';
  }
  if (url.username || url.password) return 'must not contain a user name or password';
  if (url.hash || value.includes('#')) return 'must not contain a #fragment';
  if (kind === 'issuer' && (url.search || value.includes('?'))) return 'must not contain a ?query';
  return undefined;
}

function endpoint(kind: 'issuer' | 'jwks') {
  return text().superRefine((value, context) => {
    const problem = endpointProblem(value, kind);
    if (problem !== undefined) context.addIssue({ code: 'custom', message: problem });
  });
}

const userName = text().superRefine((value, context) => {
  const problem = mappedUserProblem(value);
  if (problem !== undefined) context.addIssue({ code: 'custom', message: `user name ${problem}` });
});

const groupName = text().superRefine((value, context) => {
  if (value.length === 0) context.addIssue({ code: 'custom', message: 'group name is empty' });
  else if (value.length > 255) context.addIssue({ code: 'custom', message: 'group name is longer than 255 characters' });
  else if (/[\p{Cc}\p{Cf}]/u.test(value)) context.addIssue({ code: 'custom', message: 'group name contains control characters' });
});

/** A glob as text; `true` and `1024` written bare in YAML mean the claim texts "true" and "1024". */
const claimGlobText = z
  .union([z.string(), z.number(), z.boolean()], { error: 'must be text (a glob), a number or true/false' })
  .transform((value) => String(value));

const claimName = z.string().min(1, 'claim name is empty').max(128, 'claim name is longer than 128 characters');

const mappingSchema = z
  .strictObject({
    /** Claim name to glob; every one must match. */
    claims: z.record(claimName, claimGlobText, { error: (issue) => (issue.input === undefined ? 'required' : 'must be a map of claim: glob') }),
    /** The user name, or a template such as `ci-{repository_owner}` reading claims that `claims` matches. */
    user: text(),
    groups: list(groupName).default([]),
  })
  .superRefine((mapping, context) => {
    const names = Object.keys(mapping.claims);
    if (names.length === 0) context.addIssue({ code: 'custom', path: ['claims'], message: 'must match at least one claim' });
    for (const name of names) {
      const problem = claimGlobProblem(mapping.claims[name]!);
      if (problem !== undefined) context.addIssue({ code: 'custom', path: ['claims', name], message: problem });
    }
    try {
      const template = compileUserTemplate(mapping.user);
      for (const placeholder of template.placeholders) {
        if (!names.includes(placeholder)) {
          context.addIssue({ code: 'custom', path: ['user'], message: `{${placeholder}} reads a claim this mapping does not match: add it under claims` });
        }
      }
    } catch (error) {
      context.addIssue({ code: 'custom', path: ['user'], message: `user name ${(error as Error).message}` });
    }
  });

const issuerSchema = z
  .strictObject({
    /** Compared exactly with the token's `iss` claim. */
    issuer: endpoint('issuer'),
    audience: z
      .union([text().min(1, 'is empty'), list(text().min(1, 'is empty')).min(1, 'must name at least one audience')], {
        error: (issue) => (issue.input === undefined ? 'required' : 'must be a string or a list of strings'),
      })
      .transform((value) => (typeof value === 'string' ? [value] : value)),
    /** Where the keys are; by default the `jwks_uri` of the issuer's discovery document. */
    jwks_uri: endpoint('jwks').optional(),
    /** A PEM file of CA certificates: the only ones trusted for this issuer's discovery and keys. */
    ca: text().min(1, 'is empty').optional(),
    mappings: list(mappingSchema).min(1, 'must list at least one mapping: a token that matches none is refused'),
  })
  .superRefine((issuer, context) => {
    issuer.mappings.forEach((mapping, index) => {
      const problem = ownerPinProblem(issuer.issuer, mapping.claims);
      if (problem !== undefined) context.addIssue({ code: 'custom', path: ['mappings', index, 'claims'], message: problem });
    });
  });

/** The entry's own keys (`type` and `name` are read by the providers list). */
export const ciIdTokenProviderSchema = z
  .strictObject({
    /** The user names CI jobs log in with; any other name is left to other providers. */
    login_users: list(userName).min(1, 'must name at least one user (the name CI jobs pass to docker login -u)'),
    issuers: list(issuerSchema).min(1, 'must list at least one issuer'),
  })
  .superRefine((provider, context) => {
    const seen = new Set<string>();
    provider.issuers.forEach((issuer, index) => {
      if (seen.has(issuer.issuer)) {
        context.addIssue({ code: 'custom', path: ['issuers', index, 'issuer'], message: 'is listed twice: give one entry several audiences or mappings instead' });
      }
      seen.add(issuer.issuer);
    });
  });

type ProviderSchemaOutput = z.output<typeof ciIdTokenProviderSchema>;
export type CiIdTokenIssuerConfig = ProviderSchemaOutput['issuers'][number];
export type CiIdTokenMappingConfig = CiIdTokenIssuerConfig['mappings'][number];

export interface CiIdTokenProviderConfig {
  type: 'ci-id-token';
  /** The authenticator's name: log lines, identities and credential prefixes carry it. */
  name: string;
  loginUsers: readonly string[];
  /** As validated; each `ca` made absolute (from the settings file's folder). */
  issuers: readonly CiIdTokenIssuerConfig[];
  /** "FILE:LINE:COLUMN: providers[N]", for errors found later (an unreadable `ca` file). */
  where: string;
}

/**
 * What the parser needs of one `providers:` entry: config/provider-entry.ts's ProviderEntry provides
 * `where`; `raw` (the key's YAML value, marked as read) and `resolvePath` are the two readers it adds.
 */
export interface CiIdTokenEntry {
  /** "FILE:LINE:COLUMN: providers[N]" or, with a key, "...: providers[N].key". */
  where(key?: string): string;
  raw(key: string): unknown;
  /** A path as written in the settings file, made absolute from the file's folder. */
  resolvePath(value: string): string;
}

/** The schema issue's place: `providers[2].issuers` from the entry, then `[0].audience`; unknown keys named as the key itself. */
function issueWhere(entry: CiIdTokenEntry, issue: z.core.$ZodIssue): { key: string; reason: string } {
  const [top, ...rest] = issue.path;
  let key = top === undefined ? entry.where() : entry.where(String(top));
  key += rest.map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`)).join('');
  if (issue.code === 'unrecognized_keys') return { key: `${key}.${issue.keys[0] ?? ''}`, reason: 'unknown key' };
  return { key, reason: issue.message };
}

/** Reads one `type: ci-id-token` entry; throws a ConfigError naming the first key at fault, e.g. `providers[2].issuers[0].audience: required`. */
export function parseCiIdTokenProvider(entry: CiIdTokenEntry, name: string): CiIdTokenProviderConfig {
  const result = ciIdTokenProviderSchema.safeParse({ login_users: entry.raw('login_users'), issuers: entry.raw('issuers') });
  if (!result.success) {
    const first = issueWhere(entry, result.error.issues[0]!);
    throw new ConfigError(first.key, first.reason);
  }
  return {
    type: 'ci-id-token',
    name,
    loginUsers: result.data.login_users,
    issuers: result.data.issuers.map((issuer) => (issuer.ca === undefined ? issuer : { ...issuer, ca: entry.resolvePath(issuer.ca) })),
    where: entry.where(),
  };
}

/** What `gateway config check` shows for the entry: no secrets here, only where keys come from. */
export function describeCiIdTokenProvider(config: CiIdTokenProviderConfig): Record<string, unknown> {
  return {
    name: config.name,
    type: config.type,
    login_users: config.loginUsers,
    issuers: config.issuers.map((issuer) => ({ issuer: issuer.issuer, audience: issuer.audience, jwks_uri: issuer.jwks_uri ?? 'discovery', mappings: issuer.mappings.length })),
  };
}
