// The access file: reads and validates it (every problem with its line), into the rules of rule-set.ts.

import { readFile } from 'node:fs/promises';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import {
  actionBits,
  ANONYMOUS,
  AUTHENTICATED,
  CompiledRuleSet,
  compileTagGlob,
  DELETE,
  PUSH,
  REPOSITORY_ACTIONS,
  RepositoryGlob,
  repositoryGlobProblem,
  tagGlobProblem,
  type CompiledRule,
  type ImmutableTagRule,
  type RuleSet,
} from './rule-set.js';

export { AllowAuthenticated, type Explanation, type RuleSet } from './rule-set.js';

/** A mistake in the access file; the message reads "FILE:LINE: reason". */
export class AccessFileError extends Error {
  override readonly name = 'AccessFileError';
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly reason: string,
  ) {
    super(line === undefined ? `${file}: ${reason}` : `${file}:${line}: ${reason}`);
  }
}

export interface ParsedAccessFile {
  rules: RuleSet;
  warnings: string[];
}

// ---------------------------------------------------------------------------------------------
// Reading the file: walk the YAML nodes (not plain JS values) so every problem names its line.

class FileReader {
  private readonly lineCounter = new LineCounter();
  readonly document: Document.Parsed;
  readonly warnings: string[] = [];

  constructor(
    private readonly text: string,
    private readonly fileName: string,
  ) {
    this.document = parseDocument(text, { lineCounter: this.lineCounter, keepSourceTokens: true, uniqueKeys: true, prettyErrors: true });
  }

  lineOf(node: Node | null | undefined): number | undefined {
    const offset = node?.range?.[0];
    return offset === undefined ? undefined : this.lineCounter.linePos(offset).line;
  }

  fail(node: Node | null | undefined, reason: string): never {
    throw new AccessFileError(this.fileName, this.lineOf(node), reason);
  }

  warn(node: Node | null | undefined, message: string): void {
    const line = this.lineOf(node);
    this.warnings.push(line === undefined ? `${this.fileName}: ${message}` : `${this.fileName}:${line}: ${message}`);
  }

  /** Reports the YAML parser's own complaints in the file's "FILE:LINE: reason" form. */
  checkSyntax(): void {
    const [error] = this.document.errors;
    if (error) {
      const line = error.linePos?.[0].line;
      const sourceLine = line === undefined ? '' : (this.text.split(/\r?\n/)[line - 1] ?? '');
      const hint = /[*{]/.test(sourceLine) ? ' (quote globs that contain *, ** or {user}, e.g. "app/**")' : '';
      throw new AccessFileError(this.fileName, line, `invalid YAML: ${firstSentence(error.message)}${hint}`);
    }
    for (const warning of this.document.warnings) {
      const line = warning.linePos?.[0].line;
      this.warnings.push(`${this.fileName}${line === undefined ? '' : `:${line}`}: ${firstSentence(warning.message)}`);
    }
  }

  /** Follows an alias to its anchor, so anchored lists can be reused. */
  resolve(node: unknown): Node | null {
    if (node === null || node === undefined) return null;
    if (isAlias(node)) {
      const target = node.resolve(this.document);
      if (!target) this.fail(node, `unknown alias *${node.source}; quote globs such as "*" and "**"`);
      return target;
    }
    return node as Node;
  }

  /** A mapping's entries as [key, key node, value node], rejecting keys outside `allowed`. */
  entries(node: Node, what: string, allowed?: readonly string[]): [string, Node, Node | null][] {
    if (!isMap(node)) this.fail(node, `${what} must be a mapping (key: value)`);
    return node.items.map((pair) => {
      const keyNode = this.resolve(pair.key) ?? node;
      if (!isScalar(keyNode) || typeof keyNode.value !== 'string') this.fail(keyNode, `${what} has a key that is not a plain name`);
      const key = keyNode.value;
      if (allowed && !allowed.includes(key)) this.fail(keyNode, `unknown key ${JSON.stringify(key)} in ${what}; known keys: ${allowed.join(', ')}`);
      return [key, keyNode, this.resolve(pair.value)];
    });
  }

  /** A list of strings with their nodes; `near` is the node to blame when the value is missing. */
  strings(node: Node | null, near: Node, what: string): { value: string; node: Node }[] {
    if (node === null || !isSeq(node)) this.fail(node ?? near, `${what} must be a list, e.g. [a, b]`);
    return node.items.map((item) => {
      const entry = this.resolve(item) ?? node;
      if (!isScalar(entry) || typeof entry.value !== 'string') {
        const shown = isScalar(entry) ? ` (${JSON.stringify(entry.value)}; quote it to use it as a name)` : '';
        this.fail(entry, `every entry of ${what} must be a string${shown}`);
      }
      if (entry.value.length === 0) this.fail(entry, `${what} contains an empty entry`);
      return { value: entry.value, node: entry };
    });
  }

  list(node: Node | null, near: Node, what: string): Node[] {
    if (node === null || !isSeq(node)) this.fail(node ?? near, `${what} must be a list`);
    return node.items.map((item) => this.resolve(item) ?? node);
  }
}

function firstSentence(message: string): string {
  return message.split(/ at line \d+, column \d+/)[0]!.split('\n')[0]!.trim();
}

const ruleKeys = ['users', 'groups', 'repositories', 'actions', 'effect'] as const;
const immutableKeys = ['repositories', 'tags'] as const;
const topLevelKeys = ['groups', 'rules', 'immutable_tags'] as const;

function readGroups(reader: FileReader, node: Node): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const [name, keyNode, value] of reader.entries(node, 'groups')) {
    if (name.length === 0) reader.fail(keyNode, 'a group needs a name');
    const members = value === null ? [] : reader.strings(value, keyNode, `group ${JSON.stringify(name)}`);
    for (const member of members) {
      if (member.value === ANONYMOUS || member.value === AUTHENTICATED) {
        reader.fail(member.node, `${JSON.stringify(member.value)} is a special name for rules' users, not a group member`);
      }
    }
    groups.set(name, [...new Set(members.map((member) => member.value))]);
  }
  return groups;
}

function readRepositoryGlobs(reader: FileReader, node: Node | null, near: Node, where: string): { glob: RepositoryGlob; node: Node }[] {
  const entries = reader.strings(node, near, `repositories of ${where}`);
  if (entries.length === 0) reader.fail(node ?? near, `repositories of ${where} is empty`);
  return entries.map((entry) => {
    const problem = repositoryGlobProblem(entry.value);
    if (problem) reader.fail(entry.node, `repository glob ${JSON.stringify(entry.value)} ${problem}`);
    return { glob: new RepositoryGlob(entry.value), node: entry.node };
  });
}

function describeRule(effect: string, actions: string[], repositories: string[], users: string[], groups: string[]): string {
  const who: string[] = [];
  const named = users.filter((user) => user !== ANONYMOUS && user !== AUTHENTICATED);
  if (users.includes(ANONYMOUS)) who.push(ANONYMOUS);
  if (users.includes(AUTHENTICATED)) who.push('authenticated users');
  if (named.length > 0) who.push(`${named.length === 1 ? 'user' : 'users'} ${named.join(', ')}`);
  if (groups.length > 0) who.push(`${groups.length === 1 ? 'group' : 'groups'} ${groups.join(', ')}`);
  const on = repositories.length > 0 ? ` on ${repositories.join(', ')}` : '';
  return `${effect} ${actions.join(', ')}${on} for ${who.join(' or ')}`;
}

function readRule(reader: FileReader, node: Node, index: number, groups: ReadonlyMap<string, string[]>): CompiledRule {
  const where = `rule ${index}`;
  const fields = new Map(reader.entries(node, where, ruleKeys).map(([key, keyNode, value]) => [key, { keyNode, value }]));
  const field = (key: (typeof ruleKeys)[number]) => fields.get(key);

  const users = field('users') ? reader.strings(field('users')!.value, field('users')!.keyNode, `users of ${where}`) : [];
  const groupRefs = field('groups') ? reader.strings(field('groups')!.value, field('groups')!.keyNode, `groups of ${where}`) : [];
  if (users.length === 0 && groupRefs.length === 0) reader.fail(node, `${where} names no users and no groups, so it would apply to nobody`);
  for (const ref of groupRefs) {
    if (!groups.has(ref.value)) {
      const known = groups.size > 0 ? `; defined groups: ${[...groups.keys()].join(', ')}` : '; define it under groups:';
      reader.fail(ref.node, `group ${JSON.stringify(ref.value)} is not defined${known}`);
    }
  }

  const actionsField = field('actions');
  if (!actionsField) reader.fail(node, `${where} has no actions; use some of pull, push, delete, "*", catalog`);
  const actions = reader.strings(actionsField.value, actionsField.keyNode, `actions of ${where}`);
  if (actions.length === 0) reader.fail(actionsField.value ?? actionsField.keyNode, `actions of ${where} is empty`);
  let mask = 0;
  for (const action of actions) {
    const bit = actionBits[action.value];
    if (bit === undefined) reader.fail(action.node, `unknown action ${JSON.stringify(action.value)}; use pull, push, delete, "*" or catalog`);
    mask |= bit;
  }

  let effect: 'allow' | 'deny' = 'allow';
  const effectField = field('effect');
  if (effectField) {
    const value = effectField.value;
    if (!isScalar(value) || (value.value !== 'allow' && value.value !== 'deny')) reader.fail(value ?? effectField.keyNode, 'effect must be allow or deny');
    effect = value.value as 'allow' | 'deny';
  }

  const repositoriesField = field('repositories');
  let repositories: { glob: RepositoryGlob; node: Node }[] = [];
  if (repositoriesField) {
    repositories = readRepositoryGlobs(reader, repositoriesField.value, repositoriesField.keyNode, where);
    if ((mask & REPOSITORY_ACTIONS) === 0) reader.warn(repositoriesField.keyNode, `${where} only grants catalog, which is registry-wide; its repositories have no effect`);
  } else if ((mask & REPOSITORY_ACTIONS) !== 0) {
    reader.fail(node, `${where} has repository actions but no repositories; add e.g. repositories: ["app/**"]`);
  }

  const anonymous = users.find((user) => user.value === ANONYMOUS);
  const personal = repositories.find((entry) => entry.glob.hasUser);
  if (anonymous && personal) {
    reader.fail(anonymous.node, `"anonymous" cannot share ${where} with ${JSON.stringify(personal.glob.source)}: anonymous callers have no user name for {user}`);
  }
  if (anonymous && effect === 'allow' && (mask & (PUSH | DELETE)) !== 0) {
    reader.warn(anonymous.node, `${where} lets anonymous callers push or delete`);
  }

  const members = new Set<string>();
  for (const user of users) if (user.value !== ANONYMOUS && user.value !== AUTHENTICATED) members.add(user.value);
  for (const ref of groupRefs) for (const member of groups.get(ref.value) ?? []) members.add(member);

  return {
    index,
    line: reader.lineOf(node),
    effect,
    anonymous: anonymous !== undefined,
    authenticated: users.some((user) => user.value === AUTHENTICATED),
    members,
    groups: new Set(groupRefs.map((ref) => ref.value)),
    mask,
    repositories: repositories.map((entry) => entry.glob),
    text: describeRule(
      effect,
      actions.map((action) => action.value),
      repositories.map((entry) => entry.glob.source),
      users.map((user) => user.value),
      groupRefs.map((ref) => ref.value),
    ),
  };
}

function readImmutableTagRule(reader: FileReader, node: Node, position: number): ImmutableTagRule {
  const where = `immutable_tags entry ${position}`;
  const fields = new Map(reader.entries(node, where, immutableKeys).map(([key, keyNode, value]) => [key, { keyNode, value }]));
  const repositoriesField = fields.get('repositories');
  const tagsField = fields.get('tags');
  if (!repositoriesField) reader.fail(node, `${where} has no repositories`);
  if (!tagsField) reader.fail(node, `${where} has no tags; use tag globs such as "v*" or the keyword semver`);
  const repositories = readRepositoryGlobs(reader, repositoriesField.value, repositoriesField.keyNode, where);
  const personal = repositories.find((entry) => entry.glob.hasUser);
  if (personal) reader.fail(personal.node, `${where} cannot use {user}: immutable tags apply to everyone alike`);
  const tags = reader.strings(tagsField.value, tagsField.keyNode, `tags of ${where}`);
  if (tags.length === 0) reader.fail(tagsField.value ?? tagsField.keyNode, `tags of ${where} is empty`);
  return {
    repositories: repositories.map((entry) => entry.glob),
    tags: tags.map((tag) => {
      const problem = tagGlobProblem(tag.value);
      if (problem) reader.fail(tag.node, `tag glob ${JSON.stringify(tag.value)} ${problem}`);
      return compileTagGlob(tag.value);
    }),
  };
}

/** Parses and validates an access file's text; `fileName` only labels messages. Throws AccessFileError. */
export function parseAccessFile(text: string, fileName: string): ParsedAccessFile {
  const reader = new FileReader(text, fileName);
  reader.checkSyntax();
  const root = reader.resolve(reader.document.contents);
  const isEmpty = root === null || (isScalar(root) && root.value === null);
  const sections = new Map<string, { keyNode: Node; value: Node | null }>();
  if (!isEmpty) {
    for (const [key, keyNode, value] of reader.entries(root, 'the access file', topLevelKeys)) sections.set(key, { keyNode, value });
  }
  const present = (key: (typeof topLevelKeys)[number]) => {
    const section = sections.get(key);
    return section && section.value !== null && !(isScalar(section.value) && section.value.value === null) ? section : undefined;
  };

  const groupsSection = present('groups');
  const groups = groupsSection ? readGroups(reader, groupsSection.value!) : new Map<string, string[]>();
  const rulesSection = present('rules');
  const rules = rulesSection
    ? reader.list(rulesSection.value, rulesSection.keyNode, 'rules').map((node, position) => readRule(reader, node, position + 1, groups))
    : [];
  const immutableSection = present('immutable_tags');
  const immutable = immutableSection
    ? reader.list(immutableSection.value, immutableSection.keyNode, 'immutable_tags').map((node, position) => readImmutableTagRule(reader, node, position + 1))
    : [];

  if (rules.length === 0) reader.warnings.unshift(`${fileName}: no rules, so everyone is denied everything`);
  return { rules: new CompiledRuleSet(rules, immutable, groups), warnings: reader.warnings };
}

/** Reads and parses an access file. Throws AccessFileError, also when the file cannot be read. */
export async function loadAccessFile(file: string): Promise<ParsedAccessFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new AccessFileError(file, undefined, `cannot read the access file${code ? ` (${code})` : ''}`);
  }
  return parseAccessFile(text, file);
}
