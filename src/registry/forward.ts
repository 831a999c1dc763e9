// After the gate: the /v2/ version check, a filtered catalog, an immutable-tag check, the OCI 1.1 answers, or straight to the proxy.

import type { NextFunction, Request, Response } from 'express';
import { mayDo, type Authorizer } from '../access/access.js';
import { sendFilteredCatalog } from './catalog.js';
import type { GateLocals } from '../access/gate.js';
import { createImmutableTagGuard } from './immutable-tags.js';
import type { RegistryProxy } from './proxy.js';
import type { UpstreamPool } from './upstreams.js';
import { isTag } from '../access/reference.js';
import { createTagDeleter } from './tag-delete.js';
import { sendTagList } from './tag-list.js';
import { refuseMisplacedChunk } from './upload-status.js';
import type { Logger } from 'pino';
import { createReferrers } from './referrers.js';

export interface ForwardOptions {
  proxy: RegistryProxy;
  upstreams: UpstreamPool;
  authorizer: Authorizer;
  logger: Logger;
  /** A manifest body the gateway reads that sends nothing for this long is cut off. */
  bodyIdleMs: number;
}

export function createForwarder(options: ForwardOptions) {
  const guardImmutableTags = createImmutableTagGuard({ upstreams: options.upstreams, authorizer: options.authorizer });
  const deleteTag = createTagDeleter(options);
  const referrers = createReferrers(options);
  return async function forward(req: Request, res: Response, next: NextFunction): Promise<void> {
    const locals = res.locals as Partial<GateLocals>;
    const { route, identity } = locals;
    if (route === undefined || identity === undefined) return next();

    if (route.kind === 'base') {
      // The version check clients start with: the caller is authenticated, there is nothing to ask the registry.
      res.status(200).json({});
      return;
    }
    if (route.kind === 'catalog' && locals.filterCatalog) {
      return sendFilteredCatalog(req, res, options.upstreams, (repository) => mayDo(options.authorizer, identity, repository, 'pull'));
    }
    // OCI 1.1 referrers: answered from the subject's fallback tag, which manifest pushes and deletes by digest keep current.
    if (route.kind === 'referrers') return referrers.answer(res, route);
    if (route.kind === 'manifest' && (await referrers.manifestWrite(req, res, next, route, guardImmutableTags))) return;
    if (route.kind === 'manifest' && (await guardImmutableTags(req, res, route, (body) => options.proxy.forward(req, res, next, body)))) return;
    // OCI 1.1 answers registry 2.8 lacks: one tag deleted, tags sorted and paged, chunks in order.
    if (route.kind === 'manifest' && req.method === 'DELETE' && isTag(route.reference)) return deleteTag(res, route.name, route.reference);
    if (route.kind === 'tags' && req.method === 'GET') return sendTagList(res, options.upstreams, route);
    if (route.kind === 'upload' && locals.outgoing !== undefined) refuseMisplacedChunk(req, route, locals.outgoing.framing);
    options.proxy.forward(req, res, next);
  };
}
