// Claim globs, user-name templates and the owner-pinning rule for CI ID-token mappings; pure functions, no I/O.

/** One piece of a compiled glob: a literal character, `*` (never crosses `/`) or `**` (crosses `/`). */
type GlobToken = { kind: 'char'; char: string } | { kind: 'star'; crossesSlash: boolean };

export interface ClaimGlob {
  readonly source: string;
  /** True when the value matches the whole glob. */
  matches(value: string): boolean;
}

/** Claim values longer than this never match: no issuer sends such a claim, and matching stays cheap. */
const maxMatchedValueLength = 1024;
const maxGlobLength = 512;

/** Why `source` cannot be a claim glob, or undefined when it can. */
export function claimGlobProblem(source: string): string | undefined {
  if (source.length === 0) return 'is empty';
  if (source.length > maxGlobLength) return `is longer than ${maxGlobLength} characters`;
  if (/\p{Cc}/u.test(source)) return 'contains control characters';
  if (source.includes('***')) return 'has three * in a row: use * (within one /-separated part) or ** (across /)';
  return undefined;
}

/**
 * Compiles a glob: `*` matches any run of characters except `/`, `**` any run including `/`,
 * everything else only itself (case-sensitive). Matching walks all positions at once, so it takes
 * time proportional to value length times glob length, whatever the glob (no backtracking).
 */
export function compileClaimGlob(source: string): ClaimGlob {
  const tokens: GlobToken[] = [];
  for (let i = 0; i < source.length; i++) {
    if (source[i] === '*') {
      const crossesSlash = source[i + 1] === '*';
      if (crossesSlash) i++;
      tokens.push({ kind: 'star', crossesSlash });
    } else {
      tokens.push({ kind: 'char', char: source[i]! });
    }
  }
  return { source, matches: (value) => value.length <= maxMatchedValueLength && globMatches(tokens, value) };
}

function globMatches(tokens: readonly GlobToken[], value: string): boolean {
  let states = new Uint8Array(tokens.length + 1);
  states[0] = 1;
  closeOverStars(tokens, states);
  for (let position = 0; position < value.length; position++) {
    const char = value[position];
    const next = new Uint8Array(tokens.length + 1);
    let any = false;
    for (let i = 0; i < tokens.length; i++) {
      if (states[i] !== 1) continue;
      const token = tokens[i]!;
      if (token.kind === 'char' ? token.char === char : token.crossesSlash || char !== '/') {
        next[token.kind === 'char' ? i + 1 : i] = 1;
        any = true;
      }
    }
    if (!any) return false;
    closeOverStars(tokens, next);
    states = next;
  }
  return states[tokens.length] === 1;
}

/** A star may match nothing: wherever a star is reached, the token after it is reached too. */
function closeOverStars(tokens: readonly GlobToken[], states: Uint8Array): void {
  for (let i = 0; i < tokens.length; i++) {
    if (states[i] === 1 && tokens[i]!.kind === 'star') states[i + 1] = 1;
  }
}

/** A claim's value as text: strings as they are, numbers and booleans in their JSON form, anything else undefined. */
export function claimText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return String(value);
  return undefined;
}

/** Names that access rules give a meaning of their own, so no mapping may produce them. */
const reservedUserNames = new Set(['anonymous', 'authenticated']);

/** Why `name` cannot be a user name (the htpasswd file's grammar, minus the rules' special names), or undefined. */
export function mappedUserProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > 255) return 'is longer than 255 characters';
  if (name.includes(':')) return "contains ':'";
  if (name.startsWith('#')) return "starts with '#'";
  if (/[\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(name)) return 'contains whitespace or control characters';
  if (reservedUserNames.has(name)) return `is ${JSON.stringify(name)}, a special name in access rules`;
  return undefined;
}

export interface UserTemplate {
  readonly source: string;
  /** Claim names the template reads, in order of appearance. */
  readonly placeholders: readonly string[];
  /** The user name for these claim texts, or a reason it cannot be made. */
  render(claims: ReadonlyMap<string, string>): { user: string } | { problem: string };
}

const placeholderPattern = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** Parses `ci-{repository_owner}`-style templates; throws an Error with the reason when malformed. */
export function compileUserTemplate(source: string): UserTemplate {
  const placeholders = [...source.matchAll(placeholderPattern)].map((match) => match[1]!);
  const literal = source.replace(placeholderPattern, '');
  if (/[{}]/.test(literal)) throw new Error('has a { or } that is not part of a {claim} placeholder');
  if (placeholders.length === 0) {
    const problem = mappedUserProblem(source);
    if (problem !== undefined) throw new Error(problem);
  } else {
    // The claims' parts are checked per token; the fixed parts can be checked now.
    if (literal.includes(':')) throw new Error("contains ':'");
    if (source.startsWith('#')) throw new Error("starts with '#'");
    if (/[\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(literal)) throw new Error('contains whitespace or control characters');
  }
  return {
    source,
    placeholders,
    render(claims) {
      const user = source.replace(placeholderPattern, (_whole, name: string) => claims.get(name) ?? '\0');
      const problem = mappedUserProblem(user);
      return problem === undefined ? { user } : { problem: `user name ${JSON.stringify(printable(user))} ${problem}` };
    },
  };
}

/**
 * Issuers shared by everyone on a public service: any of their users can ask for a token with any
 * audience, so a mapping must name whose jobs it accepts by an owner claim with a fixed first part.
 */
const sharedIssuers: readonly { matches: (issuer: string) => boolean; service: string; ownerClaims: readonly string[] }[] = [
  {
    matches: (issuer) => issuer === 'https://token.actions.githubusercontent.com' || issuer.startsWith('https://token.actions.githubusercontent.com/'),
    service: 'GitHub Actions',
    ownerClaims: ['repository_owner', 'repository_owner_id', 'repository', 'repository_id', 'sub', 'workflow_ref', 'job_workflow_ref', 'enterprise', 'enterprise_id'],
  },
  {
    matches: (issuer) => issuer === 'https://gitlab.com',
    service: 'GitLab.com',
    ownerClaims: ['namespace_path', 'namespace_id', 'project_path', 'project_id', 'sub'],
  },
];

/**
 * For a shared issuer: why these claim globs could match other people's jobs, or undefined when
 * one owner claim's glob has no star before its first slash: `acme`, `acme/web`, `repo:acme/...`
 * pin the owner; a glob that starts with a star, or `ac*`, does not. Self-hosted issuers are not checked.
 */
export function ownerPinProblem(issuer: string, claims: Readonly<Record<string, string>>): string | undefined {
  const shared = sharedIssuers.find((candidate) => candidate.matches(issuer));
  if (shared === undefined) return undefined;
  const pinned = shared.ownerClaims.some((name) => {
    const glob = claims[name];
    if (glob === undefined) return false;
    const firstPart = glob.split('/')[0]!;
    return firstPart.length > 0 && !firstPart.includes('*');
  });
  if (pinned) return undefined;
  return (
    `${shared.service} issues tokens for anyone's jobs with any audience they ask for: match one of ` +
    `${shared.ownerClaims.join(', ')} with no * before the first / (e.g. repository_owner: acme)`
  );
}

/** A claim or name fit for a log line or an error: control characters replaced, at most 200 characters. */
export function printable(text: string): string {
  const clean = text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, '?');
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean;
}
