// Carries out a retention plan through the registry API: each tag deleted on its own, then each manifest no tag names any more deleted by digest.

import type { Response } from 'express';
import type { Authorizer } from '../access/access.js';
import { RegistryError } from '../errors.js';
import { listTags } from '../registry/immutable-tags.js';
import { createTagDeleter } from '../registry/tag-delete.js';
import type { UpstreamPool } from '../registry/upstreams.js';
import { digestOfTag } from './retention-registry.js';
import { inParallel, type PlannedManifest, type RetentionPlan, type TagDecision } from './retention.js';

export interface AppliedDecision {
  decision: TagDecision;
  outcome: 'deleted' | 'moved' | 'gone' | 'failed';
  detail?: string;
}

export interface AppliedManifest {
  manifest: PlannedManifest;
  outcome: 'deleted' | 'tagged' | 'gone' | 'failed';
  detail?: string;
}

/** A response the tag deleter can answer into: only its status is kept. */
function answerSink(): { response: Response; status(): number } {
  let status = 0;
  const sink = {
    status(code: number) {
      status = code;
      return sink;
    },
    set() {
      return sink;
    },
    end() {
      return sink;
    },
  };
  return { response: sink as unknown as Response, status: () => status };
}

function describeError(error: unknown): string {
  return error instanceof RegistryError ? `${error.code}: ${error.message}` : (error as Error).message;
}

/**
 * Deletes each planned tag only if it still names the digest it was judged by (a tag pushed anew
 * since the plan stays). A tag is deleted alone, never with the manifest or the other tags naming
 * it: the registry's tag delete is emulated (moved onto a throwaway manifest, deleted by digest).
 */
async function deleteTags(plan: RetentionPlan, options: ApplyOptions): Promise<AppliedDecision[]> {
  const deleteTag = createTagDeleter({ upstreams: options.upstreams, authorizer: options.authorizer });
  const applied: AppliedDecision[] = [];
  for (const decision of plan.decisions.filter((item) => item.delete)) {
    let result: AppliedDecision;
    try {
      const now = await digestOfTag(options.upstreams, decision.repository, decision.tag);
      if (now === undefined) result = { decision, outcome: 'gone' };
      else if (now !== decision.digest) result = { decision, outcome: 'moved', detail: `now names ${now}; left alone` };
      else {
        const sink = answerSink();
        await deleteTag(sink.response, decision.repository, decision.tag);
        result = sink.status() === 202 ? { decision, outcome: 'deleted' } : { decision, outcome: 'failed', detail: `answered ${sink.status()}` };
      }
    } catch (error) {
      result = error instanceof RegistryError && error.code === 'MANIFEST_UNKNOWN' ? { decision, outcome: 'gone' } : { decision, outcome: 'failed', detail: describeError(error) };
    }
    applied.push(result);
    options.tagDone?.(result);
  }
  return applied;
}

/**
 * Deletes by digest each planned manifest that, now its tags are gone, no tag of its repository
 * names (looked up again: a tag pushed onto it meanwhile keeps it). Without this the manifest
 * would stay, untagged, and keep its blobs from the collector.
 */
async function deleteManifests(plan: RetentionPlan, tags: AppliedDecision[], options: ApplyOptions): Promise<AppliedManifest[]> {
  const applied: AppliedManifest[] = [];
  const repositories = [...new Set(plan.manifests.map((manifest) => manifest.repository))];
  for (const repository of repositories) {
    let named: Set<string | undefined>;
    try {
      const remaining = await listTags(options.upstreams, repository);
      named = new Set(await inParallel(remaining, (tag) => digestOfTag(options.upstreams, repository, tag)));
    } catch (error) {
      for (const manifest of plan.manifests.filter((item) => item.repository === repository)) applied.push({ manifest, outcome: 'failed', detail: `could not list its tags: ${describeError(error)}` });
      continue;
    }
    for (const manifest of plan.manifests.filter((item) => item.repository === repository)) {
      let result: AppliedManifest;
      const ownTagsGone = manifest.tags.every((tag) => tags.some((item) => item.decision.repository === repository && item.decision.tag === tag && (item.outcome === 'deleted' || item.outcome === 'gone')));
      if (!ownTagsGone || named.has(manifest.digest)) {
        result = { manifest, outcome: 'tagged', detail: 'a tag names it; kept' };
      } else {
        try {
          const answer = await options.upstreams.fetch(`/v2/${repository}/manifests/${manifest.digest}`, { method: 'DELETE' });
          result = answer.status === 202 ? { manifest, outcome: 'deleted' } : answer.status === 404 ? { manifest, outcome: 'gone' } : { manifest, outcome: 'failed', detail: `the registry answered ${answer.status}` };
        } catch (error) {
          result = { manifest, outcome: 'failed', detail: describeError(error) };
        }
      }
      applied.push(result);
      options.manifestDone?.(result);
    }
  }
  return applied;
}

export interface ApplyOptions {
  upstreams: UpstreamPool;
  authorizer: Authorizer;
  tagDone?(applied: AppliedDecision): void;
  manifestDone?(applied: AppliedManifest): void;
}

/** Tags first, then the manifests left without a tag. Never throws for one tag or manifest: each outcome is returned. */
export async function applyRetention(plan: RetentionPlan, options: ApplyOptions): Promise<{ tags: AppliedDecision[]; manifests: AppliedManifest[] }> {
  const tags = await deleteTags(plan, options);
  return { tags, manifests: await deleteManifests(plan, tags, options) };
}
