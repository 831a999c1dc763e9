// Which requests have a body, how long it is, and the refusal of any request whose framing is in doubt.

import type { NextFunction, Request, Response } from 'express';
import { RegistryError } from '../errors.js';
import type { V2Route } from '../access/v2-route.js';

/**
 * More header lines than any registry client sends. Node keeps only the first thousand or so in
 * req.headers but still frames the body by a Content-Length or Transfer-Encoding after them, so
 * a request with that many lines could carry framing the gateway never saw.
 */
export const maxHeaderLines = 100;

/** How the body of a request is delimited, as Node's parser read it. */
export type BodyFraming = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' };

/** Every value of a request header, one per header line, from the raw list Node parsed. */
export function headerLines(req: Request, name: string): string[] {
  const raw = req.rawHeaders;
  const values: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === name) values.push(raw[i + 1]!);
  }
  return values;
}

/** A refusal that also closes the connection: the rest of what the client sends is never read as a request. */
function framingError(message: string, status = 400): RegistryError {
  return new RegistryError('UNSUPPORTED', message, undefined, status).withHeader('Connection', 'close');
}

/**
 * The framing of a request: Content-Length as a plain number, or Transfer-Encoding exactly
 * `chunked`, never both, each at most once. Node refuses most other shapes itself; this refuses
 * the rest (`identity, chunked`, `Chunked`) rather than guess how another parser reads them.
 */
export function framingOf(req: Request): BodyFraming {
  const lengths = headerLines(req, 'content-length');
  const encodings = headerLines(req, 'transfer-encoding');
  if (lengths.length > 1 || encodings.length > 1) throw framingError('Content-Length or Transfer-Encoding given more than once');
  if (lengths.length === 1 && encodings.length === 1) throw framingError('both Content-Length and Transfer-Encoding given');
  if (encodings.length === 1) {
    if (encodings[0] !== 'chunked') throw framingError('Transfer-Encoding must be exactly "chunked"');
    return { kind: 'chunked' };
  }
  if (lengths.length === 1) {
    const text = lengths[0]!;
    const length = Number(text);
    if (!/^\d{1,15}$/.test(text) || !Number.isSafeInteger(length)) throw framingError('invalid Content-Length');
    return length === 0 ? { kind: 'none' } : { kind: 'length', length };
  }
  return { kind: 'none' };
}

/**
 * First on every path: refuses requests with more header lines than clients send (431) and any
 * framing in doubt (400), before authentication or routing, so nothing reads such a request.
 */
export function refuseUnsureFraming(req: Request, _res: Response, next: NextFunction): void {
  if (req.rawHeaders.length / 2 > maxHeaderLines) return next(framingError(`more than ${maxHeaderLines} header lines`, 431));
  try {
    framingOf(req);
  } catch (error) {
    return next(error);
  }
  next();
}

/** The requests of the registry API that carry a body; every other request must have none. */
export function hasBody(method: string, route: V2Route): boolean {
  switch (route.kind) {
    case 'upload-start':
      return method === 'POST';
    case 'upload':
      return method === 'PATCH' || method === 'PUT';
    case 'manifest':
      return method === 'PUT';
    case 'unrouted':
      // Answered by the gateway without reading it: the body is never forwarded.
      return method === 'POST' || method === 'PUT' || method === 'PATCH';
    default:
      return false;
  }
}

/** The framing of a /v2/ request, refusing a body where the registry API has none (a GET with a body, say). */
export function admitBody(req: Request, route: V2Route): BodyFraming {
  const framing = framingOf(req);
  if (framing.kind !== 'none' && !hasBody(req.method, route)) {
    throw framingError(`a ${req.method.slice(0, 20)} request to this endpoint has no body in the registry API`);
  }
  return framing;
}
