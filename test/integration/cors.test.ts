// CORS for a UI on another origin: preflights answered before authentication for configured origins only, registry headers exposed, nothing for other origins.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/errors.js';
import { basic, fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { RegistryApi } from '../helpers/registry-api.js';

const ui = 'https://ui.example.test';
const other = 'https://evil.example.test';

const corsHeaders = (headers: Record<string, unknown>) => Object.keys(headers).filter((name) => name.startsWith('access-control-'));

function preflight(gw: TestGateway, origin: string, target = '/v2/alice/app/manifests/v1', method = 'PUT') {
  return request(gw, 'OPTIONS', target, { headers: { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': 'authorization,content-type' } });
}

describe('CORS with GATEWAY_CORS_ORIGINS', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({ env: { GATEWAY_CORS_ORIGINS: `${ui}, http://localhost:8080` } });
  });
  after(async () => {
    await gw?.close();
  });

  test('a preflight from a configured origin is answered 204 before authentication', async () => {
    for (const target of ['/v2/alice/app/manifests/v1', '/v2/', '/v2/_catalog', '/token?service=registry-gateway']) {
      const res = await preflight(gw, ui, target);
      assert.equal(res.status, 204, target);
      assert.equal(res.headers['access-control-allow-origin'], ui);
      for (const method of ['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE']) assert.match(String(res.headers['access-control-allow-methods']), new RegExp(`\\b${method}\\b`));
      for (const header of ['Authorization', 'Content-Type', 'Accept', 'Range']) assert.match(String(res.headers['access-control-allow-headers']), new RegExp(`\\b${header}\\b`));
      assert.match(String(res.headers['access-control-max-age']), /^\d+$/);
      assert.match(String(res.headers.vary), /Origin/);
      assert.equal(res.headers['access-control-allow-credentials'], undefined, 'no credentials mode');
      assert.equal(res.headers['www-authenticate'], undefined, 'no challenge on a preflight');
    }
    assert.equal((await preflight(gw, 'http://localhost:8080')).headers['access-control-allow-origin'], 'http://localhost:8080');
  });

  test('other origins get no CORS header, on preflights and answers alike', async () => {
    for (const origin of [other, 'null', `${ui}:8443`, 'https://UI.example.test.evil', ui.replace('https', 'http')]) {
      const res = await preflight(gw, origin);
      assert.notEqual(res.status, 204, origin);
      assert.deepEqual(corsHeaders(res.headers), [], origin);
      const answer = await request(gw, 'GET', '/v2/', { headers: { Origin: origin } });
      assert.deepEqual(corsHeaders(answer.headers), [], origin);
      assert.equal(answer.headers['cross-origin-resource-policy'], 'same-origin');
    }
  });

  test('answers to a configured origin can be read there and expose the registry headers', async () => {
    const challenge = await request(gw, 'GET', '/v2/', { headers: { Origin: ui } });
    assert.equal(challenge.status, 401);
    assert.equal(challenge.headers['access-control-allow-origin'], ui);
    assert.equal(challenge.headers['cross-origin-resource-policy'], 'cross-origin');
    const exposed = String(challenge.headers['access-control-expose-headers']);
    for (const header of ['Docker-Content-Digest', 'WWW-Authenticate', 'Link']) assert.match(exposed, new RegExp(`\\b${header}\\b`));
    assert.match(String(challenge.headers['www-authenticate']), /^Bearer realm=/);

    const token = await request(gw, 'GET', '/token?service=registry-gateway&scope=repository:alice/app:pull', { headers: { Origin: ui, Authorization: basic('alice', 'alice-password') } });
    assert.equal(token.status, 200);
    assert.equal(token.headers['access-control-allow-origin'], ui);

    const api = new RegistryApi(gw, await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/app:pull,push']));
    const manifest = await api.makeManifest('alice/app', 'cors');
    assert.equal((await api.putManifest('alice/app', 'v1', manifest.body)).status, 201);
    const read = await request(gw, 'GET', '/v2/alice/app/manifests/v1', { headers: { Origin: ui, Authorization: `Bearer ${api.token}`, Accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(read.status, 200);
    assert.equal(read.headers['access-control-allow-origin'], ui);
    assert.equal(read.headers['docker-content-digest'], manifest.digest);
    assert.match(String(read.headers['access-control-expose-headers']), /Docker-Content-Digest/);
    assert.match(String(read.headers.vary), /Origin/);
  });

  test('the web pages are not opened to other origins', async () => {
    const page = await request(gw, 'GET', '/', { headers: { Origin: ui } });
    assert.deepEqual(corsHeaders(page.headers), []);
  });
});

describe('CORS by default', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({ upstream: 'http://127.0.0.1:9' });
  });
  after(async () => {
    await gw?.close();
  });

  test('no origin is configured: preflights are not answered and no CORS header is sent', async () => {
    const res = await preflight(gw, ui, '/v2/');
    assert.notEqual(res.status, 204);
    assert.deepEqual(corsHeaders(res.headers), []);
    assert.equal(res.headers['cross-origin-resource-policy'], 'same-origin');
  });
});

describe('GATEWAY_CORS_ORIGINS values', () => {
  const load = (value: string) => loadConfig({ env: { GATEWAY_CORS_ORIGINS: value, GATEWAY_UPSTREAM: 'http://127.0.0.1:9' }, cwd: '/tmp' }).config.corsOrigins;

  test('takes exact origins, normalised as browsers send them; refuses wildcards, paths and other schemes', () => {
    assert.deepEqual(load('https://UI.example.com:443 , http://localhost:8080'), ['https://ui.example.com', 'http://localhost:8080']);
    assert.deepEqual(load(''), []);
    for (const bad of ['*', 'null', 'https://ui.example.com/app', 'ftp://ui.example.com', 'ui.example.com', 'https://user@ui.example.com']) {
      assert.throws(() => load(bad), ConfigError, bad);
    }
  });
});
