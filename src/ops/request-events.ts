// Reads the events of one finished request off what the gate, the login and the error handler left in its locals: pushed, deleted, refused, denied, failed logins, tokens.

import type { Request, Response } from 'express';
import { parseV2Route, type V2Route } from '../access/v2-route.js';
import type { Actor, GatewayEvent, RequestFinished, RouteKind } from './events.js';

/** What the error handler notes about a refusal it answered, for the events. */
export interface ErrorNote {
  code: string;
  detail?: unknown;
}

/** Login refusals that are no failed login: the client simply had not sent credentials yet. */
const notALogin = new Set(['no credentials']);

function routeOf(req: Request, parsed: V2Route | undefined): { kind: RouteKind; repository?: string } {
  let route = parsed;
  if (route === undefined) {
    // The gate notes the route only once the caller passed; a refused request's is read off its target.
    // (req.path is not it: a router mounted at /token has left it relative by the time the response ends.)
    const target = req.originalUrl;
    if (/^\/token(?:[/?]|$)/.test(target)) return { kind: 'token' };
    if (!/^\/v2(?:[/?]|$)/.test(target)) return { kind: 'other' };
    try {
      route = parseV2Route(target);
    } catch {
      return { kind: 'other' };
    }
  }
  switch (route.kind) {
    case 'base':
    case 'catalog':
      return { kind: route.kind };
    case 'tags':
    case 'manifest':
    case 'blob':
      return { kind: route.kind, repository: route.name };
    case 'upload-start':
    case 'upload':
      return { kind: 'upload', repository: route.name };
    default:
      return { kind: (route as { kind: string }).kind === 'referrers' ? 'referrers' : 'other', repository: (route as { name?: string }).name };
  }
}

const isDigest = (reference: string) => /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(reference);

/** Every event one request makes, the request itself first. */
export function requestEvents(req: Request, res: Response, finished: Omit<RequestFinished, 'type' | 'route' | 'repository' | 'method' | 'status'>): GatewayEvent[] {
  const locals = res.locals as Record<string, unknown>;
  const route = locals.route as V2Route | undefined;
  const { kind, repository } = routeOf(req, route);
  const method = req.method;
  const status = res.statusCode;
  const actor: Actor = { user: finished.user, remote: finished.remote };
  const events: GatewayEvent[] = [{ type: 'request', ...finished, method, route: kind, ...(repository !== undefined ? { repository } : {}), status }];

  if (route?.kind === 'manifest' && status === 201 && method === 'PUT') {
    const digest = res.getHeader('docker-content-digest');
    const mediaType = req.headers['content-type'];
    events.push({
      type: 'manifest.pushed',
      ...actor,
      repository: route.name,
      ...(isDigest(route.reference) ? {} : { tag: route.reference }),
      digest: typeof digest === 'string' ? digest : route.reference,
      ...(mediaType ? { mediaType } : {}),
    });
  }
  if (route?.kind === 'manifest' && status === 202 && method === 'DELETE') {
    events.push({ type: 'manifest.deleted', ...actor, repository: route.name, reference: route.reference });
  }
  const error = locals.registryError as ErrorNote | undefined;
  const existing = (error?.detail as { existing?: unknown } | undefined)?.existing;
  if (route?.kind === 'manifest' && method === 'PUT' && error?.code === 'DENIED' && existing !== undefined && !isDigest(route.reference)) {
    events.push({ type: 'tag.move-refused', ...actor, repository: route.name, tag: route.reference, reason: `immutable tag already points at ${String(existing)}` });
  }
  const reason = typeof locals.reason === 'string' ? locals.reason : undefined;
  if ((status === 401 || status === 429 || status === 503) && reason !== undefined && !notALogin.has(reason) && !Array.isArray(locals.denied)) {
    events.push({ type: 'login.failed', ...actor, reason, ...(finished.authenticator !== undefined ? { authenticator: finished.authenticator } : {}) });
  }
  if (Array.isArray(locals.denied) && locals.denied.length > 0) {
    const denied = (locals.denied as unknown[]).map((entry) => {
      const { action, repository: name, rule } = (entry ?? {}) as Record<string, unknown>;
      return { action: String(action), repository: String(name), rule: String(rule) };
    });
    events.push({ type: 'access.denied', ...actor, denied, method, route: kind, ...(repository !== undefined ? { repository } : {}) });
  }
  if (kind === 'token' && status === 200 && Array.isArray(locals.granted)) {
    events.push({ type: 'token.issued', ...actor, scopes: locals.granted.map(String) });
  }
  return events;
}
