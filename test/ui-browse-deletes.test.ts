// Unit tests: a web UI delete counts as a write in flight of the gateway's maintenance mode, is refused once maintenance is on, and queues on the API's immutable-tag lock.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { createHash } from 'node:crypto';
import type { Authorizer } from '../src/access/access.js';
import { MaintenanceMode } from '../src/ops/maintenance.js';
import { keyedLock } from '../src/registry/tag-locks.js';
import type { UpstreamAnswer, UpstreamPool } from '../src/registry/upstreams.js';
import { createDeleter, maintenanceGate } from '../src/ui/browse/deletes.js';
import { ManifestStore } from '../src/ui/browse/manifests.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ui-deletes-unit-'));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('maintenanceGate', () => {
  test('counts an admitted delete until it is done, and admits none in maintenance', async () => {
    const mode = new MaintenanceMode({ file: path.join(dir, 'maintenance.json'), logger: pino({ level: 'silent' }), heartbeatMs: 60_000 });
    await mode.start();
    try {
      const gate = maintenanceGate(mode);
      const done = gate.admit?.();
      assert.ok(done);
      assert.equal(mode.status().writesInFlight, 1);
      done();
      done();
      assert.equal(mode.status().writesInFlight, 0, 'counted once, released once');
      mode.offer({ on: true, since: new Date(Date.now() + 1000).toISOString(), reason: 'gc' });
      assert.equal(gate.status().on, true);
      assert.equal(gate.admit?.(), undefined);
      assert.equal(mode.status().writesInFlight, 0);
    } finally {
      await mode.stop();
    }
  });
});

describe('a web UI delete by digest', () => {
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 2 }, layers: [] }));
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;

  /** A registry holding one untagged manifest in `app`, recording the requests it gets. */
  function fakeRegistry() {
    const seen: string[] = [];
    const answer = (status: number, json?: unknown, headers: Record<string, string> = {}): UpstreamAnswer => ({ status, headers, body: json === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(json)) });
    const upstreams = {
      async fetch(path: string, options: { method?: string } = {}): Promise<UpstreamAnswer> {
        const method = options.method ?? 'GET';
        seen.push(`${method} ${path}`);
        if (path.startsWith('/v2/app/tags/list')) return answer(200, { name: 'app', tags: ['v1'] });
        if (path === '/v2/app/manifests/v1') return answer(200, undefined, { 'docker-content-digest': `sha256:${'b'.repeat(64)}` });
        if (path !== `/v2/app/manifests/${digest}`) return answer(404);
        if (method === 'DELETE') return answer(202);
        return { status: 200, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': digest }, body };
      },
    } as unknown as UpstreamPool;
    return { upstreams, seen };
  }

  const authorizer = (immutable: boolean): Authorizer => ({
    grant: (_identity, requested) => requested.map((access) => ({ ...access })),
    allowsAnonymous: () => true,
    isImmutableTag: () => immutable,
    hasImmutableTags: () => immutable,
  });

  async function deleteWhileLockHeld(immutable: boolean) {
    const { upstreams, seen } = fakeRegistry();
    const deleter = createDeleter({ upstreams, authorizer: authorizer(immutable), logger: pino({ level: 'silent' }), store: new ManifestStore({ upstreams }), onDeleted: () => undefined });
    // What an API push of an immutable tag to `app` holds while it checks and forwards.
    const release = await keyedLock('immutable-tags').acquire('app', 1000);
    const outcome = deleter.deleteManifest({ identity: { user: 'alice' } }, 'app', digest);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const beforeRelease = [...seen];
    release();
    return { outcome: await outcome, beforeRelease, seen };
  }

  test('where immutable-tag rules cover the repository, waits for the lock the API holds before touching the registry', async () => {
    const { outcome, beforeRelease, seen } = await deleteWhileLockHeld(true);
    assert.deepEqual(beforeRelease, [], 'nothing reached the registry while the API held the lock');
    assert.deepEqual(outcome, { ok: true });
    assert.ok(seen.includes(`DELETE /v2/app/manifests/${digest}`));
    assert.ok(seen.some((line) => line.startsWith('GET /v2/app/tags/list')), 'the immutable tags were checked');
  });

  test('elsewhere, does not wait for it', async () => {
    const { outcome, beforeRelease } = await deleteWhileLockHeld(false);
    assert.ok(beforeRelease.includes(`DELETE /v2/app/manifests/${digest}`), 'deleted without waiting');
    assert.deepEqual(outcome, { ok: true });
  });
});
