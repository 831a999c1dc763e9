// Manifest and blob references the registry's router does not match: the caller gets the registry's status as a JSON error, after the usual access check.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';

interface Answer {
  status: number;
  contentType: string | undefined;
  body: string;
}

/** The bare registry's own answer, asked directly over plain HTTP on loopback. */
function direct(registryUrl: string, method: string, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, registryUrl), { method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const access = `
rules:
  - users: [alice]
    repositories: ["alice/**"]
    actions: ["*"]
`;

describe('references the registry router does not match', () => {
  let gw: TestGateway;
  let token: string;

  before(async () => {
    gw = await startTestGateway({ access, users: { alice: 'alice-password', bob: 'bob-password' } });
    token = await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/app:pull,delete']);
  });
  after(async () => {
    await gw?.close();
  });

  const paths = [
    '/v2/alice/app/manifests/.INVALID_MANIFEST_NAME',
    '/v2/alice/app/manifests/-x',
    '/v2/alice/app/manifests/tag=x',
    `/v2/alice/app/manifests/${'t'.repeat(129)}`,
    '/v2/alice/app/manifests/',
    '/v2/alice/app/blobs/notadigest',
    `/v2/alice/app/blobs/SHA256:${'a'.repeat(64)}`,
    '/v2/alice/app/blobs/',
    // Matched by the router's loose digest pattern: the registry's handlers answer, through the gateway.
    '/v2/alice/app/manifests/sha256:abc',
    '/v2/alice/app/blobs/sha256:abc',
  ];
  for (const path of paths) {
    for (const method of ['GET', 'HEAD', 'DELETE']) {
      test(`${method} ${path.slice(0, 60)} answers what the registry answers, in the spec's JSON error format`, async () => {
        const expected = await direct(gw.registry!.url, method, path);
        const res = await request(gw, method, path, { headers: { Authorization: `Bearer ${token}` } });
        assert.equal(res.status, expected.status);
        if (String(expected.contentType).startsWith('application/json')) {
          // The registry's handlers answered: their JSON passes unchanged.
          assert.equal(res.headers['content-type'], expected.contentType);
          assert.equal(res.body, expected.body);
          return;
        }
        // The registry's router answered in plain text ("404 page not found"): the same status, as a JSON error.
        assert.match(String(res.headers['content-type']), /^application\/json/);
        if (method === 'HEAD') return assert.equal(res.body, '');
        const code = res.json().errors[0].code;
        assert.equal(code, path.includes('/manifests/') ? 'MANIFEST_UNKNOWN' : 'BLOB_UNKNOWN');
      });
    }
  }

  test('the manifest reference of the issue is a 404, as the OCI distribution spec expects', async () => {
    for (const method of ['GET', 'HEAD']) {
      const res = await request(gw, method, '/v2/alice/app/manifests/.INVALID_MANIFEST_NAME', { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(res.status, 404, method);
    }
  });

  test('a caller without access to the name is refused as for any other path of it', async () => {
    const anonymous = await request(gw, 'GET', '/v2/alice/app/manifests/.INVALID_MANIFEST_NAME');
    assert.equal(anonymous.status, 401);
    assert.match(String(anonymous.headers['www-authenticate']), /scope="repository:alice\/app:pull"/);
    const bob = await fetchToken(gw, 'bob', 'bob-password', ['repository:alice/app:pull']);
    const denied = await request(gw, 'GET', '/v2/alice/app/blobs/notadigest', { headers: { Authorization: `Bearer ${bob}` } });
    assert.equal(denied.status, 401);
    assert.match(String(denied.headers['www-authenticate']), /error="insufficient_scope"/);
  });
});
