// Chunked uploads as the OCI spec has them: a chunk that does not start where the upload ends gets 416 with the upload's Range, before the registry sees it.

import type { Request } from 'express';
import { RegistryError } from '../errors.js';
import type { BodyFraming } from './request-framing.js';

/** A chunk's Content-Range: the spec's `<start>-<end>`, inclusive (a `bytes ` or `bytes=` prefix is tolerated). */
const contentRangePattern = /^(?:bytes[ =])?([0-9]{1,15})-([0-9]{1,15})$/;

/** The parsed Content-Range of a chunk, or 'invalid' when it is not the spec's form. */
export function parseContentRange(value: string): { start: number; end: number } | 'invalid' {
  const match = contentRangePattern.exec(value.trim());
  if (!match) return 'invalid';
  const start = Number(match[1]);
  const end = Number(match[2]);
  return end < start ? 'invalid' : { start, end };
}

/**
 * The upload's size as the registry recorded it in the upload state it handed out (`_state`: an
 * HMAC, then JSON with Name, UUID and Offset, in base64url). The HMAC is not checked here: the
 * registry checks it on anything forwarded, and a forged state only changes what its own sender is
 * told. Undefined when the state is not of this form or belongs to another upload.
 */
export function uploadOffset(state: string | undefined, repository: string, uploadId: string): number | undefined {
  if (state === undefined || state.length > 4096) return undefined;
  const raw = Buffer.from(state, 'base64url');
  if (raw.length <= 32) return undefined;
  try {
    const parsed = JSON.parse(raw.subarray(32).toString('utf8')) as { Name?: unknown; UUID?: unknown; Offset?: unknown };
    if (parsed.Name !== repository || parsed.UUID !== uploadId) return undefined;
    return typeof parsed.Offset === 'number' && Number.isSafeInteger(parsed.Offset) && parsed.Offset >= 0 ? parsed.Offset : undefined;
  } catch {
    return undefined;
  }
}

/** The Range header the registry sends for an upload of `size` bytes (it says 0-0 for an empty one too). */
export function uploadRange(size: number): string {
  return `0-${Math.max(size - 1, 0)}`;
}

export interface ChunkRoute {
  name: string;
  uploadId: string;
  state?: string;
}

/**
 * Refuses a PATCH (or closing PUT) whose Content-Range does not continue the upload: out of order,
 * an earlier chunk sent again, or a range the spec does not allow, with 416, the upload's Range and
 * its Location; a body whose length is not the range's gets 400 SIZE_INVALID, as distribution 3
 * answers. Registry 2.8 reads no Content-Range and would append such a chunk wherever it falls.
 * Requests without Content-Range (a whole blob in one PATCH or PUT) are not its business.
 */
export function refuseMisplacedChunk(req: Request, route: ChunkRoute, framing: BodyFraming): void {
  if (req.method !== 'PATCH' && req.method !== 'PUT') return;
  const header = req.headers['content-range'];
  if (typeof header !== 'string') return;
  const offset = uploadOffset(route.state, route.name, route.uploadId);
  // Without a readable state the registry refuses the request itself (BLOB_UPLOAD_INVALID).
  if (offset === undefined) return;
  const range = parseContentRange(header);
  const streamed = framing.kind !== 'none';
  const refuse = (message: string, detail: unknown, code: 'BLOB_UPLOAD_INVALID' | 'SIZE_INVALID' = 'BLOB_UPLOAD_INVALID', status = 416) => {
    const error = new RegistryError(code, message, detail, status);
    if (status === 416) {
      const location = `/v2/${route.name}/blobs/uploads/${route.uploadId}${route.state === undefined ? '' : `?_state=${encodeURIComponent(route.state)}`}`;
      error.withHeader('Range', uploadRange(offset)).withHeader('Location', location).withHeader('Docker-Upload-UUID', route.uploadId).withHeader('Blob-Upload-Session-ID', route.uploadId);
    }
    // The body is not read: the connection ends with this answer.
    return streamed ? error.withHeader('Connection', 'close') : error;
  };
  if (range === 'invalid') throw refuse('Content-Range must be <start>-<end>, inclusive', { contentRange: header.slice(0, 64) });
  if (range.start !== offset) {
    throw refuse(`chunk out of order: the upload holds ${offset} bytes, so the next chunk starts at ${offset}`, { start: range.start, offset });
  }
  const length = framing.kind === 'length' ? framing.length : framing.kind === 'none' ? 0 : undefined;
  if (length !== undefined && length !== range.end - range.start + 1) {
    throw refuse('Content-Length does not match Content-Range', { contentRange: header.slice(0, 64), contentLength: length }, 'SIZE_INVALID', 400);
  }
}
