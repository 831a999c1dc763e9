// Several registries on one storage behind one gateway: balancing, failover, retries, recovery.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { RegistryProcess } from '../../src/registry/registry-process.js';
import { UpstreamPool } from '../../src/registry/upstreams.js';
import { fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import { skopeoCopy, skopeoInspectDigest, skopeoLogin } from '../helpers/skopeo.js';

const silent = pino({ level: 'silent' });

describe('UpstreamPool.pick', () => {
  const urls = ['http://r1:5000', 'http://r2:5000', 'http://r3:5000'].map((u) => new URL(u));

  test('round-robin over healthy registries, skipping those tried and those down', () => {
    const pool = new UpstreamPool(urls, { logger: silent, checkIntervalMs: 0 });
    after(() => pool.close());
    const [r1, r2, r3] = pool.upstreams as [any, any, any];
    assert.deepEqual([pool.pick(), pool.pick(), pool.pick(), pool.pick()], [r1, r2, r3, r1]);
    pool.markDown(r2, 'test');
    assert.deepEqual([pool.pick(), pool.pick(), pool.pick()], [r3, r1, r3]);
    assert.equal(pool.pick(new Set([r1, r3])), r2, 'a registry believed down is still tried when nothing else is left');
    assert.equal(pool.pick(new Set([r1, r2, r3])), undefined);
    pool.markUp(r2);
    assert.ok(new Set([pool.pick(), pool.pick(), pool.pick()]).has(r2));
  });
});

describe('two registries on shared storage behind one gateway', () => {
  let work: string;
  let storage: string;
  let secret: string;
  let first: RegistryProcess;
  let second: RegistryProcess;
  let gw: TestGateway;
  let image: TestImage;
  let authFile: string;

  const registry = (name: string, port?: number) =>
    new RegistryProcess({
      binary: '/usr/bin/docker-registry',
      dataDir: path.join(work, name),
      httpSecret: secret,
      port,
      storage: { filesystem: { rootdirectory: storage } },
      logger: silent,
    });

  const waitForLog = async (pattern: RegExp, since: number) => {
    for (let i = 0; i < 100; i++) {
      if (gw.logLines.slice(since).some((line) => pattern.test(line))) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`no log line matching ${pattern}`);
  };

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'gateway-replicas-'));
    storage = path.join(work, 'shared-storage');
    secret = randomBytes(16).toString('hex');
    first = registry('r1');
    second = registry('r2');
    await Promise.all([first.start(), second.start()]);
    gw = await startTestGateway({ upstream: `${first.url},${second.url}` });
    image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 2 * 1024 * 1024 }, { sizeBytes: 1024 * 1024 }] });
    authFile = path.join(work, 'auth.json');
    await skopeoLogin({ host: gw.host, user: 'alice', password: 'alice-password', certDir: gw.certDir, authFile });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([first?.stop(), second?.stop()]);
    await rm(work, { recursive: true, force: true });
  });

  const push = (repository: string) => skopeoCopy({ from: image.reference, to: `docker://${gw.host}/${repository}:v1`, certDir: gw.certDir, authFile });
  const digestOf = (repository: string) => skopeoInspectDigest({ image: `docker://${gw.host}/${repository}:v1`, certDir: gw.certDir, authFile });

  test('requests are spread over both registries, and a push through both reads back whole', async () => {
    await push('replicas/one');
    assert.equal(await digestOf('replicas/one'), image.manifestDigest);
    const served = new Set(gw.logLines.map((line) => JSON.parse(line)).filter((entry) => entry.msg === 'request' && entry.upstream).map((entry) => entry.upstream));
    assert.deepEqual([...served].sort(), [first.url, second.url].sort());
  });

  test('with one registry stopped, reads are retried on the other at once, and pushes and pulls keep working', async () => {
    const port = Number(new URL(second.url).port);
    const mark = gw.logLines.length;
    await second.stop();
    // Before any health check has noticed: every read must still succeed, retried on the live registry.
    const token = await fetchToken(gw, 'alice', 'alice-password', ['repository:replicas/one:pull']);
    for (let i = 0; i < 4; i++) {
      const res = await request(gw, 'GET', '/v2/replicas/one/tags/list', { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200, res.body);
    }
    await waitForLog(/upstream registry down/, mark);
    await push('replicas/two');
    assert.equal(await digestOf('replicas/two'), image.manifestDigest);
    assert.equal(await digestOf('replicas/one'), image.manifestDigest);

    const revived = registry('r2', port);
    const back = gw.logLines.length;
    await revived.start();
    second = revived;
    await waitForLog(/upstream registry back/, back);
    await push('replicas/three');
    for (const repository of ['replicas/one', 'replicas/two', 'replicas/three']) assert.equal(await digestOf(repository), image.manifestDigest);
    assert.equal((await request(gw, 'GET', '/readyz')).status, 200);
  });
});
