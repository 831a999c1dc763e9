// Unit tests: the framing the gateway reads from a request, and the target and headers it builds for the registry.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Request } from 'express';
import { RegistryError } from '../src/errors.js';
import { framingOf, hasBody } from '../src/registry/request-framing.js';
import { prepareOutgoing, upstreamTarget } from '../src/registry/upstream-request.js';
import { parseV2Route, withoutMount } from '../src/access/v2-route.js';

const digest = `sha256:${'a'.repeat(64)}`;

/** A request as Express hands it on: method, url and the raw header list Node parsed. */
function fakeRequest(method: string, url: string, headers: [string, string][]): Request {
  return { method, url, rawHeaders: headers.flat() } as unknown as Request;
}

function refusedWith(status: number) {
  return (error: unknown) => error instanceof RegistryError && error.status === status;
}

describe('framingOf', () => {
  it('reads Content-Length and chunked, and treats a zero length as no body', () => {
    assert.deepEqual(framingOf(fakeRequest('PATCH', '/', [['Content-Length', '12']])), { kind: 'length', length: 12 });
    assert.deepEqual(framingOf(fakeRequest('PATCH', '/', [['Transfer-Encoding', 'chunked']])), { kind: 'chunked' });
    assert.deepEqual(framingOf(fakeRequest('GET', '/', [['Content-Length', '0']])), { kind: 'none' });
    assert.deepEqual(framingOf(fakeRequest('GET', '/', [])), { kind: 'none' });
  });

  it('refuses any framing another parser could read differently', () => {
    const cases: [string, string][][] = [
      [['Transfer-Encoding', 'Chunked']],
      [['Transfer-Encoding', 'identity, chunked']],
      [['Transfer-Encoding', 'chunked'], ['Transfer-Encoding', 'chunked']],
      [['Content-Length', '5'], ['Transfer-Encoding', 'chunked']],
      [['Content-Length', '5'], ['content-length', '5']],
      [['Content-Length', '1e3']],
    ];
    for (const headers of cases) assert.throws(() => framingOf(fakeRequest('PATCH', '/', headers)), refusedWith(400), JSON.stringify(headers));
  });
});

describe('hasBody: only where the registry API has one', () => {
  const route = (target: string) => parseV2Route(target);
  it('upload start, upload chunks and the final PUT, manifest PUT', () => {
    assert.ok(hasBody('POST', route('/v2/a/blobs/uploads/')));
    assert.ok(hasBody('PATCH', route('/v2/a/blobs/uploads/u')));
    assert.ok(hasBody('PUT', route('/v2/a/blobs/uploads/u')));
    assert.ok(hasBody('PUT', route('/v2/a/manifests/latest')));
  });
  it('nothing else', () => {
    for (const method of ['GET', 'HEAD', 'DELETE']) {
      for (const target of ['/v2/a/manifests/latest', `/v2/a/blobs/${digest}`, '/v2/a/blobs/uploads/u', '/v2/a/tags/list', '/v2/_catalog', '/v2/']) {
        assert.ok(!hasBody(method, route(target)), `${method} ${target}`);
      }
    }
    assert.ok(!hasBody('POST', route('/v2/a/blobs/uploads/u')));
    assert.ok(!hasBody('PATCH', route('/v2/a/manifests/latest')));
  });
});

describe('upstreamTarget: rebuilt from the parse, with only what the registry reads', () => {
  const cases: [method: string, target: string, expected: string][] = [
    ['GET', '/v2/_catalog?n=10&last=a%2Fb&x=1', '/v2/_catalog?n=10&last=a%2Fb'],
    ['GET', '/v2/a/tags/list?x=1', '/v2/a/tags/list'],
    ['GET', `/v2/a/manifests/latest?digest=${digest}`, '/v2/a/manifests/latest'],
    ['POST', `/v2/a/blobs/uploads/?digest=${digest}`, `/v2/a/blobs/uploads/?digest=sha256%3A${'a'.repeat(64)}`],
    ['POST', `/v2/a/blobs/uploads/?from=b&mount=${digest}`, `/v2/a/blobs/uploads/?mount=sha256%3A${'a'.repeat(64)}&from=b`],
    ['POST', '/v2/a/blobs/uploads/?from=b', '/v2/a/blobs/uploads/'],
    ['PATCH', `/v2/a/blobs/uploads/u?_state=x%3D&digest=${digest}`, '/v2/a/blobs/uploads/u?_state=x%3D'],
    ['PUT', `/v2/a/blobs/uploads/u?digest=${digest}&_state=x`, `/v2/a/blobs/uploads/u?_state=x&digest=sha256%3A${'a'.repeat(64)}`],
  ];
  for (const [method, target, expected] of cases) {
    it(`${method} ${target}`, () => assert.equal(upstreamTarget(method, parseV2Route(target)), expected));
  }
  it('a dropped mount leaves a plain upload', () => {
    const route = parseV2Route(`/v2/a/blobs/uploads/?from=b&mount=${digest}&digest=${digest}`);
    assert.equal(route.kind, 'upload-start');
    if (route.kind === 'upload-start') assert.equal(upstreamTarget('POST', withoutMount(route)), `/v2/a/blobs/uploads/?digest=sha256%3A${'a'.repeat(64)}`);
  });
});

describe('prepareOutgoing: headers built from an allowlist', () => {
  it('keeps what the registry reads, repeats Accept, and decides the content type', () => {
    const req = fakeRequest('PATCH', '/v2/a/blobs/uploads/u', [
      ['Accept', 'a/b'],
      ['accept', 'c/d'],
      ['Content-Type', 'application/x-www-form-urlencoded'],
      ['Content-Range', '0-3'],
      ['Cookie', 'x'],
      ['X-Forwarded-Host', 'evil'],
      ['Content-Length', '4'],
    ]);
    const outgoing = prepareOutgoing(req, parseV2Route(req.url));
    assert.deepEqual(outgoing.framing, { kind: 'length', length: 4 });
    assert.deepEqual(outgoing.headers, { 'content-range': '0-3', accept: ['a/b', 'c/d'], 'content-type': 'application/octet-stream' });
  });
  it('refuses a body on GET and a duplicated Range', () => {
    assert.throws(() => prepareOutgoing(fakeRequest('GET', '/v2/a/tags/list', [['Content-Length', '3']]), parseV2Route('/v2/a/tags/list')), refusedWith(400));
    assert.throws(() => prepareOutgoing(fakeRequest('GET', '/v2/a/tags/list', [['Range', 'bytes=0-1'], ['Range', 'bytes=2-3']]), parseV2Route('/v2/a/tags/list')), refusedWith(400));
  });
});
