// The referrers API registry 2.8 lacks: GET /v2/<name>/referrers/<digest> answered from the subject's fallback tag, kept current on manifest pushes and deletes.

import { createHash } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';
import type { Authorizer } from '../access/access.js';
import { isTag } from '../access/reference.js';
import type { V2Route } from '../access/v2-route.js';
import { readManifestBody } from './immutable-tags.js';
import type { BeforeAnswer, RegistryProxy } from './proxy.js';
import { isSubjectDigest, listing, ociIndexMediaType, referrerOf, subjectOfStored, type PushedReferrer } from './referrers-index.js';
import { ReferrersStore } from './referrers-store.js';
import type { OutgoingRequest } from './upstream-request.js';
import { manifestAccept, type UpstreamAnswer, type UpstreamPool } from './upstreams.js';

export interface ReferrersOptions {
  proxy: RegistryProxy;
  upstreams: UpstreamPool;
  authorizer: Authorizer;
  logger: Logger;
  /** A manifest body that sends nothing for this long is cut off (setting body_idle_timeout). */
  bodyIdleMs: number;
}

/** The immutable-tag guard of forward.ts: forwards through `forward` when it takes the request. */
type Guard = (req: Request, res: Response, route: { name: string; reference: string }, forward: (body?: Buffer) => void, read?: Buffer) => Promise<boolean>;


const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

export function createReferrers(options: ReferrersOptions) {
  const { proxy, upstreams, logger } = options;
  const store = new ReferrersStore({ upstreams, authorizer: options.authorizer, logger });

  /** GET (or HEAD) /v2/<name>/referrers/<digest>: 200 with the image index, empty when nothing refers to the digest. */
  async function answer(res: Response, route: Extract<V2Route, { kind: 'referrers' }>): Promise<void> {
    const index = await store.list(route.name, route.digest);
    // An empty artifactType filters nothing, so none is said to be applied.
    const artifactType = route.artifactType === '' ? undefined : route.artifactType;
    res.status(200).set('Content-Type', ociIndexMediaType);
    if (artifactType !== undefined) res.set('OCI-Filters-Applied', 'artifactType');
    res.send(listing(index, artifactType));
  }

  /** After the registry stored a referrer (201): list it under its subject; OCI-Subject only once it is listed. */
  const recordPush = (name: string, body: Buffer, referrer: PushedReferrer): BeforeAnswer => async (status): Promise<Record<string, string>> => {
    if (status !== 201) return {};
    // The registry names OCI manifests by the sha256 of their bytes.
    const digest = sha256(body);
    try {
      await store.change(name, referrer.subject, { kind: 'add', descriptor: { ...referrer.descriptor, digest } });
      return { 'OCI-Subject': referrer.subject };
    } catch (error) {
      // The registry has the manifest: the push stands. Without OCI-Subject the client records it itself (the spec's fallback).
      logger.error({ repository: name, subject: referrer.subject, digest, err: (error as Error).message }, 'could not list a pushed referrer under its subject');
      return {};
    }
  };

  /** After the registry deleted a referrer by digest (202): take it off its subject's list. */
  const recordDelete = (name: string, digest: string, subject: string): BeforeAnswer => async (status) => {
    if (status !== 202) return {};
    try {
      await store.change(name, subject, { kind: 'remove', digest });
    } catch (error) {
      logger.error({ repository: name, subject, digest, err: (error as Error).message }, 'could not take a deleted referrer off its subject\'s list');
    }
    return {};
  };

  /**
   * The subject of the manifest `digest` names, read before it is deleted; undefined when it has
   * none, is not there, or cannot be read. A delete never waits on the referrers bookkeeping: an
   * entry left behind names a manifest that is gone, and the next write of that index drops it.
   */
  async function subjectBeforeDelete(name: string, digest: string): Promise<string | undefined> {
    if (!isSubjectDigest(digest)) return undefined;
    let stored: UpstreamAnswer;
    try {
      stored = await upstreams.fetch(`/v2/${name}/manifests/${digest}`, { headers: { accept: manifestAccept } });
    } catch (error) {
      logger.warn({ repository: name, digest, err: (error as Error).message }, 'could not read a manifest before its delete; its subject\'s referrers list is not updated');
      return undefined;
    }
    if (stored.status !== 200) return undefined;
    return subjectOfStored(stored.body, String(stored.headers['content-type'] ?? ''));
  }

  /**
   * A manifest PUT, or a DELETE by digest: forwarded (through the immutable-tag guard) with the
   * referrers bookkeeping after the registry's answer. Every manifest PUT is read whole here (at
   * most 4 MiB, refused beyond) to see its `subject`. True when it took the request.
   */
  async function manifestWrite(req: Request, res: Response, next: NextFunction, route: Extract<V2Route, { kind: 'manifest' }>, guard: Guard): Promise<boolean> {
    const { name, reference } = route;
    if (req.method === 'PUT') {
      const body = await readManifestBody(req, options.bodyIdleMs);
      const outgoing = res.locals.outgoing as OutgoingRequest | undefined;
      const contentType = outgoing?.headers['content-type'];
      const referrer = referrerOf(body, typeof contentType === 'string' ? contentType : undefined);
      const after = referrer === undefined ? undefined : recordPush(name, body, referrer);
      const send = () => proxy.forward(req, res, next, body, after);
      if (!(await guard(req, res, route, send, body))) send();
      return true;
    }
    // A delete by tag leaves the manifest (and so its listing) in place.
    if (req.method !== 'DELETE' || isTag(reference)) return false;
    const subject = await subjectBeforeDelete(name, reference);
    const after = subject === undefined ? undefined : recordDelete(name, reference, subject);
    const send = () => proxy.forward(req, res, next, undefined, after);
    if (!(await guard(req, res, route, send))) send();
    return true;
  }

  return { answer, manifestWrite };
}
