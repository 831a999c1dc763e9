// Unit tests: Content-Range of upload chunks, the upload size the registry's state records, and the 416 for a chunk out of place.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Request } from 'express';
import { RegistryError } from '../src/errors.js';
import { parseContentRange, refuseMisplacedChunk, uploadOffset, uploadRange } from '../src/registry/upload-status.js';

const uploadId = '8b46f826-c5e4-4858-bea0-08ebc99ed4f1';

/** An upload state as registry 2.8 packs it: base64url of an HMAC-SHA256 and the JSON state. */
function state(fields: Record<string, unknown>): string {
  const json = Buffer.from(JSON.stringify(fields));
  const mac = createHmac('sha256', 'secret').update(json).digest();
  return Buffer.concat([mac, json]).toString('base64url') + '=';
}

function chunk(method: string, contentRange: string | undefined): Request {
  return { method, headers: contentRange === undefined ? {} : { 'content-range': contentRange } } as unknown as Request;
}

describe('parseContentRange', () => {
  it('reads the spec form <start>-<end>, inclusive, tolerating a bytes prefix', () => {
    assert.deepEqual(parseContentRange('0-9'), { start: 0, end: 9 });
    assert.deepEqual(parseContentRange('10-10'), { start: 10, end: 10 });
    assert.deepEqual(parseContentRange('bytes=5-7'), { start: 5, end: 7 });
    assert.deepEqual(parseContentRange('bytes 5-7'), { start: 5, end: 7 });
  });
  it('calls anything else invalid', () => {
    for (const value of ['', '-', '5-', '-5', '9-0', 'a-b', '0-9/10', '0 - 9', '1e3-2e3', '0-9999999999999999']) {
      assert.equal(parseContentRange(value), 'invalid', value);
    }
  });
});

describe('uploadOffset', () => {
  it('reads the Offset of a state that belongs to this upload', () => {
    assert.equal(uploadOffset(state({ Name: 'team/app', UUID: uploadId, Offset: 20, StartedAt: '2026-01-01T00:00:00Z' }), 'team/app', uploadId), 20);
    assert.equal(uploadOffset(state({ Name: 'team/app', UUID: uploadId, Offset: 0 }), 'team/app', uploadId), 0);
  });
  it('knows nothing from a state of another upload or repository, or from a malformed one', () => {
    assert.equal(uploadOffset(state({ Name: 'other', UUID: uploadId, Offset: 20 }), 'team/app', uploadId), undefined);
    assert.equal(uploadOffset(state({ Name: 'team/app', UUID: 'x', Offset: 20 }), 'team/app', uploadId), undefined);
    assert.equal(uploadOffset(state({ Name: 'team/app', UUID: uploadId, Offset: -1 }), 'team/app', uploadId), undefined);
    assert.equal(uploadOffset(state({ Name: 'team/app', UUID: uploadId, Offset: '20' }), 'team/app', uploadId), undefined);
    assert.equal(uploadOffset(undefined, 'team/app', uploadId), undefined);
    assert.equal(uploadOffset('not-a-state', 'team/app', uploadId), undefined);
    assert.equal(uploadOffset(Buffer.alloc(40).toString('base64url'), 'team/app', uploadId), undefined);
  });
});

describe('uploadRange', () => {
  it('is the registry form 0-<last byte>, and 0-0 for an empty upload', () => {
    assert.equal(uploadRange(20), '0-19');
    assert.equal(uploadRange(1), '0-0');
    assert.equal(uploadRange(0), '0-0');
  });
});

describe('refuseMisplacedChunk', () => {
  const route = { name: 'team/app', uploadId, state: state({ Name: 'team/app', UUID: uploadId, Offset: 10 }) };
  const ten = { kind: 'length', length: 10 } as const;

  it('lets through the chunk that continues the upload, and requests without Content-Range', () => {
    refuseMisplacedChunk(chunk('PATCH', '10-19'), route, ten);
    refuseMisplacedChunk(chunk('PUT', '10-19'), route, ten);
    refuseMisplacedChunk(chunk('PATCH', undefined), route, ten);
    refuseMisplacedChunk(chunk('PATCH', '10-19'), route, { kind: 'chunked' });
    refuseMisplacedChunk(chunk('GET', '0-0'), route, { kind: 'none' });
    // A state the gateway cannot read is the registry's to refuse.
    refuseMisplacedChunk(chunk('PATCH', '30-39'), { ...route, state: 'garbage' }, ten);
  });

  it('answers 416 with the upload Range and Location for a chunk out of order, an earlier chunk again, or a malformed range', () => {
    for (const range of ['20-29', '0-9', '5-14', 'ten-twenty', '19-10']) {
      assert.throws(
        () => refuseMisplacedChunk(chunk('PATCH', range), route, ten),
        (error: unknown) => {
          assert.ok(error instanceof RegistryError);
          assert.equal(error.status, 416);
          assert.equal(error.code, 'BLOB_UPLOAD_INVALID');
          assert.equal(error.headers.Range, '0-9');
          assert.equal(error.headers.Location, `/v2/team/app/blobs/uploads/${uploadId}?_state=${encodeURIComponent(route.state)}`);
          assert.equal(error.headers.Connection, 'close');
          return true;
        },
        range,
      );
    }
  });

  it('answers 400 SIZE_INVALID when the body is not as long as the range says', () => {
    assert.throws(() => refuseMisplacedChunk(chunk('PATCH', '10-14'), route, ten), (error: unknown) => error instanceof RegistryError && error.code === 'SIZE_INVALID' && error.status === 400);
    assert.throws(() => refuseMisplacedChunk(chunk('PUT', '10-19'), route, { kind: 'none' }), (error: unknown) => error instanceof RegistryError && error.code === 'SIZE_INVALID');
  });
});
