// The browse routes: /, /r/<repo>, /r/<repo>/-/tags/<tag>, /r/<repo>/-/manifests/<digest>, and their /delete (confirmation, then POST).

import express, { type Request, type Response } from 'express';
import { isDigest, isRepositoryName, isTag } from '../../access/reference.js';
import type { BrowseReader, Viewer } from '../browse/model.js';
import { confirmDeletePage, deleteRefusedPage } from '../pages/delete.js';
import { listPage, repositoryPage } from '../pages/browse.js';
import { repositoryUrl } from '../pages/format.js';
import { imagePage, imageTitle } from '../pages/image.js';
import { webOf } from '../web-context.js';
import { frameOf, handle, hostOf, notFound, refuseForm, sendPage, type WebKit } from './kit.js';

const repositoriesPerPage = 50;
const tagsPerPage = 50;

export type BrowseTarget =
  | { kind: 'repository'; repository: string }
  | { kind: 'tag'; repository: string; tag: string; remove: boolean }
  | { kind: 'manifest'; repository: string; digest: string; remove: boolean };

function decoded(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/** What a path under /r/ names, or undefined when it is no valid repository, tag or digest address. */
function parseBrowsePath(path: string): BrowseTarget | undefined {
  if (!path.startsWith('/r/') || path.length > 2048) return undefined;
  const rest = path.slice(3).replace(/\/$/, '');
  const split = rest.indexOf('/-/');
  const repository = decoded(split === -1 ? rest : rest.slice(0, split));
  if (repository === undefined || !isRepositoryName(repository)) return undefined;
  if (split === -1) return { kind: 'repository', repository };
  const parts = rest.slice(split + 3).split('/').map(decoded);
  if (parts.length < 2 || parts.length > 3 || parts.some((part) => part === undefined)) return undefined;
  const [kind, reference, action] = parts as string[];
  if (action !== undefined && action !== 'delete') return undefined;
  const remove = action === 'delete';
  if (kind === 'tags' && isTag(reference!)) return { kind: 'tag', repository, tag: reference!, remove };
  if (kind === 'manifests' && isDigest(reference!)) return { kind: 'manifest', repository, digest: reference!, remove };
  return undefined;
}

/** A 1-based page number from the query; anything else is page 1. */
function pageNumber(value: unknown): number {
  const text = Array.isArray(value) ? value[0] : value;
  if (typeof text !== 'string' || !/^\d{1,7}$/.test(text)) return 1;
  return Math.max(1, Number(text));
}

function searchText(value: unknown): string {
  const text = Array.isArray(value) ? value[0] : value;
  return typeof text === 'string' ? text.trim().slice(0, 255) : '';
}

export function createBrowseRoutes(kit: WebKit, reader: BrowseReader): express.Router {
  const router = express.Router();
  const form = express.urlencoded({ extended: false, limit: '2kb', parameterLimit: 8 });
  const viewerOf = (req: Request, res: Response): Viewer => ({ identity: webOf(res).identity, ...(req.socket.remoteAddress === undefined ? {} : { address: req.socket.remoteAddress }) });

  router.get('/', handle(kit, async (req, res) => {
    const search = searchText(req.query.q);
    const list = await reader.listRepositories(viewerOf(req, res), { search, page: pageNumber(req.query.page), perPage: repositoriesPerPage });
    sendPage(res, 200, listPage(frameOf(kit, req, res, 'repositories'), list, search, kit.now()));
  }));

  const show = handle(kit, async (req, res) => {
    const target = parseBrowsePath(req.path);
    if (target === undefined) return notFound(kit, req, res);
    const viewer = viewerOf(req, res);
    if (target.kind === 'repository') {
      const view = await reader.repository(viewer, target.repository, { page: pageNumber(req.query.page), perPage: tagsPerPage });
      if (view === undefined) return notFound(kit, req, res);
      return sendPage(res, 200, repositoryPage(frameOf(kit, req, res, 'repositories'), view, kit.now()));
    }
    const reference = target.kind === 'tag' ? target.tag : target.digest;
    const view = await reader.image(viewer, target.repository, reference);
    if (view === undefined) return notFound(kit, req, res);
    if (!target.remove) return sendPage(res, 200, imagePage(frameOf(kit, req, res, 'repositories'), { view, host: hostOf(kit, req), now: kit.now() }));
    const title = imageTitle(view);
    const back = req.path.replace(/\/delete$/, '');
    if (!view.mayDelete) return sendPage(res, 403, deleteRefusedPage(frameOf(kit, req, res), { repository: target.repository, title, back }, `You may not delete in ${target.repository}.`));
    if (target.kind === 'tag' && view.immutable) return sendPage(res, 403, deleteRefusedPage(frameOf(kit, req, res), { repository: target.repository, title, back }, 'The tag is immutable: an immutable-tag rule covers it.'));
    const what = target.kind === 'tag' ? 'the tag (the image stays while other tags or digests use it)' : 'the manifest, and with it every tag that points at it';
    const csrf = kit.guard.csrfFor(req, res, webOf(res).session);
    sendPage(res, 200, confirmDeletePage(frameOf(kit, req, res), { repository: target.repository, title, what, action: req.path, back }, csrf));
  });
  router.get(/^\/r\/.+/, show);

  router.post(/^\/r\/.+/, form, handle(kit, async (req, res) => {
    const target = parseBrowsePath(req.path);
    if (target === undefined || target.kind === 'repository' || !target.remove) return notFound(kit, req, res);
    const problem = kit.guard.formProblem(req, webOf(res).session);
    if (problem !== undefined) return refuseForm(kit, req, res, problem);
    const viewer = viewerOf(req, res);
    const outcome = target.kind === 'tag' ? await reader.deleteTag(viewer, target.repository, target.tag) : await reader.deleteManifest(viewer, target.repository, target.digest);
    const title = target.kind === 'tag' ? `${target.repository}:${target.tag}` : `${target.repository}@${target.digest}`;
    if (outcome.ok) {
      kit.logger.info({ user: webOf(res).session?.data.user, repository: target.repository, reference: target.kind === 'tag' ? target.tag : target.digest }, 'deleted from the web UI');
      res.redirect(303, repositoryUrl(target.repository));
      return;
    }
    if (outcome.status === 404) return notFound(kit, req, res);
    if (outcome.status === 503) res.set('Retry-After', '10');
    sendPage(res, outcome.status >= 400 && outcome.status < 600 ? outcome.status : 403, deleteRefusedPage(frameOf(kit, req, res), { repository: target.repository, title, back: req.path.replace(/\/delete$/, '') }, outcome.reason));
  }));

  return router;
}
