// Parses a /v2/ request line exactly as the registry's router will, and names the access it needs.

import type { Access } from './access.js';
import { RegistryError } from '../errors.js';
import { isDigest, isRepositoryName, isTag, uploadIdPattern } from './reference.js';

/**
 * A parsed /v2/ request. Query parameters the registry reads on a route are part of the route
 * (present only when given); the registry is sent these and nothing else.
 */
export type V2Route =
  | { kind: 'base' }
  | { kind: 'catalog'; n?: string; last?: string }
  | { kind: 'tags'; name: string; n?: string; last?: string }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'upload-start'; name: string; mountFrom: string | undefined; mount?: string; digest?: string }
  | { kind: 'upload'; name: string; uploadId: string; state?: string; digest?: string }
  /** OCI 1.1's referrers API, which registry 2.8 lacks: the gateway answers it (registry/referrers.ts). */
  | { kind: 'referrers'; name: string; digest: string; artifactType?: string }
  /** A manifest or blob path whose reference the registry's router does not match: it answers 404. */
  | { kind: 'unrouted'; name: string };

/** What a request needs: nothing beyond a valid identity (the /v2/ ping), or these scopes. */
export type Requirement = { kind: 'identity' } | { kind: 'access'; access: Access[] };

/** Longest request target the gateway accepts; the registry's own names stop at 255 characters. */
const maxTargetLength = 4096;

/** Characters that may appear in a canonical /v2/ path; anything else (%, \, spaces, non-ASCII) is refused. */
const canonicalPathCharacters = /^[A-Za-z0-9/._:=+-]*$/;

/**
 * A digest as the registry's router matches it (go-digest's DigestRegexp): looser than a valid
 * digest, so `sha256:abc` reaches the registry's handlers, which answer for it themselves.
 */
const routedDigestPattern = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

function invalid(message: string, detail?: unknown): RegistryError {
  return new RegistryError('NAME_INVALID', message, detail);
}

function invalidQuery(message: string): RegistryError {
  return new RegistryError('UNSUPPORTED', message, undefined, 400);
}

function unknownRoute(): RegistryError {
  return new RegistryError('UNSUPPORTED', 'no such registry API endpoint', undefined, 404);
}

/** The query parameters of a request target (path?query). */
export function queryOf(target: string): URLSearchParams {
  const at = target.indexOf('?');
  return new URLSearchParams(at === -1 ? '' : target.slice(at + 1));
}

function decodeQueryComponent(text: string): string {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    throw invalidQuery('the query has an invalid percent-escape');
  }
}

/**
 * Reads a query as Go's url.ParseQuery does (pairs split on "&", "+" is a space), refusing what
 * the two parsers would read differently: ";" (Go drops the pair, WHATWG keeps it), a "%" not
 * followed by two hex digits (Go drops the pair, WHATWG keeps the text), and escapes that are not
 * UTF-8 (Go keeps the bytes, WHATWG substitutes U+FFFD).
 */
function parseQuery(raw: string): Map<string, string[]> {
  if (raw.includes(';')) throw invalidQuery('the query may not contain ";"');
  const values = new Map<string, string[]>();
  for (const pair of raw.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = decodeQueryComponent(eq === -1 ? pair : pair.slice(0, eq));
    const value = decodeQueryComponent(eq === -1 ? '' : pair.slice(eq + 1));
    if (key === '') continue;
    const list = values.get(key) ?? [];
    list.push(value);
    values.set(key, list);
  }
  return values;
}

/** The one value of a parameter the registry reads; given twice, the gateway and registry could each take another. */
function single(query: Map<string, string[]>, name: string): string | undefined {
  const list = query.get(name);
  if (list === undefined) return undefined;
  if (list.length > 1) throw invalidQuery(`the query parameter ${name} is given more than once`);
  return list[0];
}

/** The parameters present among `names`, as an object holding only those present. */
function pick<K extends string>(query: Map<string, string[]>, names: readonly K[]): { [P in K]?: string } {
  const picked: { [P in K]?: string } = {};
  for (const name of names) {
    const value = single(query, name);
    if (value !== undefined) picked[name] = value;
  }
  return picked;
}

/**
 * Splits a request target into path and query, refusing anything the registry might read
 * differently from the gateway: percent-encoding (an encoded slash becomes a path separator
 * after decoding), dot segments and empty segments (cleaned or redirected by the registry's
 * router), backslashes, and absolute-form targets.
 */
function splitTarget(target: string): { path: string; query: Map<string, string[]> } {
  if (target.length > maxTargetLength) throw invalid('request target too long');
  if (!target.startsWith('/')) throw invalid('request target must be a path');
  const queryStart = target.indexOf('?');
  const pathPart = queryStart === -1 ? target : target.slice(0, queryStart);
  if (!canonicalPathCharacters.test(pathPart)) throw invalid('path has characters a registry path never has (encoded, escaped or non-ASCII)');
  const segments = pathPart.split('/');
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment === '.' || segment === '..') throw invalid('path has a dot segment');
    // Only the last segment may be empty: "/v2/" and ".../blobs/uploads/" end with a slash.
    if (segment === '' && i !== segments.length - 1) throw invalid('path has an empty segment');
  }
  return { path: pathPart, query: parseQuery(queryStart === -1 ? '' : target.slice(queryStart + 1)) };
}

function repository(segments: string[]): string {
  const name = segments.join('/');
  if (!isRepositoryName(name)) throw invalid('invalid repository name', { name: name.slice(0, 300) });
  return name;
}

/** Go's path unescaping (url.PathUnescape): undefined for a "%" not followed by two hex digits, which Go's server refuses. */
function goPathUnescape(text: string): string | undefined {
  if (/%(?![0-9A-Fa-f]{2})/.test(text)) return undefined;
  return text.replace(/%([0-9A-Fa-f]{2})/g, (_escape, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/**
 * A manifest path of a valid name whose reference, however spelled, is no tag and no digest (odd or
 * escaped characters, or too long for any tag): the registry's router matches nothing and answers
 * 404, and so does the gateway, after the usual access check on the name. Undefined for any other
 * target, which the parser below reads or refuses: escaped spellings of a real reference, escaped
 * slashes, dot segments and bad escapes are refused there as before.
 */
function unmatchableManifestReference(target: string): V2Route | undefined {
  const queryStart = target.indexOf('?');
  const path = queryStart === -1 ? target : target.slice(0, queryStart);
  const marker = '/manifests/';
  const at = path.lastIndexOf(marker);
  if (!path.startsWith('/v2/') || at <= 3) return undefined;
  const name = path.slice('/v2/'.length, at);
  const raw = path.slice(at + marker.length);
  if (!isRepositoryName(name) || raw.includes('/') || raw === '' || raw === '.' || raw === '..') return undefined;
  if (canonicalPathCharacters.test(raw) && target.length <= maxTargetLength) return undefined;
  const reference = goPathUnescape(raw);
  if (reference === undefined || reference.includes('/') || reference === '.' || reference === '..') return undefined;
  if (isTag(reference) || routedDigestPattern.test(reference)) return undefined;
  return { kind: 'unrouted', name };
}

/** Parses a /v2 request target; throws RegistryError for anything the gateway will not pass on. */
export function parseV2Route(target: string): V2Route {
  const unmatchable = unmatchableManifestReference(target);
  if (unmatchable !== undefined) return unmatchable;
  const { path, query } = splitTarget(target);
  if (path === '/v2/' || path === '/v2') return { kind: 'base' };
  if (!path.startsWith('/v2/')) throw unknownRoute();
  if (path === '/v2/_catalog') return { kind: 'catalog', ...pick(query, ['n', 'last'] as const) };

  // The registry's routes take the name greedily, so the suffix decides the route: read from the end.
  const segments = path.slice('/v2/'.length).split('/');
  const n = segments.length;
  const last = segments[n - 1]!;
  const secondLast = segments[n - 2];
  const thirdLast = segments[n - 3];

  if (secondLast === 'tags' && last === 'list' && n >= 3) {
    return { kind: 'tags', name: repository(segments.slice(0, n - 2)), ...pick(query, ['n', 'last'] as const) };
  }
  if (secondLast === 'referrers' && n >= 3) return referrersRoute(repository(segments.slice(0, n - 2)), last, query);
  if (secondLast === 'manifests' && n >= 3) {
    const name = repository(segments.slice(0, n - 2));
    if (!isTag(last) && !routedDigestPattern.test(last)) return { kind: 'unrouted', name };
    return { kind: 'manifest', name, reference: last };
  }
  if (secondLast === 'blobs' && n >= 3) {
    const name = repository(segments.slice(0, n - 2));
    if (!routedDigestPattern.test(last)) return { kind: 'unrouted', name };
    return { kind: 'blob', name, digest: last };
  }
  if (thirdLast === 'blobs' && secondLast === 'uploads' && n >= 4) {
    const name = repository(segments.slice(0, n - 3));
    if (last === '') return uploadStart(name, query);
    if (!uploadIdPattern.test(last) || last.length > 256) throw new RegistryError('BLOB_UPLOAD_INVALID', 'invalid upload id');
    const { _state: state, digest } = pick(query, ['_state', 'digest'] as const);
    return { kind: 'upload', name, uploadId: last, ...(state !== undefined ? { state } : {}), ...(digest !== undefined ? { digest } : {}) };
  }
  throw unknownRoute();
}

/** A cross-repository mount names its source in `from`; the registry only mounts when `mount` is given too. */
function uploadStart(name: string, query: Map<string, string[]>): V2Route {
  const { from, mount, digest } = pick(query, ['from', 'mount', 'digest'] as const);
  const withDigest = digest !== undefined ? { digest } : {};
  if (from === undefined || mount === undefined) return { kind: 'upload-start', name, mountFrom: undefined, ...withDigest };
  if (!isRepositoryName(from)) throw invalid('invalid repository name in from', { name: from.slice(0, 300) });
  if (!isDigest(mount)) throw new RegistryError('DIGEST_INVALID', 'invalid digest in mount');
  return { kind: 'upload-start', name, mountFrom: from, mount, ...withDigest };
}

/** A referrers request names its subject by a sha256 or sha512 digest; anything else is the spec's 400. */
function referrersRoute(name: string, digest: string, query: Map<string, string[]>): V2Route {
  if (!/^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/.test(digest)) throw new RegistryError('DIGEST_INVALID', 'invalid digest: the referrers of a manifest are asked for by its sha256 or sha512 digest');
  return { kind: 'referrers', name, digest, ...pick(query, ['artifactType'] as const) };
}

/** The same upload start without its cross-repository mount: the registry then makes a plain upload. */
export function withoutMount(route: Extract<V2Route, { kind: 'upload-start' }>): V2Route {
  const { mount: _mount, ...rest } = route;
  return { ...rest, mountFrom: undefined };
}

const pullMethods = new Set(['GET', 'HEAD']);
const pushMethods = new Set(['POST', 'PUT', 'PATCH']);

/** The access the registry's own token checks demand (distribution registry/handlers/app.go). */
export function requirementOf(method: string, route: V2Route): Requirement {
  if (route.kind === 'base') {
    if (!pullMethods.has(method)) throw methodNotAllowed(method);
    return { kind: 'identity' };
  }
  if (route.kind === 'catalog') {
    if (!pullMethods.has(method)) throw methodNotAllowed(method);
    return { kind: 'access', access: [{ type: 'registry', name: 'catalog', actions: ['*'] }] };
  }
  if (route.kind === 'referrers' && !pullMethods.has(method)) throw methodNotAllowed(method);
  const repo = { type: 'repository', name: route.name };
  let needed: Access[];
  if (pullMethods.has(method)) needed = [{ ...repo, actions: ['pull'] }];
  else if (pushMethods.has(method)) needed = [{ ...repo, actions: ['pull', 'push'] }];
  else if (method === 'DELETE') needed = [{ ...repo, actions: ['delete'] }];
  else throw methodNotAllowed(method);
  if (route.kind === 'upload-start' && route.mountFrom !== undefined && route.mountFrom !== route.name) {
    needed.push({ type: 'repository', name: route.mountFrom, actions: ['pull'] });
  }
  return { kind: 'access', access: needed };
}

function methodNotAllowed(method: string): RegistryError {
  return new RegistryError('UNSUPPORTED', `method ${method.slice(0, 20)} is not supported here`);
}
