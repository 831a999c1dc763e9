// Unit tests: the web UI's catalog snapshot (pages of 1000, one read for concurrent views, new repositories noticed) and its search order.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { UpstreamAnswer, UpstreamPool } from '../src/registry/upstreams.js';
import { before, CatalogIndex, searchNames } from '../src/ui/browse/catalog-index.js';
import { RegistryUnavailable } from '../src/ui/browse/model.js';

const logger = pino({ level: 'silent' });

/** A registry catalog that pages like registry 2.8 (n and last, Link while more follow), counting requests. */
function fakeCatalog(names: string[]) {
  const state = { requests: 0, names, fail: false };
  const pool = {
    async fetch(path: string): Promise<UpstreamAnswer> {
      state.requests++;
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (state.fail) throw Object.assign(new Error('refused'), { code: 'ECONNREFUSED' });
      const query = new URL(path, 'http://registry.invalid').searchParams;
      const n = Number(query.get('n'));
      const last = query.get('last') ?? '';
      const sorted = [...state.names].sort();
      const page = sorted.filter((name) => name > last).slice(0, n);
      const more = sorted.length > 0 && page.length > 0 && page[page.length - 1] !== sorted[sorted.length - 1];
      return { status: 200, headers: more ? { link: '<next>; rel="next"' } : {}, body: Buffer.from(JSON.stringify({ repositories: page })) };
    },
  };
  return { pool: pool as unknown as UpstreamPool, state };
}

describe('CatalogIndex', () => {
  it('reads every page of 1000, once for concurrent views, and keeps the snapshot while fresh', async () => {
    const names = Array.from({ length: 2500 }, (_, i) => `repo-${String(i).padStart(5, '0')}`);
    const { pool, state } = fakeCatalog(names);
    let now = 0;
    // Bounds left undefined (as the reader passes them when not configured) take their defaults.
    const index = new CatalogIndex({ upstreams: pool, logger, now: () => now, freshMs: undefined, staleMs: undefined });
    const [a, b, c] = await Promise.all([index.names(), index.names(), index.names()]);
    assert.equal(a.length, 2500);
    assert.equal(b, a);
    assert.equal(c, a);
    assert.equal(state.requests, 3);
    now += 1000;
    await index.names();
    assert.equal(state.requests, 3);
  });

  it('adds a pushed repository at once, without reading the catalog again, also to a read under way', async () => {
    const { pool, state } = fakeCatalog(['a', 'b', 'b/x']);
    const index = new CatalogIndex({ upstreams: pool, logger, now: () => 0 });
    await index.names();
    index.noteRepository('a');
    state.names.push('a/c');
    index.noteRepository('a/c');
    index.noteRepository('NOT VALID');
    assert.deepEqual(await index.names(), ['a', 'a/c', 'b', 'b/x']);
    assert.equal(state.requests, 1);

    const { pool: slow, state: slowState } = fakeCatalog(['m']);
    const reading = new CatalogIndex({ upstreams: slow, logger, now: () => 0 });
    const pending = reading.names();
    // Pushed after the registry listed its page: the read under way would miss it.
    reading.noteRepository('n');
    assert.deepEqual(await pending, ['m', 'n']);
    assert.equal(slowState.requests, 1);
  });

  it('follows the registry\'s order, in which "/" comes before every other character', async () => {
    assert.ok(before('a/b', 'a-b'));
    assert.ok(before('a', 'a/b'));
    const names = Array.from({ length: 2500 }, (_, i) => (i < 1200 ? `ns/app-${i}` : `ns-x/app-${i}`));
    const pool = {
      async fetch(path: string): Promise<UpstreamAnswer> {
        const query = new URL(path, 'http://registry.invalid').searchParams;
        const last = query.get('last') ?? '';
        const sorted = [...names].sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0));
        const page = sorted.filter((name) => last === '' || before(last, name)).slice(0, Number(query.get('n')));
        const more = page[page.length - 1] !== sorted[sorted.length - 1];
        return { status: 200, headers: more ? { link: '<next>' } : {}, body: Buffer.from(JSON.stringify({ repositories: page })) };
      },
    } as unknown as UpstreamPool;
    assert.equal((await new CatalogIndex({ upstreams: pool, logger, now: () => 0 }).names()).length, 2500, 'every page is followed');
  });

  it('throws RegistryUnavailable when the registry does not answer and no usable snapshot exists', async () => {
    const { pool, state } = fakeCatalog(['a']);
    let now = 0;
    const index = new CatalogIndex({ upstreams: pool, logger, now: () => now, freshMs: 10, staleMs: 100 });
    state.fail = true;
    await assert.rejects(index.names(), RegistryUnavailable);
    state.fail = false;
    await index.names();
    state.fail = true;
    now = 50;
    assert.deepEqual(await index.names(), ['a'], 'a stale snapshot is served while the refresh fails');
    now = 500;
    await assert.rejects(index.names(), RegistryUnavailable);
  });

  it('skips names it could not route and refuses a malformed catalog', async () => {
    const pool = { fetch: async () => ({ status: 200, headers: {}, body: Buffer.from('{"repositories":["ok/one","../etc","UPPER",5]}') }) } as unknown as UpstreamPool;
    assert.deepEqual(await new CatalogIndex({ upstreams: pool, logger, now: () => 0 }).names(), ['ok/one']);
    const broken = { fetch: async () => ({ status: 200, headers: {}, body: Buffer.from('<html>') }) } as unknown as UpstreamPool;
    await assert.rejects(new CatalogIndex({ upstreams: broken, logger, now: () => 0 }).names(), RegistryUnavailable);
    const failing = { fetch: async () => ({ status: 500, headers: {}, body: Buffer.from('') }) } as unknown as UpstreamPool;
    await assert.rejects(new CatalogIndex({ upstreams: failing, logger, now: () => 0 }).names(), RegistryUnavailable);
  });
});

describe('searchNames', () => {
  const names = ['alpha/app', 'app/web', 'apps', 'team/app-x', 'team/myapp', 'zeta/happy', 'secret/app'];
  const visible = (name: string) => !name.startsWith('secret/');

  it('lists prefix matches first, then path components starting with it, then other substrings', () => {
    assert.deepEqual(searchNames(names, 'app', visible), ['app/web', 'apps', 'alpha/app', 'team/app-x', 'team/myapp', 'zeta/happy']);
  });

  it('never lists what the viewer may not see, searched or not', () => {
    assert.ok(!searchNames(names, 'secret', visible).length);
    assert.ok(!searchNames(names, '', visible).includes('secret/app'));
    assert.deepEqual(searchNames(names, '  APP/W ', visible), ['app/web']);
  });
});
