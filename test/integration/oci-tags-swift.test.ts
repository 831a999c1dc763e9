// Tag lists, single-tag deletes and chunk order through the gateway on registry 2.8 with its Swift storage driver (a real Swift on loopback).

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { after, before, describe, test } from 'node:test';
import { fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { RegistryApi } from '../helpers/registry-api.js';
import { startSwift, type SwiftServer } from '../helpers/swift.js';
import { RegistryProcess } from '../../src/registry/registry-process.js';
import { sortTags } from '../../src/registry/tag-list.js';

const access = `
rules:
  - users: [alice]
    repositories: ["alice/**"]
    actions: ["*"]
`;

describe('tags and single-tag deletes on Swift storage (registry 2.8 swift driver)', () => {
  let swift: SwiftServer;
  let registry: RegistryProcess;
  let gw: TestGateway;
  let api: RegistryApi;
  let dataDir: string;

  before(async () => {
    swift = await startSwift();
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'oci-tags-swift-'));
    registry = new RegistryProcess({
      binary: '/usr/bin/docker-registry',
      dataDir,
      logger: pino({ level: 'silent' }),
      storage: { swift: { authurl: swift.authUrl, username: swift.user, password: swift.key, container: 'oci-tags', authversion: 1, prefix: '/registry' } },
    });
    await registry.start();
    gw = await startTestGateway({ auth: 'token', upstream: registry.url, users: { alice: 'alice-password' }, access });
    api = new RegistryApi(gw, await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/app:pull,push,delete']));
  });
  after(async () => {
    await gw?.close();
    await registry?.stop();
    await swift?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('200 tags listed sorted and paged; one tag deleted, its manifest and other tags kept; a chunk out of order refused', async () => {
    const manifest = await api.makeManifest('alice/app', 'on swift');
    const tags = Array.from({ length: 200 }, (_, i) => `s${(i * 37) % 200}`);
    // One at a time: concurrent writes of one manifest's links make this single-device Swift answer 422.
    for (const tag of tags) {
      const res = await api.putManifest('alice/app', tag, manifest.body);
      assert.equal(res.status, 201, `${tag}: ${res.body}`);
    }
    const auth = { Authorization: `Bearer ${api.token}` };
    const first = await request(gw, 'GET', '/v2/alice/app/tags/list?n=150', { headers: auth });
    assert.deepEqual(first.json().tags, sortTags(tags).slice(0, 150));
    const link = String(first.headers.link);
    const second = await request(gw, 'GET', link.slice(1, link.indexOf('>')), { headers: auth });
    assert.deepEqual(second.json().tags, sortTags(tags).slice(150));
    assert.equal(second.headers.link, undefined);

    const deleted = await api.deleteManifest('alice/app', 's7');
    assert.equal(deleted.status, 202, deleted.body);
    assert.equal(await api.digestOf('alice/app', 's7'), undefined);
    assert.equal(await api.digestOf('alice/app', 's8'), manifest.digest);
    assert.equal(await api.digestOf('alice/app', manifest.digest), manifest.digest);
    const listed = (await request(gw, 'GET', '/v2/alice/app/tags/list', { headers: auth })).json().tags as string[];
    assert.deepEqual(listed, sortTags(tags.filter((tag) => tag !== 's7')));

    const started = await request(gw, 'POST', '/v2/alice/app/blobs/uploads/', { headers: { ...auth, 'Content-Length': '0' } });
    const location = new URL(String(started.headers.location));
    const chunk = Buffer.from('0123456789');
    const headers = { ...auth, 'Content-Type': 'application/octet-stream', 'Content-Length': '10' };
    const one = await request(gw, 'PATCH', `${location.pathname}${location.search}`, { headers: { ...headers, 'Content-Range': '0-9' }, body: chunk });
    assert.equal(one.status, 202, one.body);
    const next = new URL(String(one.headers.location));
    const ahead = await request(gw, 'PATCH', `${next.pathname}${next.search}`, { headers: { ...headers, 'Content-Range': '20-29' }, body: chunk });
    assert.equal(ahead.status, 416);
    assert.equal(ahead.headers.range, '0-9');
    const status = await request(gw, 'GET', `${next.pathname}${next.search}`, { headers: auth });
    assert.equal(status.status, 204);
    assert.equal(status.headers.range, '0-9');
  });
});
