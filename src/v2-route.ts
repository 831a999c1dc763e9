// Parses a /v2/ request line exactly as the registry's router will, and names the access it needs.

import type { Access } from './access.js';
import { RegistryError } from './errors.js';
import { isDigest, isRepositoryName, isTag, uploadIdPattern } from './reference.js';

export type V2Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'tags'; name: string }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'upload-start'; name: string; mountFrom: string | undefined }
  | { kind: 'upload'; name: string; uploadId: string };

/** What a request needs: nothing beyond a valid identity (the /v2/ ping), or these scopes. */
export type Requirement = { kind: 'identity' } | { kind: 'access'; access: Access[] };

/** Longest request target the gateway accepts; the registry's own names stop at 255 characters. */
const maxTargetLength = 4096;

/** Characters that may appear in a canonical /v2/ path; anything else (%, \, spaces, non-ASCII) is refused. */
const canonicalPathCharacters = /^[A-Za-z0-9/._:=+-]*$/;

function invalid(message: string, detail?: unknown): RegistryError {
  return new RegistryError('NAME_INVALID', message, detail);
}

function unknownRoute(): RegistryError {
  return new RegistryError('UNSUPPORTED', 'no such registry API endpoint', undefined, 404);
}

/** The query parameters of a request target (path?query). */
export function queryOf(target: string): URLSearchParams {
  const at = target.indexOf('?');
  return new URLSearchParams(at === -1 ? '' : target.slice(at + 1));
}

/**
 * Splits a request target into path and query, refusing anything the registry might read
 * differently from the gateway: percent-encoding (an encoded slash becomes a path separator
 * after decoding), dot segments and empty segments (cleaned or redirected by the registry's
 * router), backslashes, and absolute-form targets.
 */
function splitTarget(target: string): { path: string; query: URLSearchParams } {
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
  return { path: pathPart, query: queryOf(target) };
}

function repository(segments: string[]): string {
  const name = segments.join('/');
  if (!isRepositoryName(name)) throw invalid('invalid repository name', { name: name.slice(0, 300) });
  return name;
}

/** Parses the path of a /v2 request; throws RegistryError for anything the registry would not route. */
export function parseV2Route(target: string): V2Route {
  const { path, query } = splitTarget(target);
  if (path === '/v2/' || path === '/v2') return { kind: 'base' };
  if (!path.startsWith('/v2/')) throw unknownRoute();
  if (path === '/v2/_catalog') return { kind: 'catalog' };

  // The registry's routes take the name greedily, so the suffix decides the route: read from the end.
  const segments = path.slice('/v2/'.length).split('/');
  const n = segments.length;
  const last = segments[n - 1]!;
  const secondLast = segments[n - 2];
  const thirdLast = segments[n - 3];

  if (secondLast === 'tags' && last === 'list' && n >= 3) {
    return { kind: 'tags', name: repository(segments.slice(0, n - 2)) };
  }
  if (secondLast === 'manifests' && n >= 3) {
    if (!isTag(last) && !isDigest(last)) throw new RegistryError('MANIFEST_INVALID', 'invalid manifest reference (tag or digest)', undefined, 400);
    return { kind: 'manifest', name: repository(segments.slice(0, n - 2)), reference: last };
  }
  if (secondLast === 'blobs' && n >= 3) {
    if (!isDigest(last)) throw new RegistryError('DIGEST_INVALID', 'invalid digest');
    return { kind: 'blob', name: repository(segments.slice(0, n - 2)), digest: last };
  }
  if (thirdLast === 'blobs' && secondLast === 'uploads' && n >= 4) {
    const name = repository(segments.slice(0, n - 3));
    if (last === '') return { kind: 'upload-start', name, mountFrom: mountSource(query) };
    if (!uploadIdPattern.test(last) || last.length > 256) throw new RegistryError('BLOB_UPLOAD_INVALID', 'invalid upload id');
    return { kind: 'upload', name, uploadId: last };
  }
  throw unknownRoute();
}

/** A cross-repository mount names its source in `from`; the registry only mounts when `mount` is given too. */
function mountSource(query: URLSearchParams): string | undefined {
  const from = query.get('from');
  const mount = query.get('mount');
  if (from === null || mount === null) return undefined;
  if (!isRepositoryName(from)) throw invalid('invalid repository name in from', { name: from.slice(0, 300) });
  if (!isDigest(mount)) throw new RegistryError('DIGEST_INVALID', 'invalid digest in mount');
  return from;
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
