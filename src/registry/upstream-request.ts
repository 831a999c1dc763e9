// What the registry is sent for a client request: target, headers and framing, built by the gateway, never copied.

import type { OutgoingHttpHeaders } from 'node:http';
import type { Request } from 'express';
import { RegistryError } from '../errors.js';
import { admitBody, headerLines, type BodyFraming } from './request-framing.js';
import type { V2Route } from '../access/v2-route.js';

/** Everything about the upstream request that the gateway decided before authorizing it. */
export interface OutgoingRequest {
  framing: BodyFraming;
  /** The client headers the registry reads, already checked; X-Forwarded-* and framing are added when sending. */
  headers: OutgoingHttpHeaders;
}

/**
 * Request headers the registry's handlers read (distribution 2.8 registry/handlers and Go's
 * http.ServeContent for blobs); nothing else a client sends reaches it. Content-Type is decided
 * separately below.
 */
const passedHeaders = ['range', 'if-range', 'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'content-range', 'user-agent'];

/** Clients send one Accept line per media type (containers/image does); the registry reads them all. */
const repeatableHeaders = ['accept'];

/** The one media type a blob upload has; the registry then never parses a body as a form. */
const uploadContentType = 'application/octet-stream';

/** `type/subtype` with optional `; name=value` parameters, in ASCII: what Go's mime parser reads the same way. */
const token = "[A-Za-z0-9!#$%&'*+.^_`|~-]+";
const strictMediaType = new RegExp(`^${token}/${token}(?:[ \\t]*;[ \\t]*${token}=(?:${token}|"[\\x20-\\x21\\x23-\\x5b\\x5d-\\x7e]*"))*$`);

function duplicate(name: string): RegistryError {
  return new RegistryError('UNSUPPORTED', `the ${name} header is given more than once`, undefined, 400).withHeader('Connection', 'close');
}

/**
 * The Content-Type the registry sees. Upload requests always get application/octet-stream: the
 * registry reads `mount`, `from`, `digest` and `_state` with Go's FormValue, which would read them
 * from a form body too. A manifest keeps its media type if it is a plain one; no form ever passes.
 */
function contentTypeFor(req: Request, route: V2Route): string | undefined {
  const lines = headerLines(req, 'content-type');
  if (lines.length > 1) throw duplicate('Content-Type');
  if (route.kind === 'upload-start' || route.kind === 'upload') return req.method === 'GET' || req.method === 'HEAD' || req.method === 'DELETE' ? undefined : uploadContentType;
  if (route.kind !== 'manifest' || req.method !== 'PUT' || lines.length === 0) return undefined;
  const type = lines[0]!;
  const essence = type.split(';', 1)[0]!.trim().toLowerCase();
  if (!strictMediaType.test(type) || essence === 'application/x-www-form-urlencoded' || essence.startsWith('multipart/')) {
    throw new RegistryError('MANIFEST_INVALID', 'the Content-Type of a manifest must be its media type');
  }
  return type;
}

/** Decides what the registry will be sent for this request; throws 400 for anything it would read otherwise. */
export function prepareOutgoing(req: Request, route: V2Route): OutgoingRequest {
  const framing = admitBody(req, route);
  const headers: OutgoingHttpHeaders = {};
  for (const name of passedHeaders) {
    const lines = headerLines(req, name);
    if (lines.length > 1) throw duplicate(name);
    if (lines.length === 1) headers[name] = lines[0]!;
  }
  for (const name of repeatableHeaders) {
    const lines = headerLines(req, name);
    if (lines.length > 0) headers[name] = lines;
  }
  const contentType = contentTypeFor(req, route);
  if (contentType !== undefined) headers['content-type'] = contentType;
  return { framing, headers };
}

function encodeQuery(params: [string, string | undefined][]): string {
  const present = params.filter((entry): entry is [string, string] => entry[1] !== undefined);
  if (present.length === 0) return '';
  return `?${present.map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`).join('&')}`;
}

/** The path and query the registry is sent: rebuilt from the parsed route, with only the parameters it reads there. */
export function upstreamTarget(method: string, route: V2Route): string {
  switch (route.kind) {
    case 'base':
      return '/v2/';
    case 'catalog':
      return `/v2/_catalog${encodeQuery([['n', route.n], ['last', route.last]])}`;
    case 'tags':
      return `/v2/${route.name}/tags/list${encodeQuery([['n', route.n], ['last', route.last]])}`;
    case 'manifest':
      return `/v2/${route.name}/manifests/${route.reference}`;
    case 'blob':
      return `/v2/${route.name}/blobs/${route.digest}`;
    case 'upload-start': {
      const mount: [string, string | undefined][] = route.mountFrom !== undefined && route.mount !== undefined ? [['mount', route.mount], ['from', route.mountFrom]] : [];
      return `/v2/${route.name}/blobs/uploads/${encodeQuery([...mount, ['digest', route.digest]])}`;
    }
    case 'upload':
      return `/v2/${route.name}/blobs/uploads/${route.uploadId}${encodeQuery([['_state', route.state], ['digest', method === 'PUT' ? route.digest : undefined]])}`;
    case 'unrouted':
      throw new Error('an unrouted request is never forwarded');
    case 'referrers':
      throw new Error('a referrers request is answered by the gateway');
  }
}
