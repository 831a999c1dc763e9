// Upload parameters the registry reads with Go's FormValue come only from the query the gateway authorized and rebuilt.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawExchange } from '../helpers/raw-tls.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.js';
import { RegistryApi } from '../helpers/registry-api.js';

const access = `
rules:
  - users: [authenticated]
    repositories: ["{user}/**"]
    actions: ["*"]
`;
const users = { alice: 'alice-password', carol: 'carol-password' };
const otherDigest = `sha256:${'e'.repeat(64)}`;

/** Content types a lowercase prefix match misses but Go's mime.ParseMediaType reads as a form (it trims Unicode spaces, folds İ). */
const formTypes = [
  '\u00a0application/x-www-form-urlencoded',
  '\u0085application/x-www-form-urlencoded',
  '\u2003application/x-www-form-urlencoded',
  '\u3000application/x-www-form-urlencoded',
  'applİcation/x-www-form-urlencoded',
  'application/x-www-form-urlencoded',
  'APPLICATION/X-WWW-FORM-URLENCODED; charset=utf-8',
  'multipart/form-data; boundary=XYZ',
];

function formBody(type: string, digest: string): string {
  if (!type.startsWith('multipart/')) return `mount=${digest}&from=alice/private`;
  const part = (name: string, value: string) => `--XYZ\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  return `${part('mount', digest)}${part('from', 'alice/private')}--XYZ--\r\n`;
}

/** A raw POST with the Content-Type written as UTF-8 bytes, as a Go client would send it. */
function formPost(gw: TestGateway, token: string, target: string, type: string, body: string): Buffer {
  return Buffer.concat([
    Buffer.from(`POST ${target} HTTP/1.1\r\nHost: ${gw.host}\r\nAuthorization: Bearer ${token}\r\nContent-Type: `, 'latin1'),
    Buffer.from(type, 'utf8'),
    Buffer.from(`\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`, 'latin1'),
  ]);
}

describe('a form body cannot mount another repository\'s blob (real registry)', () => {
  let gw: TestGateway;
  let secret: { digest: string; size: number };
  let carol: string;

  before(async () => {
    gw = await startTestGateway({ users, access });
    const alice = new RegistryApi(gw, await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/private:pull,push']));
    secret = await alice.uploadBlob('alice/private', Buffer.from('alice\'s private layer'));
    const scopes = formTypes.map((_, index) => `repository:carol/form-${index}:pull,push`);
    carol = await fetchToken(gw, 'carol', 'carol-password', [...scopes, 'repository:alice/private:pull']);
  });
  after(async () => {
    await gw?.close();
  });

  for (const [index, type] of formTypes.entries()) {
    // A repository of its own per type, so that each type is shown to fail on its own.
    const repository = `carol/form-${index}`;
    test(`Content-Type ${JSON.stringify(type)}: never 201, and carol cannot read alice's blob`, async () => {
      const answer = await rawExchange(gw, formPost(gw, carol, `/v2/${repository}/blobs/uploads/`, type, formBody(type, secret.digest)), { methods: ['POST'] });
      assert.equal(answer.statuses.length, 1, answer.text);
      assert.notEqual(answer.statuses[0], 201, answer.text);
      for (const method of ['HEAD', 'GET']) {
        const read = await request(gw, method, `/v2/${repository}/blobs/${secret.digest}`, { headers: { Authorization: `Bearer ${carol}` } });
        assert.equal(read.status, 404, `${method} after ${JSON.stringify(type)}`);
      }
    });
  }
});

describe('what the registry is sent for upload and manifest requests (recording upstream)', () => {
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  let carol: string;

  before(async () => {
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({ upstream: upstream.url, users, access });
    carol = await fetchToken(gw, 'carol', 'carol-password', ['repository:carol/x:pull,push', 'repository:carol/other:pull', 'repository:alice/private:pull']);
  });
  after(async () => {
    await gw?.close();
    await upstream?.close();
  });

  const last = () => upstream.requests.at(-1)!;

  test('every form Content-Type becomes application/octet-stream, and only the authorized query goes on', async () => {
    const target = `/v2/carol/x/blobs/uploads/?mount=${otherDigest}&from=alice/private&digest=${otherDigest}&junk=1`;
    for (const type of formTypes) {
      const start = upstream.requests.length;
      const answer = await rawExchange(gw, formPost(gw, carol, target, type, formBody(type, otherDigest)), { methods: ['POST'] });
      assert.deepEqual(answer.statuses, [200], JSON.stringify(type));
      assert.equal(upstream.requests.length, start + 1);
      assert.equal(last().target, `/v2/carol/x/blobs/uploads/?digest=${encodeURIComponent(otherDigest)}`);
      assert.deepEqual(upstream.header(last(), 'content-type'), ['application/octet-stream']);
    }
  });

  test('a mount carol may make is passed on, re-encoded from what the gateway parsed', async () => {
    const res = await request(gw, 'POST', `/v2/carol/x/blobs/uploads/?%66rom=carol%2Fother&junk=%41&mount=${otherDigest}`, { headers: { Authorization: `Bearer ${carol}` } });
    assert.equal(res.status, 200);
    assert.equal(last().target, `/v2/carol/x/blobs/uploads/?mount=${encodeURIComponent(otherDigest)}&from=carol%2Fother`);
    assert.deepEqual(upstream.header(last(), 'content-length'), ['0']);
  });

  test('upload sessions get _state always and digest only on PUT; tag lists are read whole (the gateway pages them)', async () => {
    const auth = { Authorization: `Bearer ${carol}`, 'Content-Type': 'text/plain' };
    const session = '/v2/carol/x/blobs/uploads/u-1';
    const cases: [method: string, target: string, expected: string][] = [
      ['PATCH', `${session}?_state=a%2Bb%3D&digest=${otherDigest}&x=1`, `${session}?_state=a%2Bb%3D`],
      ['PUT', `${session}?digest=${otherDigest}&_state=s`, `${session}?_state=s&digest=${encodeURIComponent(otherDigest)}`],
      ['GET', `${session}?_state=s&digest=${otherDigest}`, `${session}?_state=s`],
      ['GET', '/v2/carol/x/tags/list?last=v1&n=10&junk=1', '/v2/carol/x/tags/list'],
      ['GET', `/v2/carol/x/manifests/latest?junk=1`, '/v2/carol/x/manifests/latest'],
    ];
    for (const [method, target, expected] of cases) {
      const res = await request(gw, method, target, { headers: auth, ...(method === 'PATCH' || method === 'PUT' ? { body: 'data' } : {}) });
      assert.equal(res.status, 200, `${method} ${target}: ${res.body}`);
      assert.equal(last().target, expected);
      const type = upstream.header(last(), 'content-type');
      assert.deepEqual(type, method === 'GET' ? [] : ['application/octet-stream'], `${method} ${target}`);
    }
  });

  test('a query the registry could read differently is refused, and nothing is forwarded', async () => {
    for (const query of [`mount=${otherDigest};from=alice/private`, 'from=carol/other&from=alice/private', `mount=${otherDigest}%zz&from=carol/other`, 'digest=%ff', `digest=${otherDigest}&digest=${otherDigest}`]) {
      const start = upstream.requests.length;
      const res = await request(gw, 'POST', `/v2/carol/x/blobs/uploads/?${query}`, { headers: { Authorization: `Bearer ${carol}` } });
      assert.equal(res.status, 400, query);
      assert.equal(upstream.requests.length, start, query);
    }
  });

  test('a manifest keeps a plain media type; forms, multipart and non-ASCII types are refused', async () => {
    const put = (type: string) => request(gw, 'PUT', '/v2/carol/x/manifests/v1', { headers: { Authorization: `Bearer ${carol}`, 'Content-Type': type }, body: '{}' });
    for (const type of ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json; charset=utf-8']) {
      assert.equal((await put(type)).status, 200, type);
      assert.deepEqual(upstream.header(last(), 'content-type'), [type]);
    }
    for (const type of ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'Multipart/Mixed', '\u00a0application/vnd.oci.image.manifest.v1+json', 'application/json; x', 'text']) {
      const start = upstream.requests.length;
      const res = await put(type);
      assert.equal(res.status, 400, type);
      assert.equal(res.json().errors[0].code, 'MANIFEST_INVALID');
      assert.equal(upstream.requests.length, start, type);
    }
  });
});
