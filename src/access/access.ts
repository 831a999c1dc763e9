// Scopes: parse, format, merge and compare them, and what an identity is granted (the /v2/ side is in v2-route.ts).

import { isRepositoryName } from './reference.js';
import { RepositoryGlob, repositoryGlobProblem } from './rule-set.js';

/** One entry of a token's `access` claim, and one parsed `scope` parameter. */
export interface Access {
  type: string;
  name: string;
  actions: string[];
}

/** Who is asking: a user vouched for by an authenticator (htpasswd, CI tokens, a directory...), or nobody (anonymous, sub ""). */
export interface Identity {
  user: string | null;
  /**
   * What the caller logged in with, prefixed by the authenticator that owns it: a bare htpasswd
   * password fingerprint, `ci:ID` for a CI token, `NAME:...` for a provider. Tokens carry it.
   */
  credential?: string;
  /** A CI token's scopes: the caller never gets more than these, whatever the rules allow. */
  scopeLimit?: readonly Access[];
  /** Access groups the authenticator vouches for (a directory's groups, mapped); they count besides the access file's own. */
  groups?: readonly string[];
  /** Name of the authenticator that said yes: htpasswd, ci-tokens, or a provider's name. */
  authenticator?: string;
}

const knownTypes = new Set(['repository', 'registry']);

/**
 * Parses one scope, `type[(class)]:name:action[,action...]`. The name may itself contain ':'
 * (a host with a port), so the type ends at the first colon and the actions begin at the last.
 * Returns undefined for anything the gateway cannot grant (unknown type, invalid name); the
 * token service then simply leaves it out of the grant.
 */
export function parseScope(scope: string): Access | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  const rawType = scope.slice(0, first);
  const name = scope.slice(first + 1, last);
  const actions = scope
    .slice(last + 1)
    .split(',')
    .filter((action) => action.length > 0);
  const type = rawType.replace(/\([a-z0-9]+\)$/, '');
  if (!knownTypes.has(type) || actions.length === 0) return undefined;
  if (type === 'repository' && !isRepositoryName(name)) return undefined;
  if (type === 'registry' && name !== 'catalog') return undefined;
  return { type, name, actions: [...new Set(actions)].sort() };
}

/** Whether a CI token's repository scope names a pattern (`team/*`, `app/**`) rather than one repository. */
export function isScopePattern(name: string): boolean {
  return /[*?]/.test(name);
}

/**
 * A CI token's scope with a repository pattern, `repository:GLOB:ACTIONS` (globs as in the access
 * rules, without {user}); undefined for anything else. Clients never request patterns: parseScope refuses them.
 */
export function parseScopePattern(scope: string): Access | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first || scope.slice(0, first) !== 'repository') return undefined;
  const name = scope.slice(first + 1, last);
  if (!isScopePattern(name) || name.includes('{') || name.length > 255 || repositoryGlobProblem(name) !== undefined) return undefined;
  const actions = scope.slice(last + 1).split(',').filter((action) => action.length > 0);
  if (actions.length === 0) return undefined;
  return { type: 'repository', name, actions: [...new Set(actions)].sort() };
}

const scopeGlobs = new Map<string, RepositoryGlob>();

/** Whether a token scope's repository name (or pattern) covers `name`. */
function scopeCovers(scopeName: string, name: string): boolean {
  if (scopeName === name) return true;
  if (!isScopePattern(scopeName) || !isRepositoryName(name)) return false;
  let glob = scopeGlobs.get(scopeName);
  if (glob === undefined) {
    if (scopeGlobs.size >= 4096) scopeGlobs.clear();
    glob = new RepositoryGlob(scopeName);
    scopeGlobs.set(scopeName, glob);
  }
  return glob.matches(name, null);
}

/** Parses every scope of a request; one parameter may hold several, space-separated. */
export function parseScopes(values: readonly string[]): Access[] {
  const result: Access[] = [];
  for (const value of values) {
    for (const part of value.split(' ')) {
      if (part.length === 0) continue;
      const access = parseScope(part);
      if (access) result.push(access);
    }
  }
  return mergeAccess(result);
}

/** A copy that shares no array with the original, for results kept in caches or files. */
export function copyAccess(access: Access): Access {
  return { type: access.type, name: access.name, actions: [...access.actions] };
}

export function formatScope(access: Access): string {
  return `${access.type}:${access.name}:${access.actions.join(',')}`;
}

/** Merges entries for the same resource, so that a token never lists a resource twice. */
export function mergeAccess(entries: readonly Access[]): Access[] {
  const byResource = new Map<string, Access>();
  for (const entry of entries) {
    const key = `${entry.type}:${entry.name}`;
    const known = byResource.get(key);
    if (known) {
      known.actions = [...new Set([...known.actions, ...entry.actions])].sort();
    } else {
      byResource.set(key, { type: entry.type, name: entry.name, actions: [...entry.actions].sort() });
    }
  }
  return [...byResource.values()];
}

/** True when `granted` (a token's access claim) covers every action of every entry of `needed`. */
export function covers(granted: readonly Access[], needed: readonly Access[]): boolean {
  return needed.every((need) => {
    const entry = granted.find((g) => g.type === need.type && g.name === need.name);
    if (!entry) return false;
    return entry.actions.includes('*') || need.actions.every((action) => entry.actions.includes(action));
  });
}

const repositoryActions = ['delete', 'pull', 'push'];

function expand(actions: readonly string[]): Set<string> {
  return new Set(actions.includes('*') ? [...actions, ...repositoryActions] : actions);
}

/** Narrows a grant to a CI token's scopes (entry by entry, action by action); entries left empty are dropped. */
export function limitAccess(granted: readonly Access[], limit: readonly Access[] | undefined): Access[] {
  if (limit === undefined) return granted.map(copyAccess);
  const result: Access[] = [];
  for (const entry of granted) {
    const allowed = limit
      .filter((l) => l.type === entry.type && (l.type === 'repository' ? scopeCovers(l.name, entry.name) : l.name === entry.name))
      .flatMap((l) => [...expand(l.actions)]);
    const actions = entry.actions.filter((action) => allowed.includes(action));
    if (actions.length > 0) result.push({ type: entry.type, name: entry.name, actions });
  }
  return result;
}

/** Decides what an identity may do; the one place authorization decisions are made. */
export interface Authorizer {
  /** Returns requested ∩ allowed, never throwing for a partial or empty grant. */
  grant(identity: Identity, requested: readonly Access[]): Access[];
  /** Whether an identity without credentials may get a token at all. */
  allowsAnonymous(): boolean;
  /** Whether an existing `tag` of `repository` must never be moved to another manifest. */
  isImmutableTag(repository: string, tag: string): boolean;
  /** Whether any immutable-tag rule covers `repository` (else no tag of it is immutable). */
  hasImmutableTags(repository: string): boolean;
}

/** What an identity is granted: the rules' grant, narrowed to a CI token's scopes. */
export function grantFor(authorizer: Authorizer, identity: Identity, requested: readonly Access[]): Access[] {
  return limitAccess(authorizer.grant(identity, requested), identity.scopeLimit);
}

/** Whether the identity may do `action` in the repository `name` (the rules and a CI token's scopes). */
export function mayDo(authorizer: Authorizer, identity: Identity, name: string, action: string): boolean {
  const wanted: Access[] = [{ type: 'repository', name, actions: [action] }];
  return covers(grantFor(authorizer, identity, wanted), wanted);
}
