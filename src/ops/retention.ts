// `gateway retention`: decides, rule by rule, which tags go (by their image's creation date), and deletes them one tag at a time through the registry API.

import type { Authorizer } from '../access/access.js';
import { listTags } from '../registry/immutable-tags.js';
import { mapLimit } from '../map-limit.js';
import type { UpstreamPool } from '../registry/upstreams.js';
import { createdOf, digestOfTag, listRepositories } from './retention-registry.js';
import { ruleFor, type RetentionRule } from './retention-rules.js';

export interface TagDecision {
  repository: string;
  tag: string;
  digest: string | undefined;
  created: Date | undefined;
  rule: RetentionRule;
  delete: boolean;
  /** Why, in words: "14th newest, created 40 days ago". */
  reason: string;
}

/** A manifest every tag of which goes: deleted by digest after its tags, so that `gateway gc` frees its blobs. */
export interface PlannedManifest {
  repository: string;
  digest: string;
  tags: string[];
}

export interface RetentionPlan {
  decisions: TagDecision[];
  manifests: PlannedManifest[];
  /** Repositories the rules cover that were looked at. */
  repositories: number;
}

const dayMs = 24 * 60 * 60 * 1000;
/** The referrers tag schema (`sha256-HEX`) and cosign's `sha256-HEX.sig`/`.att`/`.sbom`: they belong to the image they name, never to a rule. */
const imageBoundTag = /^(?:sha256-[a-f0-9]{64}|sha512-[a-f0-9]{128})(?:\.[A-Za-z0-9_-]+)?$/;

export function belongsToAnImage(tag: string): boolean {
  return imageBoundTag.test(tag);
}
/** Manifests read at once while dating tags. */
const lookupsInParallel = 8;

/** `work` on every item, a few at a time, results in order. */
export function inParallel<T, R>(items: readonly T[], work: (item: T) => Promise<R>): Promise<R[]> {
  return mapLimit(items, lookupsInParallel, (item) => work(item));
}

function age(created: Date, now: number): string {
  const days = Math.floor((now - created.getTime()) / dayMs);
  return `created ${created.toISOString()} (${days} day${days === 1 ? '' : 's'} ago)`;
}

/** Decides one rule's tags in one repository: newest first, then keep-newest and older-than as the rule says. */
export function decideTags(rule: RetentionRule, dated: { tag: string; digest: string | undefined; created: Date | undefined }[], repository: string, now: number): TagDecision[] {
  const decisions: TagDecision[] = [];
  const withDate = dated.filter((entry) => entry.created !== undefined).sort((a, b) => b.created!.getTime() - a.created!.getTime() || a.tag.localeCompare(b.tag));
  for (const entry of dated.filter((item) => item.created === undefined)) {
    decisions.push({ repository, ...entry, rule, delete: false, reason: entry.digest === undefined ? 'keep: gone meanwhile' : 'keep: its image has no creation date' });
  }
  withDate.forEach((entry, position) => {
    const created = entry.created!;
    let verdict: { remove: boolean; why: string };
    if (rule.keepNewest === undefined && rule.olderThanDays === undefined) verdict = { remove: false, why: 'the rule keeps every tag' };
    else if (rule.keepNewest !== undefined && position < rule.keepNewest) verdict = { remove: false, why: `one of the newest ${rule.keepNewest}` };
    else if (rule.olderThanDays !== undefined && created.getTime() >= now - rule.olderThanDays * dayMs) verdict = { remove: false, why: `not older than ${rule.olderThanDays} days` };
    else verdict = { remove: true, why: rule.olderThanDays !== undefined ? `older than ${rule.olderThanDays} days` : `not one of the newest ${rule.keepNewest}` };
    decisions.push({ repository, ...entry, rule, delete: verdict.remove, reason: `${verdict.remove ? 'delete' : 'keep'}: ${verdict.why}; newest #${position + 1}, ${age(created, now)}` });
  });
  return decisions;
}

export interface PlanOptions {
  upstreams: UpstreamPool;
  authorizer: Authorizer;
  rules: readonly RetentionRule[];
  now?: number;
  /** Repositories that cannot be read are reported here and skipped (nothing of theirs is deleted). */
  problem?(line: string): void;
}

/**
 * What the rules say for every tag they govern. Immutable tags are never governed (and never
 * counted); a tag no rule matches is left alone and not listed.
 */
export async function planRetention(options: PlanOptions): Promise<RetentionPlan> {
  const now = options.now ?? Date.now();
  const repositories = (await listRepositories(options.upstreams)).filter((repository) => options.rules.some((rule) => rule.repositories.some((glob) => glob.matches(repository, null))));
  const decisions: TagDecision[] = [];
  const manifests: PlannedManifest[] = [];
  const dates = new Map<string, Promise<Date | undefined>>();
  for (const repository of repositories) {
    try {
      const governed = new Map<RetentionRule, string[]>();
      const others: string[] = [];
      for (const tag of await listTags(options.upstreams, repository)) {
        const rule = ruleFor(options.rules, repository, tag);
        if (rule === undefined || options.authorizer.isImmutableTag(repository, tag) || belongsToAnImage(tag)) others.push(tag);
        else governed.set(rule, [...(governed.get(rule) ?? []), tag]);
      }
      const decided: TagDecision[] = [];
      for (const [rule, tags] of governed) {
        const dated = await inParallel(tags, async (tag) => {
          const digest = await digestOfTag(options.upstreams, repository, tag);
          if (digest === undefined) return { tag, digest, created: undefined };
          const key = `${repository}@${digest}`;
          if (!dates.has(key)) dates.set(key, createdOf(options.upstreams, repository, digest));
          return { tag, digest, created: await dates.get(key)! };
        });
        decided.push(...decideTags(rule, dated, repository, now));
      }
      manifests.push(...(await unnamedAfter(options.upstreams, repository, decided, others)));
      decisions.push(...decided);
    } catch (error) {
      options.problem?.(`${repository}: skipped, nothing of it deleted: ${(error as Error).message}`);
    }
  }
  return { decisions, manifests, repositories: repositories.length };
}

/** The digests every tag of which goes (the tags no rule governs and the immutable ones looked up too): their manifests go as well. */
async function unnamedAfter(upstreams: UpstreamPool, repository: string, decided: readonly TagDecision[], others: readonly string[]): Promise<PlannedManifest[]> {
  const going = decided.filter((decision) => decision.delete && decision.digest !== undefined);
  if (going.length === 0) return [];
  const named = new Set(decided.filter((decision) => !decision.delete).map((decision) => decision.digest));
  for (const digest of await inParallel(others, (tag) => digestOfTag(upstreams, repository, tag))) named.add(digest);
  const byDigest = new Map<string, string[]>();
  for (const decision of going) if (!named.has(decision.digest)) byDigest.set(decision.digest!, [...(byDigest.get(decision.digest!) ?? []), decision.tag]);
  return [...byDigest].map(([digest, tags]) => ({ repository, digest, tags }));
}
