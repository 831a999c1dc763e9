// Every 4xx a client gets is in the spec's JSON error format: the registry's plain-text ones (404, 405, 416) are rewritten, never a blob buffered.

import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Request, Response } from 'express';
import { RegistryError, type RegistryErrorCode } from '../errors.js';
import type { V2Route } from '../access/v2-route.js';

/** The most of a plain-text error body read for its message; a larger one is not read at all. */
const maxMessageBytes = 1024;
const maxMessageLength = 200;

/** Whether the registry's answer is a 4xx whose body is not the JSON error format. */
export function needsJsonErrorBody(status: number, contentType: string | undefined): boolean {
  if (status < 400 || status > 499) return false;
  const essence = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  return essence !== 'application/json';
}

/** The spec's error code for a registry answer of `status` on `route`. */
export function errorCodeFor(status: number, route: V2Route | undefined, path: string): RegistryErrorCode {
  const kind = route?.kind === 'unrouted' ? unroutedResource(path) : route?.kind;
  switch (status) {
    case 401:
      return 'UNAUTHORIZED';
    case 403:
      return 'DENIED';
    case 404:
      if (kind === 'manifest') return 'MANIFEST_UNKNOWN';
      if (kind === 'blob') return 'BLOB_UNKNOWN';
      if (kind === 'upload' || kind === 'upload-start') return 'BLOB_UPLOAD_UNKNOWN';
      return 'NAME_UNKNOWN';
    case 413:
      return kind === 'manifest' ? 'MANIFEST_INVALID' : 'SIZE_INVALID';
    case 416:
      return kind === 'upload' ? 'BLOB_UPLOAD_INVALID' : 'UNSUPPORTED';
    case 429:
      return 'TOOMANYREQUESTS';
    default:
      return 'UNSUPPORTED';
  }
}

const defaultMessages: Partial<Record<RegistryErrorCode, string>> = {
  MANIFEST_UNKNOWN: 'manifest unknown',
  BLOB_UNKNOWN: 'blob unknown to registry',
  BLOB_UPLOAD_UNKNOWN: 'blob upload unknown to registry',
  NAME_UNKNOWN: 'repository name not known to registry',
};

/** Whether an unrouted path named a manifest or a blob (its second-last segment). */
function unroutedResource(path: string): 'manifest' | 'blob' {
  const segments = path.split('?', 1)[0]!.split('/');
  return segments[segments.length - 2] === 'manifests' ? 'manifest' : 'blob';
}

/** The gateway's own answer for a manifest or blob path the registry's router matches nothing on: 404, as the registry answers. */
export function unroutedError(path: string): RegistryError {
  const code = errorCodeFor(404, { kind: 'unrouted', name: '' }, path);
  const reference = code === 'MANIFEST_UNKNOWN' ? 'neither a tag nor a digest' : 'not a digest';
  return new RegistryError(code, `${defaultMessages[code]}: the reference is ${reference}`);
}

/** Printable ASCII of a plain-text error, one line, bounded; undefined when nothing readable is left. */
export function messageOf(text: string): string | undefined {
  const line = text.replace(/[^\x20-\x7e]+/g, ' ').trim().slice(0, maxMessageLength);
  return line === '' ? undefined : line;
}

/**
 * Reads a plain-text error body when it is small (declared, or found, at most 1 KiB), for its
 * message. Anything larger is not read (the registry's connection is dropped instead); a HEAD
 * answer has nothing to read. Resolves with the text, or undefined.
 */
function readSmallBody(method: string, upstreamRes: IncomingMessage): Promise<string | undefined> {
  const declared = Number(upstreamRes.headers['content-length']);
  if (method === 'HEAD' || declared === 0) {
    upstreamRes.resume();
    return Promise.resolve(undefined);
  }
  if (Number.isFinite(declared) && declared > maxMessageBytes) {
    upstreamRes.destroy();
    return Promise.resolve(undefined);
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    upstreamRes.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxMessageBytes) {
        upstreamRes.destroy();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    upstreamRes.once('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    upstreamRes.once('error', () => resolve(undefined));
    upstreamRes.once('close', () => resolve(undefined));
  });
}

/** The JSON error body for a registry answer of `status` on `route`, with the registry's words as the message when it had any. */
export function jsonErrorBody(status: number, route: V2Route | undefined, path: string, text: string | undefined): Buffer {
  const code = errorCodeFor(status, route, path);
  const message = (text === undefined ? undefined : messageOf(text)) ?? defaultMessages[code] ?? `the registry answered ${status}`;
  return Buffer.from(JSON.stringify(new RegistryError(code, message, undefined, status).toBody()));
}

/**
 * Sends the registry's non-JSON 4xx on in the JSON error format: same status, same headers but
 * for the body's type and length (a HEAD answer gets the length a GET would have, and no body).
 * `done` runs once the answer is sent.
 */
export function relayAsJsonError(req: Request, res: Response, upstreamRes: IncomingMessage, headers: OutgoingHttpHeaders, done: () => void): void {
  const status = upstreamRes.statusCode ?? 400;
  const route = (res.locals as { route?: V2Route }).route;
  void readSmallBody(req.method, upstreamRes).then((text) => {
    if (res.destroyed) return done();
    const body = jsonErrorBody(status, route, req.path, text);
    const rewritten: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(headers)) {
      const lower = name.toLowerCase();
      if (lower !== 'content-type' && lower !== 'content-length' && lower !== 'x-content-type-options') rewritten[name] = value;
    }
    rewritten['Content-Type'] = 'application/json; charset=utf-8';
    rewritten['Content-Length'] = String(body.length);
    res.locals.bytesOut = req.method === 'HEAD' ? 0 : body.length;
    res.writeHead(status, rewritten);
    res.end(req.method === 'HEAD' ? undefined : body);
    done();
  });
}
