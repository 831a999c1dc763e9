// Unit tests: which registry answers get the spec's JSON error body, with which code and message, and the throwaway manifest of a tag delete.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { errorCodeFor, jsonErrorBody, messageOf, needsJsonErrorBody, unroutedError } from '../src/registry/error-bodies.js';
import { emptyConfigDescriptor, isThrowawayManifest, throwawayAnnotation, throwawayManifest } from '../src/registry/tag-delete.js';

describe('needsJsonErrorBody', () => {
  it('is true only for 4xx answers that are not JSON', () => {
    assert.equal(needsJsonErrorBody(405, 'text/plain; charset=utf-8'), true);
    assert.equal(needsJsonErrorBody(404, undefined), true);
    assert.equal(needsJsonErrorBody(416, 'text/plain'), true);
    assert.equal(needsJsonErrorBody(404, 'application/json; charset=utf-8'), false);
    assert.equal(needsJsonErrorBody(400, 'Application/JSON'), false);
    assert.equal(needsJsonErrorBody(200, 'text/plain'), false);
    assert.equal(needsJsonErrorBody(307, 'text/html'), false);
    assert.equal(needsJsonErrorBody(503, 'text/plain'), false);
  });
});

describe('errorCodeFor', () => {
  const manifest = { kind: 'manifest', name: 'a', reference: 'latest' } as const;
  const blob = { kind: 'blob', name: 'a', digest: 'sha256:x' } as const;
  const upload = { kind: 'upload', name: 'a', uploadId: 'u' } as const;
  const tags = { kind: 'tags', name: 'a' } as const;
  it('names what was not found by the route', () => {
    assert.equal(errorCodeFor(404, manifest, ''), 'MANIFEST_UNKNOWN');
    assert.equal(errorCodeFor(404, blob, ''), 'BLOB_UNKNOWN');
    assert.equal(errorCodeFor(404, upload, ''), 'BLOB_UPLOAD_UNKNOWN');
    assert.equal(errorCodeFor(404, tags, ''), 'NAME_UNKNOWN');
    assert.equal(errorCodeFor(404, { kind: 'unrouted', name: 'a' }, '/v2/a/manifests/-x'), 'MANIFEST_UNKNOWN');
    assert.equal(errorCodeFor(404, { kind: 'unrouted', name: 'a' }, '/v2/a/blobs/nope'), 'BLOB_UNKNOWN');
  });
  it('maps the other statuses onto the spec codes', () => {
    assert.equal(errorCodeFor(405, tags, ''), 'UNSUPPORTED');
    assert.equal(errorCodeFor(416, blob, ''), 'UNSUPPORTED');
    assert.equal(errorCodeFor(416, upload, ''), 'BLOB_UPLOAD_INVALID');
    assert.equal(errorCodeFor(413, manifest, ''), 'MANIFEST_INVALID');
    assert.equal(errorCodeFor(401, manifest, ''), 'UNAUTHORIZED');
    assert.equal(errorCodeFor(403, manifest, ''), 'DENIED');
    assert.equal(errorCodeFor(429, manifest, ''), 'TOOMANYREQUESTS');
    assert.equal(errorCodeFor(400, undefined, ''), 'UNSUPPORTED');
  });
});

describe('jsonErrorBody and messageOf', () => {
  it('keeps the registry words as one printable line, bounded', () => {
    assert.equal(messageOf('Method not allowed\n'), 'Method not allowed');
    assert.equal(messageOf('a\u0000b\r\nc\u00ff'), 'a b c');
    assert.equal(messageOf(' \n\t'), undefined);
    assert.equal(messageOf('x'.repeat(5000))!.length, 200);
  });
  it('is the spec format, with a default message when the registry gave none', () => {
    assert.deepEqual(JSON.parse(jsonErrorBody(405, { kind: 'tags', name: 'a' }, '', 'Method not allowed\n').toString()), { errors: [{ code: 'UNSUPPORTED', message: 'Method not allowed' }] });
    assert.deepEqual(JSON.parse(jsonErrorBody(404, { kind: 'blob', name: 'a', digest: 'sha256:x' }, '', undefined).toString()), { errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry' }] });
  });
  it('answers an unrouted manifest or blob path 404 with its unknown code', () => {
    const manifest = unroutedError('/v2/a/manifests/.x');
    assert.equal(manifest.status, 404);
    assert.equal(manifest.code, 'MANIFEST_UNKNOWN');
    assert.equal(unroutedError('/v2/a/blobs/').code, 'BLOB_UNKNOWN');
  });
});

describe('throwaway manifests of a tag delete', () => {
  it('are unique OCI image manifests with the empty config and no layers, and recognised as such', () => {
    const one = throwawayManifest('v1');
    const two = throwawayManifest('v1');
    assert.notDeepEqual(one, two);
    const parsed = JSON.parse(one.toString());
    assert.equal(parsed.schemaVersion, 2);
    assert.equal(parsed.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.deepEqual(parsed.config, emptyConfigDescriptor);
    assert.deepEqual(parsed.layers, []);
    assert.match(parsed.annotations[throwawayAnnotation], /^v1 [0-9a-f-]{36}$/);
    assert.equal(isThrowawayManifest(one), true);
  });
  it('are never confused with an ordinary manifest', () => {
    const ordinary = { schemaVersion: 2, config: emptyConfigDescriptor, layers: [], annotations: { other: 'x' } };
    assert.equal(isThrowawayManifest(Buffer.from(JSON.stringify(ordinary))), false);
    assert.equal(isThrowawayManifest(Buffer.from(JSON.stringify({ ...ordinary, layers: [{}], annotations: { [throwawayAnnotation]: 'x' } }))), false);
    assert.equal(isThrowawayManifest(Buffer.from('not json')), false);
  });
});
