// The OCI spec's answers through the gateway on registry 2.8: chunks in order or 416, upload status 204, JSON 4xx bodies, 404 for references no tag or digest.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { fetchToken, request, startTestGateway, type RawResponse, type TestGateway } from '../helpers/gateway.js';
import { RegistryApi, sha256 } from '../helpers/registry-api.js';

const access = `
rules:
  - users: [alice]
    repositories: ["alice/**"]
    actions: ["*"]
`;

/** Waits for `find` to return something, a few seconds at most (the access log line is written when the response closes). */
async function eventually<T>(find: () => T | undefined): Promise<T> {
  for (let tries = 0; tries < 100; tries++) {
    const found = find();
    if (found !== undefined) return found;
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('not found in time');
}

/** The bare registry's own answer, asked directly over plain HTTP on loopback. */
function direct(registryUrl: string, method: string, path: string): Promise<{ status: number; contentType: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, registryUrl), { method, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'] }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Asserts the spec's JSON error format (https://github.com/opencontainers/distribution-spec, Error Codes) and answers the first code. */
function assertSpecError(res: RawResponse, status: number, label: string): string {
  assert.equal(res.status, status, `${label}: ${res.body}`);
  assert.match(String(res.headers['content-type']), /^application\/json/, label);
  const body = res.json() as { errors: { code: string; message?: string }[] };
  assert.ok(Array.isArray(body.errors) && body.errors.length > 0, label);
  for (const error of body.errors) assert.match(error.code, /^[A-Z_]+$/, label);
  return body.errors[0]!.code;
}

describe('OCI spec answers (real registry 2.8)', () => {
  let gw: TestGateway;
  let api: RegistryApi;
  let auth: Record<string, string>;
  const repo = 'alice/app';

  before(async () => {
    gw = await startTestGateway({ auth: 'token', users: { alice: 'alice-password' }, access });
    const token = await fetchToken(gw, 'alice', 'alice-password', [`repository:${repo}:pull,push,delete`]);
    api = new RegistryApi(gw, token);
    auth = { Authorization: `Bearer ${token}` };
  });
  after(() => gw?.close());

  /** The path and query of an upload Location, to send the next request to. */
  const targetOf = (res: RawResponse) => {
    const location = new URL(String(res.headers.location), `https://${gw.host}`);
    assert.equal(location.host, gw.host);
    return `${location.pathname}${location.search}`;
  };
  const patch = (target: string, range: string | undefined, body: Buffer) =>
    request(gw, 'PATCH', target, { headers: { ...auth, 'Content-Type': 'application/octet-stream', 'Content-Length': String(body.length), ...(range ? { 'Content-Range': range } : {}) }, body });

  test('a chunked upload: chunks in order are taken, one out of order or sent again gets 416 with the upload Range, and the blob is intact', async () => {
    const first = Buffer.from('0123456789');
    const second = Buffer.from('abcdefghij');
    const third = Buffer.from('KLMNO');
    const started = await request(gw, 'POST', `/v2/${repo}/blobs/uploads/`, { headers: { ...auth, 'Content-Length': '0' } });
    assert.equal(started.status, 202);

    const status0 = await request(gw, 'GET', targetOf(started), { headers: auth });
    assert.equal(status0.status, 204, 'GET on an upload in progress');
    assert.equal(status0.headers.range, '0-0');
    assert.ok(status0.headers.location);

    const one = await patch(targetOf(started), '0-9', first);
    assert.equal(one.status, 202, one.body);
    assert.equal(one.headers.range, '0-9');

    const ahead = await patch(targetOf(one), '20-29', second);
    assert.equal(assertSpecError(ahead, 416, 'out of order'), 'BLOB_UPLOAD_INVALID');
    assert.equal(ahead.headers.range, '0-9');
    assert.equal(new URL(String(ahead.headers.location), `https://${gw.host}`).pathname, new URL(String(one.headers.location)).pathname);
    const again = await patch(targetOf(one), '0-9', first);
    assert.equal(assertSpecError(again, 416, 'earlier chunk again'), 'BLOB_UPLOAD_INVALID');
    assert.equal(again.headers.range, '0-9');
    const overlapping = await patch(targetOf(one), '5-14', second);
    assert.equal(overlapping.status, 416);
    const malformed = await patch(targetOf(one), 'ten-nineteen', second);
    assert.equal(malformed.status, 416);
    assert.equal(malformed.headers.range, '0-9');
    const wrongLength = await patch(targetOf(one), '10-24', second);
    assert.equal(assertSpecError(wrongLength, 400, 'length not the range'), 'SIZE_INVALID');

    // None of the refused chunks reached the upload: the registry still holds ten bytes.
    const status1 = await request(gw, 'GET', targetOf(one), { headers: auth });
    assert.equal(status1.status, 204);
    assert.equal(status1.headers.range, '0-9');
    assert.equal(String(status1.headers.location), String(one.headers.location));
    const head1 = await request(gw, 'HEAD', targetOf(one), { headers: auth });
    assert.equal(head1.status, 204);
    assert.equal(head1.headers.range, '0-9');

    const two = await patch(targetOf(status1), '10-19', second);
    assert.equal(two.status, 202, two.body);
    assert.equal(two.headers.range, '0-19');
    const whole = Buffer.concat([first, second, third]);
    const closing = `${targetOf(two)}&digest=${sha256(whole)}`;
    const done = await request(gw, 'PUT', closing, { headers: { ...auth, 'Content-Type': 'application/octet-stream', 'Content-Length': String(third.length), 'Content-Range': '20-24' }, body: third });
    assert.equal(done.status, 201, done.body);
    const blob = await request(gw, 'GET', `/v2/${repo}/blobs/${sha256(whole)}`, { headers: auth });
    assert.equal(blob.status, 200);
    assert.equal(blob.body, whole.toString());
  });

  test('a closing PUT whose chunk does not continue the upload gets 416 too', async () => {
    const started = await request(gw, 'POST', `/v2/${repo}/blobs/uploads/`, { headers: { ...auth, 'Content-Length': '0' } });
    const one = await patch(targetOf(started), '0-3', Buffer.from('abcd'));
    assert.equal(one.status, 202);
    const whole = Buffer.from('abcdefgh');
    const refused = await request(gw, 'PUT', `${targetOf(one)}&digest=${sha256(whole)}`, { headers: { ...auth, 'Content-Type': 'application/octet-stream', 'Content-Length': '4', 'Content-Range': '0-3' }, body: Buffer.from('efgh') });
    assert.equal(assertSpecError(refused, 416, 'closing PUT'), 'BLOB_UPLOAD_INVALID');
    assert.equal(refused.headers.range, '0-3');
    const done = await request(gw, 'PUT', `${targetOf(one)}&digest=${sha256(whole)}`, { headers: { ...auth, 'Content-Type': 'application/octet-stream', 'Content-Length': '4', 'Content-Range': '4-7' }, body: Buffer.from('efgh') });
    assert.equal(done.status, 201, done.body);
  });

  test('a monolithic PATCH without Content-Range and an unknown upload still get the registry\'s answers', async () => {
    const started = await request(gw, 'POST', `/v2/${repo}/blobs/uploads/`, { headers: { ...auth, 'Content-Length': '0' } });
    const streamed = await patch(targetOf(started), undefined, Buffer.from('whole blob'));
    assert.equal(streamed.status, 202);
    assert.equal(streamed.headers.range, '0-9');
    const unknown = await request(gw, 'GET', `/v2/${repo}/blobs/uploads/0c3b6d1e-4f5a-4b7c-9d2e-8f1a2b3c4d5e`, { headers: auth });
    assert.equal(unknown.status, 404);
    assertSpecError(unknown, 404, 'unknown upload');
  });

  test('every 4xx body is the JSON error format, also where the registry writes plain text', async () => {
    // The registry answers 405 "Method not allowed" in plain text here.
    const registry405 = await direct(gw.registry!.url, 'POST', `/v2/${repo}/tags/list`);
    assert.equal(registry405.status, 405);
    assert.match(String(registry405.contentType), /^text\/plain/);
    const notAllowed = await request(gw, 'POST', `/v2/${repo}/tags/list`, { headers: { ...auth, 'Content-Length': '0' } });
    assert.equal(assertSpecError(notAllowed, 405, 'POST tags/list'), 'UNSUPPORTED');
    assert.equal(notAllowed.json().errors[0].message, 'Method not allowed');
    assert.equal(notAllowed.headers.allow, 'GET');

    // A blob range past its end: Go's plain-text 416.
    const blob = await api.uploadBlob(repo, Buffer.from('tiny blob'));
    const registry416 = await direct(gw.registry!.url, 'GET', `/v2/${repo}/blobs/${blob.digest}`);
    assert.equal(registry416.status, 200);
    const pastEnd = await request(gw, 'GET', `/v2/${repo}/blobs/${blob.digest}`, { headers: { ...auth, Range: 'bytes=100-200' } });
    assertSpecError(pastEnd, 416, 'blob range past the end');
    assert.equal(pastEnd.headers['content-range'], 'bytes */9');

    // The registry's own JSON errors pass unchanged.
    const unknownBlob = await request(gw, 'GET', `/v2/${repo}/blobs/sha256:${'0'.repeat(64)}`, { headers: auth });
    assert.equal(assertSpecError(unknownBlob, 404, 'unknown blob'), 'BLOB_UNKNOWN');
    const unknownManifest = await request(gw, 'GET', `/v2/${repo}/manifests/nothing`, { headers: auth });
    assert.equal(assertSpecError(unknownManifest, 404, 'unknown manifest'), 'MANIFEST_UNKNOWN');

    // A HEAD answer keeps no body but says what a GET would carry.
    const head = await request(gw, 'HEAD', `/v2/${repo}/manifests/-not-a-tag`, { headers: auth });
    assert.equal(head.status, 404);
    assert.equal(head.body, '');
    assert.match(String(head.headers['content-type']), /^application\/json/);
  });

  test('GET and HEAD of a manifest whose reference is neither a tag nor a digest answer 404, as the registry does', async () => {
    const references = ['.INVALID_MANIFEST_NAME', '-x', 'tag=x', 'v1!', 'latest@' + `sha256:${'a'.repeat(64)}`, 'a%20b', 'latest%00', 'l%C3%A4test', 't'.repeat(129), 't'.repeat(3000), 'a~b', "it's"];
    for (const reference of references) {
      const path = `/v2/${repo}/manifests/${reference}`;
      const registry = await direct(gw.registry!.url, 'GET', path);
      assert.equal(registry.status, 404, `the registry's answer for ${reference.slice(0, 40)}`);
      for (const method of ['GET', 'HEAD']) {
        const res = await request(gw, method, path, { headers: auth });
        assert.equal(res.status, 404, `${method} ${reference.slice(0, 40)}: ${res.body}`);
        if (method === 'GET') assert.equal(assertSpecError(res, 404, reference.slice(0, 40)), 'MANIFEST_UNKNOWN');
      }
    }
    const blob = await request(gw, 'GET', `/v2/${repo}/blobs/notadigest`, { headers: auth });
    assert.equal(assertSpecError(blob, 404, 'blob reference'), 'BLOB_UNKNOWN');
  });

  test('such a reference is still checked against the caller\'s access first, and never reaches the registry', async () => {
    const anonymous = await request(gw, 'GET', `/v2/${repo}/manifests/v1!`);
    assert.equal(anonymous.status, 401);
    assert.match(String(anonymous.headers['www-authenticate']), /scope="repository:alice\/app:pull"/);
    assert.equal((await request(gw, 'GET', `/v2/${repo}/manifests/v2!`, { headers: auth })).status, 404);
    assert.equal((await request(gw, 'GET', `/v2/${repo}/manifests/v2`, { headers: auth })).status, 404);
    const logged = (path: string) => eventually(() => gw.logLines.map((line) => JSON.parse(line) as { msg?: string; path?: string; upstream?: string }).find((entry) => entry.msg === 'request' && entry.path === path));
    assert.equal((await logged(`/v2/${repo}/manifests/v2!`)).upstream, undefined, 'answered by the gateway');
    assert.equal((await logged(`/v2/${repo}/manifests/v2`)).upstream, gw.registry!.url.replace(/\/$/, ''), 'a valid tag is forwarded');
  });
});
