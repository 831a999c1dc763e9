// The YAML `retention:` list: which tags of which repositories go, each mistake named by key and line.

import { isMap, isScalar, isSeq, type LineCounter, type Node } from 'yaml';
import { z } from 'zod';
import { compileTagGlob, RepositoryGlob, repositoryGlobProblem, tagGlobProblem } from '../access/rule-set.js';
import { ConfigError } from '../errors.js';

/** One rule: the tags it governs, and how many of them (or how old) stay. */
export interface RetentionRule {
  /** 0-based position in the list, for reports ("rule 1" is index 0). */
  index: number;
  /** FILE:LINE where the rule starts. */
  where: string;
  repositories: RepositoryGlob[];
  tagGlobs: string[];
  tags: RegExp[];
  /** Keep the newest N tags this rule governs in a repository (by image creation date). */
  keepNewest: number | undefined;
  /** Delete the tags this rule governs whose image was created more than D days ago. */
  olderThanDays: number | undefined;
}

/** The raw `retention:` value of the settings file, and how to find its lines. */
export interface RetentionSource {
  file: string;
  value: unknown;
  /** FILE:LINE:COLUMN of an entry, or of one key's value in it. */
  positionOf(index: number | undefined, key?: string): string;
}

export function retentionSource(parsed: { file: string; lineCounter: LineCounter; value: Node | null; data: unknown }): RetentionSource {
  const { file, lineCounter } = parsed;
  const at = (node: Node | null | undefined) => {
    const position = node?.range ? lineCounter.linePos(node.range[0]) : undefined;
    return position ? `${file}:${position.line}:${position.col}` : file;
  };
  return {
    file,
    value: parsed.data,
    positionOf(index, key) {
      if (index === undefined || !isSeq(parsed.value)) return at(parsed.value);
      const entry = parsed.value.items[index] as Node | undefined;
      if (key === undefined || !isMap(entry)) return at(entry);
      const pair = entry.items.find((item) => isScalar(item.key) && item.key.value === key);
      return at((pair?.value as Node | null | undefined) ?? (pair?.key as Node | undefined) ?? entry);
    },
  };
}

const globList = (what: string) =>
  z.union([z.string(), z.array(z.string(), `must be a list of ${what} globs`)], `must be a ${what} glob or a list of them`).transform((value) => (Array.isArray(value) ? value : [value]));

const wholeNumber = (min: number, max: number) => z.number(`must be a whole number from ${min} to ${max}`).int(`must be a whole number from ${min} to ${max}`).min(min, `must be a whole number from ${min} to ${max}`).max(max, `must be a whole number from ${min} to ${max}`);

const entrySchema = z.strictObject(
  {
    repositories: globList('repository').refine((list) => list.length > 0, 'must name at least one repository glob'),
    tags: globList('tag').optional(),
    keep_newest: wholeNumber(0, 1_000_000).optional(),
    older_than_days: wholeNumber(0, 100_000).optional(),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown key ${JSON.stringify(issue.keys[0])} (known: repositories, tags, keep_newest, older_than_days)`
        : 'must be a mapping, e.g. - { repositories: ["app/**"], keep_newest: 10 }',
  },
);

const example = 'e.g.\n  retention:\n    - repositories: ["app/**"]\n      tags: ["*"]\n      keep_newest: 10\n      older_than_days: 30';

/** The rules in file order. Throws a ConfigError naming FILE:LINE:COLUMN and `retention[i].key`. */
export function parseRetention(source: RetentionSource): RetentionRule[] {
  if (source.value === null || source.value === undefined) return [];
  if (!Array.isArray(source.value)) throw new ConfigError(`${source.positionOf(undefined)}: retention`, `must be a list of rules, ${example}`);
  return source.value.map((raw, index) => {
    const fail = (key: string | undefined, reason: string): never => {
      throw new ConfigError(`${source.positionOf(index, key)}: retention[${index}]${key === undefined ? '' : `.${key}`}`, reason);
    };
    const parsed = entrySchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const key = issue?.code === 'unrecognized_keys' ? undefined : typeof issue?.path[0] === 'string' ? issue.path[0] : undefined;
      fail(key, issue?.message ?? 'invalid rule');
      throw new Error('unreachable');
    }
    const entry = parsed.data;
    for (const glob of entry.repositories) {
      const problem = glob.includes('{user}') ? 'uses {user}, which only access rules know' : repositoryGlobProblem(glob);
      if (problem !== undefined) fail('repositories', `${JSON.stringify(glob)} ${problem}`);
    }
    const tagGlobs = entry.tags ?? ['*'];
    if (tagGlobs.length === 0) fail('tags', 'must name at least one tag glob (leave it out for every tag)');
    for (const glob of tagGlobs) {
      const problem = tagGlobProblem(glob);
      if (problem !== undefined) fail('tags', `${JSON.stringify(glob)} ${problem}`);
    }
    return {
      index,
      where: source.positionOf(index),
      repositories: entry.repositories.map((glob) => new RepositoryGlob(glob)),
      tagGlobs,
      tags: tagGlobs.map(compileTagGlob),
      keepNewest: entry.keep_newest,
      olderThanDays: entry.older_than_days,
    };
  });
}

/** The rule that governs `tag` of `repository`: the first whose repositories and tags both match. */
export function ruleFor(rules: readonly RetentionRule[], repository: string, tag: string): RetentionRule | undefined {
  return rules.find((rule) => rule.repositories.some((glob) => glob.matches(repository, null)) && rule.tags.some((pattern) => pattern.test(tag)));
}

/** What a rule says in words, for reports: "keep the newest 10, delete older than 30 days". */
export function describeRule(rule: RetentionRule): string {
  const parts: string[] = [];
  if (rule.keepNewest !== undefined) parts.push(`keep the newest ${rule.keepNewest}`);
  if (rule.olderThanDays !== undefined) parts.push(`${rule.keepNewest === undefined ? 'delete' : 'and delete the rest'} if older than ${rule.olderThanDays} days`);
  else if (rule.keepNewest !== undefined) parts.push('delete the rest');
  if (parts.length === 0) parts.push('keep every tag');
  return `rule ${rule.index + 1} (${rule.where}; ${rule.repositories.map((glob) => glob.source).join(', ')} tags ${rule.tagGlobs.join(', ')}): ${parts.join(' ')}`;
}
