// After the gate: the /v2/ version check, a filtered catalog, an immutable-tag check, or straight to the proxy.

import type { NextFunction, Request, Response } from 'express';
import { covers, grantFor, type Access, type Authorizer } from '../access/access.js';
import { sendFilteredCatalog } from './catalog.js';
import type { GateLocals } from '../access/gate.js';
import { createImmutableTagGuard } from './immutable-tags.js';
import type { RegistryProxy } from './proxy.js';
import type { UpstreamPool } from './upstreams.js';

export interface ForwardOptions {
  proxy: RegistryProxy;
  upstreams: UpstreamPool;
  authorizer: Authorizer;
}

export function createForwarder(options: ForwardOptions) {
  const guardImmutableTags = createImmutableTagGuard({ upstreams: options.upstreams, authorizer: options.authorizer });
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
      const mayPull = (repository: string) => {
        const wanted: Access[] = [{ type: 'repository', name: repository, actions: ['pull'] }];
        return covers(grantFor(options.authorizer, identity, wanted), wanted);
      };
      return sendFilteredCatalog(req, res, options.upstreams, mayPull);
    }
    if (route.kind === 'manifest' && (await guardImmutableTags(req, res, route, (body) => options.proxy.forward(req, res, next, body)))) return;
    options.proxy.forward(req, res, next);
  };
}
