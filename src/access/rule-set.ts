// What each identity may do under a set of access rules: globs, actions as bits, deny precedence, explanations.

import type { Access, Authorizer, Identity } from './access.js';
import { isRepositoryComponent, isRepositoryName } from './reference.js';

export interface Explanation {
  allowed: boolean;
  /** The rule that decided; `index` counts rules from 1, as the reason text does. */
  decidedBy: { index: number; line: number | undefined; effect: 'allow' | 'deny'; text: string } | undefined;
  reason: string;
}

export interface RuleSet extends Authorizer {
  /** Requested ∩ allowed, actions sorted; entries left with no action are dropped; '*' becomes the allowed subset of pull, push, delete. */
  grant(identity: Identity, requested: readonly Access[]): Access[];
  /** True if any allow rule names "anonymous". */
  allowsAnonymous(): boolean;
  isImmutableTag(repository: string, tag: string): boolean;
  /** Why one action is allowed or denied; `action` is pull, push, delete or catalog. */
  explain(identity: Identity, action: string, repository: string): Explanation;
  groupsOf(user: string): string[];
}

// ---------------------------------------------------------------------------------------------
// Actions as bits, so that a decision is a few integer operations.

const PULL = 1;
export const PUSH = 2;
export const DELETE = 4;
const CATALOG = 8;
export const REPOSITORY_ACTIONS = PULL | PUSH | DELETE;

export const actionBits: Readonly<Record<string, number>> = { pull: PULL, push: PUSH, delete: DELETE, '*': REPOSITORY_ACTIONS, catalog: CATALOG };

/** The repository action bits of a requested action list; anything else there grants nothing. */
function repositoryActionMask(actions: readonly string[]): number {
  let mask = 0;
  for (const action of actions) {
    if (action === 'pull' || action === 'push' || action === 'delete' || action === '*') mask |= actionBits[action]!;
  }
  return mask;
}

/** Sorted like every other action list of the gateway (mergeAccess sorts alphabetically). */
const actionsByMask: readonly string[][] = Array.from({ length: 8 }, (_, mask) =>
  (['delete', 'pull', 'push'] as const).filter((name) => (mask & actionBits[name]!) !== 0),
);

export const ANONYMOUS = 'anonymous';
export const AUTHENTICATED = 'authenticated';
const USER_PLACEHOLDER = '{user}';

// ---------------------------------------------------------------------------------------------
// Globs

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Regex source for one segment that is not `**`; `{user}` pieces are left for the caller to fill. */
function segmentSource(segment: string): string[] {
  const wildcard = (token: string) => (token === '*' ? '[^/]*' : token === '?' ? '[^/]' : escapeRegExp(token));
  return segment.split(USER_PLACEHOLDER).map((piece) => piece.replace(/[^*?]+|[*?]/g, wildcard));
}

/**
 * Turns a validated glob into regex source pieces: the glob's `{user}` placeholders sit between
 * the pieces. Repository names are validated before matching, so segments are never empty.
 */
function globSourcePieces(glob: string): string[] {
  const pieces: string[] = [''];
  const append = (source: string) => (pieces[pieces.length - 1] += source);
  const segments = glob.split('/');
  let emitted = false;
  let anyLeadingSegments = false;
  segments.forEach((segment, position) => {
    if (segment === '**') {
      if (segments[position - 1] === '**') return;
      if (emitted) append('(?:/[^/]+)*');
      else anyLeadingSegments = true;
      return;
    }
    if (emitted) append('/');
    else if (anyLeadingSegments) append('(?:[^/]+/)*');
    const [first, ...rest] = segmentSource(segment);
    append(first!);
    pieces.push(...rest);
    emitted = true;
  });
  if (!emitted) append('[^/]+(?:/[^/]+)*');
  return pieces;
}

/** A repository glob, compiled once; a `{user}` glob compiles once per user and is cached. */
export class RepositoryGlob {
  readonly hasUser: boolean;
  private readonly fixed: RegExp | undefined;
  private readonly pieces: string[];
  private readonly perUser = new Map<string, RegExp>();
  private static readonly maxCachedUsers = 4096;

  constructor(readonly source: string) {
    this.pieces = globSourcePieces(source);
    this.hasUser = this.pieces.length > 1;
    this.fixed = this.hasUser ? undefined : new RegExp(`^${this.pieces[0]}$`);
  }

  /** `repository` must already be a valid repository name. */
  matches(repository: string, user: string | null): boolean {
    if (this.fixed) return this.fixed.test(repository);
    // A `{user}` only ever stands for one path component of a name.
    if (user === null || !isRepositoryComponent(user)) return false;
    let pattern = this.perUser.get(user);
    if (!pattern) {
      if (this.perUser.size >= RepositoryGlob.maxCachedUsers) this.perUser.clear();
      pattern = new RegExp(`^${this.pieces.join(escapeRegExp(user))}$`);
      this.perUser.set(user, pattern);
    }
    return pattern.test(repository);
  }
}

/** Why a repository glob is unusable, or undefined when it is fine. */
export function repositoryGlobProblem(glob: string): string | undefined {
  if (glob.length === 0) return 'is empty';
  if (/[A-Z]/.test(glob)) return 'contains uppercase letters; repository names are lowercase';
  const stray = glob.replace(/[a-z0-9._/*?{}-]/g, '');
  if (stray.length > 0) return `contains ${JSON.stringify(stray[0])}; allowed are a-z 0-9 . _ - / * ? and {user}`;
  if (glob.includes('//')) return "contains '//'";
  if (glob.startsWith('/') || glob.endsWith('/')) return "starts or ends with '/'";
  if (/[{}]/.test(glob.split(USER_PLACEHOLDER).join(''))) return "uses '{' or '}' other than in {user}";
  if (glob.split('/').some((segment) => segment.includes('**') && segment !== '**')) return "uses '**' inside a segment; '**' must be a whole segment, as in a/**/b";
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Tags

/** Semantic versions, optionally prefixed with v (semver.org's grammar). */
const semverPattern =
  /^v?(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*)?(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$/;

const SEMVER = 'semver';

export function compileTagGlob(glob: string): RegExp {
  if (glob === SEMVER) return semverPattern;
  const source = glob.replace(/[^*?]+|[*?]/g, (token) => (token === '*' ? '.*' : token === '?' ? '.' : escapeRegExp(token)));
  return new RegExp(`^${source}$`);
}

/**
 * Tags rewritten as content is attached to a manifest: the referrers tag schema's `<alg>-<hex>`
 * (an index the gateway and OCI 1.1 clients update) and cosign's `<alg>-<hex>.sig`, `.att` and
 * `.sbom`. They are immutable only under a tag glob that names them, one starting with the
 * algorithm and a dash (`sha256-*`, `sha256-*.sig`); `*` or `s*` alone leave them mutable.
 */
const attachmentTagPattern = /^(?:sha256|sha512)-[a-f0-9]{64}(?:\.(?:sig|att|sbom))?$/;

/** Whether a compiled tag glob starts with a digest algorithm and a dash (compileTagGlob keeps such a prefix literal). */
function namesAttachmentTags(pattern: RegExp): boolean {
  return /^\^(?:sha256|sha512)-/.test(pattern.source);
}

export function tagGlobProblem(glob: string): string | undefined {
  if (glob.length === 0) return 'is empty';
  if (glob.length > 128) return 'is longer than a tag can be (128 characters)';
  const stray = glob.replace(/[A-Za-z0-9_.*?-]/g, '');
  if (stray.length > 0) return `contains ${JSON.stringify(stray[0])}; allowed are A-Z a-z 0-9 _ . - * ? or the keyword "semver"`;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Compiled rules and their evaluation

export interface CompiledRule {
  /** Counted from 1, as users read the file. */
  index: number;
  line: number | undefined;
  effect: 'allow' | 'deny';
  anonymous: boolean;
  authenticated: boolean;
  /** Named users plus the members of the named groups. */
  members: ReadonlySet<string>;
  /** The groups the rule names: an identity an authenticator puts in one of them matches too. */
  groups: ReadonlySet<string>;
  mask: number;
  repositories: RepositoryGlob[];
  text: string;
}

export interface ImmutableTagRule {
  repositories: RepositoryGlob[];
  tags: RegExp[];
}

function appliesTo(rule: CompiledRule, identity: Identity): boolean {
  if (identity.user === null) return rule.anonymous;
  if (rule.authenticated || rule.members.has(identity.user)) return true;
  return identity.groups?.some((group) => rule.groups.has(group)) ?? false;
}

function matchesRepository(rule: CompiledRule, repository: string, user: string | null): boolean {
  for (const glob of rule.repositories) if (glob.matches(repository, user)) return true;
  return false;
}

const describeIdentity = (user: string | null): string => (user === null ? ANONYMOUS : user);

/** The answer of explain() for a question no rule can decide: an unknown action, or an invalid name. */
function unanswerable(action: string, repository: string): Explanation | undefined {
  if (action === '*' || actionBits[action] === undefined) {
    return { allowed: false, decidedBy: undefined, reason: `unknown action ${JSON.stringify(action)}; ask about one of pull, push, delete, catalog` };
  }
  if (action !== 'catalog' && !isRepositoryName(repository)) {
    return { allowed: false, decidedBy: undefined, reason: `${JSON.stringify(repository.slice(0, 300))} is not a valid repository name, so nothing is granted on it` };
  }
  return undefined;
}

export class CompiledRuleSet implements RuleSet {
  constructor(
    private readonly rules: readonly CompiledRule[],
    private readonly immutable: readonly ImmutableTagRule[],
    private readonly groups: ReadonlyMap<string, readonly string[]>,
  ) {}

  /** The subset of `wanted` (action bits) that `identity` may do on `repository` (or the catalog). */
  private allowedActions(identity: Identity, repository: string, wanted: number): number {
    const user = identity.user;
    if ((wanted & REPOSITORY_ACTIONS) !== 0 && !isRepositoryName(repository)) wanted &= ~REPOSITORY_ACTIONS;
    let allowed = 0;
    let denied = 0;
    for (const rule of this.rules) {
      // Skip rules that cannot change the outcome: an allow adds nothing decided already, a deny
      // adds nothing denied already.
      const undecided = rule.effect === 'allow' ? ~(allowed | denied) : ~denied;
      const relevant = rule.mask & wanted & undecided;
      if (relevant === 0 || !appliesTo(rule, identity)) continue;
      // Rules with repository actions always have repositories (validated); catalog needs none.
      let effective = relevant & CATALOG;
      const repositoryPart = relevant & REPOSITORY_ACTIONS;
      if (repositoryPart !== 0 && matchesRepository(rule, repository, user)) effective |= repositoryPart;
      if (rule.effect === 'allow') allowed |= effective;
      else denied |= effective;
    }
    return allowed & ~denied & wanted;
  }

  grant(identity: Identity, requested: readonly Access[]): Access[] {
    const granted: Access[] = [];
    for (const access of requested) {
      if (access.type === 'repository') {
        const wanted = repositoryActionMask(access.actions);
        if (wanted === 0) continue;
        const allowed = this.allowedActions(identity, access.name, wanted);
        if (allowed !== 0) granted.push({ type: 'repository', name: access.name, actions: [...actionsByMask[allowed]!] });
      } else if (access.type === 'registry' && access.name === 'catalog' && access.actions.includes('*')) {
        if (this.allowedActions(identity, '', CATALOG) === CATALOG) granted.push({ type: 'registry', name: 'catalog', actions: ['*'] });
      }
    }
    return granted;
  }

  allowsAnonymous(): boolean {
    return this.rules.some((rule) => rule.effect === 'allow' && rule.anonymous);
  }

  hasImmutableTags(repository: string): boolean {
    if (!isRepositoryName(repository)) return false;
    return this.immutable.some((rule) => rule.repositories.some((glob) => glob.matches(repository, null)));
  }

  isImmutableTag(repository: string, tag: string): boolean {
    if (!isRepositoryName(repository)) return false;
    const attachment = attachmentTagPattern.test(tag);
    return this.immutable.some(
      (rule) =>
        rule.repositories.some((glob) => glob.matches(repository, null)) &&
        rule.tags.some((pattern) => pattern.test(tag) && (!attachment || namesAttachmentTags(pattern))),
    );
  }

  explain(identity: Identity, action: string, repository: string): Explanation {
    const refused = unanswerable(action, repository);
    if (refused) return refused;
    const user = identity.user;
    const bit = actionBits[action]!;
    const isCatalog = bit === CATALOG;
    const matches = (rule: CompiledRule) =>
      (rule.mask & bit) !== 0 && appliesTo(rule, identity) && (isCatalog || matchesRepository(rule, repository, user));
    const deciding = this.rules.find((rule) => rule.effect === 'deny' && matches(rule)) ?? this.rules.find((rule) => rule.effect === 'allow' && matches(rule));
    const what = isCatalog ? 'catalog' : `${action} on ${repository}`;
    if (!deciding) {
      const groups = user === null ? [] : [...new Set([...this.groupsOf(user), ...(identity.groups ?? [])])];
      const who = groups.length > 0 ? `${describeIdentity(user)} (groups: ${groups.join(', ')})` : describeIdentity(user);
      return { allowed: false, decidedBy: undefined, reason: `no rule allows ${what} for ${who} (default: deny)` };
    }
    const allowed = deciding.effect === 'allow';
    const where = deciding.line === undefined ? '' : ` (line ${deciding.line})`;
    return {
      allowed,
      decidedBy: { index: deciding.index, line: deciding.line, effect: deciding.effect, text: deciding.text },
      reason: `${allowed ? 'allowed' : 'denied'} by rule ${deciding.index}${where}: ${deciding.text}`,
    };
  }

  groupsOf(user: string): string[] {
    const result: string[] = [];
    for (const [group, members] of this.groups) if (members.includes(user)) result.push(group);
    return result;
  }
}

/** The behaviour without an access file: every authenticated user may do everything, anonymous callers nothing. */
export class AllowAuthenticated implements RuleSet {
  private static readonly reason = 'no access file: every authenticated user may do everything';

  grant(identity: Identity, requested: readonly Access[]): Access[] {
    if (identity.user === null) return [];
    const granted: Access[] = [];
    for (const access of requested) {
      if (access.type === 'repository') {
        if (!isRepositoryName(access.name)) continue;
        const wanted = repositoryActionMask(access.actions);
        if (wanted !== 0) granted.push({ type: 'repository', name: access.name, actions: [...actionsByMask[wanted]!] });
      } else if (access.type === 'registry' && access.name === 'catalog' && access.actions.includes('*')) {
        granted.push({ type: 'registry', name: 'catalog', actions: ['*'] });
      }
    }
    return granted;
  }

  allowsAnonymous(): boolean {
    return false;
  }

  isImmutableTag(_repository: string, _tag: string): boolean {
    return false;
  }

  hasImmutableTags(_repository: string): boolean {
    return false;
  }

  explain(identity: Identity, action: string, repository: string): Explanation {
    const refused = unanswerable(action, repository);
    if (refused) return refused;
    if (identity.user === null) return { allowed: false, decidedBy: undefined, reason: `${AllowAuthenticated.reason}; anonymous callers may do nothing` };
    return { allowed: true, decidedBy: undefined, reason: AllowAuthenticated.reason };
  }

  groupsOf(_user: string): string[] {
    return [];
  }
}
