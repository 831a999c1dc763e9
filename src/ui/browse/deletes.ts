// Deletes from the web UI with every check the API's DELETE passes (delete grant, read-only maintenance, immutable tags), the same registry work, and the same events.

import type { Logger } from 'pino';
import { grantFor, mayDo, type Access, type Authorizer, type Identity } from '../../access/access.js';
import { describeDenials } from '../../access/denial-log.js';
import { isDigest, isRepositoryName, isTag } from '../../access/reference.js';
import { anonymousName } from '../../auth/login.js';
import { RegistryError } from '../../errors.js';
import type { Actor, EventBus } from '../../ops/events.js';
import type { MaintenanceMode } from '../../ops/maintenance.js';
import { refuseDeleteOfTagged, withImmutableTagLock } from '../../registry/immutable-tags.js';
import { subjectOfStored } from '../../registry/referrers-index.js';
import { ReferrersStore } from '../../registry/referrers-store.js';
import { createTagRemover } from '../../registry/tag-delete.js';
import { manifestAccept, type UpstreamPool } from '../../registry/upstreams.js';
import type { ManifestStore } from './manifests.js';
import type { DeleteOutcome, Viewer } from './model.js';

/** Read-only maintenance as the deletes see it. */
export interface WriteGate {
  status(): { on: boolean; since?: string; reason?: string };
  /** Counts one write until the returned function is called (so `gateway gc` waits for it); undefined when maintenance refuses it. */
  admit?(): (() => void) | undefined;
}

/** The gateway's MaintenanceMode as a WriteGate: a UI delete counts as a write in flight, as an API one does. */
export function maintenanceGate(mode: Pick<MaintenanceMode, 'status' | 'admit'>): WriteGate {
  return { status: () => mode.status(), admit: () => mode.admit() };
}

export interface DeleterOptions {
  upstreams: UpstreamPool;
  authorizer: Authorizer;
  logger: Logger;
  store: ManifestStore;
  events?: EventBus;
  maintenance?: WriteGate;
  /** Told after each delete (caches of tag counts). */
  onDeleted(repository: string): void;
}

const notFound: DeleteOutcome = { ok: false, status: 404, reason: 'Not found.' };

const sentence = (text: string): string => `${text.charAt(0).toUpperCase()}${text.slice(1)}${/[.!?]$/.test(text) ? '' : '.'}`;

/** A refusal the registry work threw, in the API's terms: not found, denied (an immutable tag), or unavailable. */
function outcomeOf(error: unknown): DeleteOutcome {
  if (error instanceof RegistryError) {
    if (error.code === 'MANIFEST_UNKNOWN' || error.code === 'NAME_UNKNOWN') return notFound;
    if (error.code === 'DENIED') return { ok: false, status: 403, reason: sentence(error.message) };
    return { ok: false, status: error.status >= 500 ? 503 : error.status, reason: sentence(error.message) };
  }
  return { ok: false, status: 503, reason: 'The registry did not answer; try again later.' };
}

export function createDeleter(options: DeleterOptions) {
  const { upstreams, authorizer, logger, events } = options;
  const removeTag = createTagRemover({ upstreams, authorizer });
  const referrers = new ReferrersStore({ upstreams, authorizer, logger });

  const actor = (viewer: Viewer): Actor => ({ user: viewer.identity.user ?? anonymousName, remote: viewer.address });
  const allows = (identity: Identity, name: string, action: string): boolean => mayDo(authorizer, identity, name, action);

  /** The checks before any registry work: the delete grant (hidden repositories answer 404), then maintenance. */
  function refusal(viewer: Viewer, name: string): DeleteOutcome | undefined {
    const { identity } = viewer;
    if (!allows(identity, name, 'delete')) {
      const needed: Access[] = [{ type: 'repository', name, actions: ['delete'] }];
      const denied = describeDenials(authorizer, identity, needed, grantFor(authorizer, identity, needed), 'rules').map((d) => ({ action: d.action, repository: d.repository ?? name, rule: d.rule }));
      events?.emit({ type: 'access.denied', ...actor(viewer), denied, method: 'DELETE', route: 'manifest', repository: name });
      return allows(identity, name, 'pull') ? { ok: false, status: 403, reason: `You may not delete in ${name}.` } : notFound;
    }
    const maintenance = options.maintenance?.status();
    if (maintenance?.on) {
      const why = maintenance.reason ? ` (${maintenance.reason})` : '';
      return { ok: false, status: 503, reason: `The registry is in read-only maintenance${why}: deletes are refused until it ends. Try again later.` };
    }
    return undefined;
  }

  /** Runs `work` counted as a write in flight; refused when maintenance began meanwhile. */
  async function asWrite(work: () => Promise<DeleteOutcome>): Promise<DeleteOutcome> {
    const gate = options.maintenance;
    const done = gate?.admit === undefined ? () => undefined : gate.admit();
    if (done === undefined) return { ok: false, status: 503, reason: 'The registry is in read-only maintenance: deletes are refused until it ends. Try again later.' };
    try {
      return await work();
    } finally {
      done();
    }
  }

  function deleted(viewer: Viewer, name: string, reference: string): DeleteOutcome {
    events?.emit({ type: 'manifest.deleted', ...actor(viewer), repository: name, reference });
    options.onDeleted(name);
    logger.info({ user: actor(viewer).user, repository: name, reference }, 'deleted through the web UI');
    return { ok: true };
  }

  async function deleteTag(viewer: Viewer, name: string, tag: string): Promise<DeleteOutcome> {
    if (!isRepositoryName(name) || !isTag(tag)) return notFound;
    const refused = refusal(viewer, name);
    if (refused) return refused;
    if (authorizer.isImmutableTag(name, tag)) return { ok: false, status: 403, reason: 'The tag is immutable: an immutable-tag rule covers it, so it cannot be deleted.' };
    return asWrite(async () => {
      try {
        await removeTag(name, tag);
      } catch (error) {
        return outcomeOf(error);
      }
      return deleted(viewer, name, tag);
    });
  }

  /** The subject of a referrer about to be deleted, to take it off its subject's referrers list after; undefined when none or unreadable. */
  async function subjectOf(name: string, digest: string): Promise<string | undefined> {
    try {
      const manifest = await options.store.manifest(name, digest);
      return manifest === undefined ? undefined : subjectOfStored(manifest.body, manifest.mediaType);
    } catch (error) {
      logger.warn({ repository: name, digest, err: (error as Error).message }, "could not read a manifest before its delete; its subject's referrers list is not updated");
      return undefined;
    }
  }

  async function deleteManifest(viewer: Viewer, name: string, digest: string): Promise<DeleteOutcome> {
    if (!isRepositoryName(name) || !isDigest(digest)) return notFound;
    const refused = refusal(viewer, name);
    if (refused) return refused;
    // Where immutable tags may be dropped, the check and the delete hold the API's lock, so no immutable push lands in between.
    const locked = (work: () => Promise<DeleteOutcome>) => (authorizer.hasImmutableTags(name) ? withImmutableTagLock(name, work) : work());
    return asWrite(() => locked(async () => {
      try {
        const head = await upstreams.fetch(`/v2/${name}/manifests/${digest}`, { method: 'HEAD', headers: { accept: manifestAccept } });
        if (head.status === 404) return notFound;
        if (head.status !== 200) return { ok: false, status: 503, reason: `The registry answered ${head.status}; nothing was deleted. Try again later.` };
        // Deleting by digest untags every tag naming it: refused when one of them is immutable.
        if (authorizer.hasImmutableTags(name)) await refuseDeleteOfTagged(upstreams, authorizer, name, digest);
        const subject = await subjectOf(name, digest);
        const answer = await upstreams.fetch(`/v2/${name}/manifests/${digest}`, { method: 'DELETE', maxBytes: 64 * 1024 });
        if (answer.status === 404) return notFound;
        if (answer.status === 405) return { ok: false, status: 405, reason: 'The registry does not allow deletes (its storage has delete turned off).' };
        if (answer.status !== 202) return { ok: false, status: 503, reason: `The registry answered ${answer.status}; the manifest may not be deleted. Try again later.` };
        if (subject !== undefined) {
          await referrers.change(name, subject, { kind: 'remove', digest }).catch((error: unknown) => {
            logger.error({ repository: name, subject, digest, err: (error as Error).message }, "could not take a deleted referrer off its subject's list");
          });
        }
      } catch (error) {
        return outcomeOf(error);
      }
      return deleted(viewer, name, digest);
    })).catch(outcomeOf);
  }

  return { deleteTag, deleteManifest };
}
