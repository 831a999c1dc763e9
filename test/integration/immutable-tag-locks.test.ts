// Immutable tags when the registry fails or clients leave: deletes fail closed, and the per-repository lock never leaks.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import https from 'node:https';
import type { Response } from 'express';
import { after, before, beforeEach, describe, test } from 'node:test';
import { RegistryError } from '../../src/errors.js';
import { KeyedLock, runHoldingUntilResponseEnds } from '../../src/registry/tag-locks.js';
import { fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { FakeRegistry } from '../helpers/fake-registry.js';

const access = `
rules:
  - users: [authenticated]
    repositories: ["{user}/**"]
    actions: ["*"]
immutable_tags:
  - repositories: ["alice/**"]
    tags: [semver]
`;

const digestOf = (body: string) => `sha256:${createHash('sha256').update(body).digest('hex')}`;
const target = digestOf('the manifest being deleted');

describe('immutable tags with a failing registry (fake upstream)', () => {
  let fake: FakeRegistry;
  let gw: TestGateway;
  let token: string;
  const auth = () => ({ Authorization: `Bearer ${token}` });
  const put = (tag: string, body: string) => request(gw, 'PUT', `/v2/alice/app/manifests/${tag}`, { headers: { ...auth(), 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }, body });
  const deleteTarget = () => request(gw, 'DELETE', `/v2/alice/app/manifests/${target}`, { headers: auth() });

  before(async () => {
    fake = await FakeRegistry.start();
    gw = await startTestGateway({ upstream: fake.url, users: { alice: 'alice-password' }, access });
    token = await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/app:pull,push,delete']);
  });
  after(async () => {
    await gw?.close();
    await fake?.close();
  });
  beforeEach(() => {
    fake.seen.length = 0;
    fake.tags.clear();
    fake.tagList = undefined;
    fake.headStatus = undefined;
    fake.cutPutOf = undefined;
    fake.holdPutOf = undefined;
  });

  test('a delete by digest is refused with 503 when the tags cannot be read, and goes through once they can', async () => {
    fake.tagList = 500;
    const noList = await deleteTarget();
    assert.equal(noList.status, 503, noList.body);
    assert.equal(noList.json().errors[0].code, 'UNAVAILABLE');

    fake.tagList = undefined;
    fake.tags.set('1.0.0', digestOf('another manifest'));
    fake.headStatus = 500;
    const noHead = await deleteTarget();
    assert.equal(noHead.status, 503, noHead.body);
    assert.equal(fake.count('DELETE '), 0, 'nothing was deleted while in doubt');

    fake.headStatus = undefined;
    const allowed = await deleteTarget();
    assert.equal(allowed.status, 202, allowed.body);
    assert.equal(fake.count('DELETE '), 1);
  });

  test('a paginated tag list is read to the end: an immutable tag on a later page still protects its manifest', async () => {
    fake.tags.set('latest', target);
    fake.tags.set('1.0.0', digestOf('another manifest'));
    fake.tags.set('2.0.0', target);
    fake.tagList = new Map([
      ['', { tags: ['latest', '1.0.0'], next: '1.0.0' }],
      ['1.0.0', { tags: ['2.0.0'] }],
    ]);
    const refused = await deleteTarget();
    assert.equal(refused.status, 403, refused.body);
    assert.equal(refused.json().errors[0].message, 'manifest is tagged 2.0.0, an immutable tag; it cannot be deleted');
    assert.equal(fake.count('/tags/list?n=1000&last=1.0.0'), 1);
    assert.equal(fake.count('HEAD /v2/alice/app/manifests/latest'), 0, 'mutable tags are not looked up');
    assert.equal(fake.count('DELETE '), 0);
  });

  test('a push of an immutable tag waits for the one before it; a mutable tag push does not', async () => {
    fake.holdPutOf = '4.0.0';
    const first = put('4.0.0', 'first');
    await fake.waitFor('PUT /v2/alice/app/manifests/4.0.0');
    const second = put('4.0.0', 'second');
    assert.equal((await put('latest', 'mutable')).status, 201, 'a mutable tag is pushed while the immutable one is held');
    assert.equal(fake.count('HEAD /v2/alice/app/manifests/4.0.0'), 1, 'the second push has not checked the tag yet');
    fake.releaseHeld();
    assert.equal((await first).status, 201);
    const refused = await second;
    assert.equal(refused.status, 403, refused.body);
    assert.equal(fake.tags.get('4.0.0'), digestOf('first'));
    assert.equal(fake.count('PUT /v2/alice/app/manifests/4.0.0'), 1);
  });

  test('the lock is released when the registry cuts the push off, and when the client hangs up mid-push', async () => {
    fake.cutPutOf = '5.0.0';
    const cut = await put('5.0.0', 'cut off').catch((error: Error) => error);
    assert.ok(cut instanceof Error || cut.status >= 500, `the client learns it failed: ${cut instanceof Error ? cut.message : cut.status}`);
    fake.cutPutOf = undefined;
    assert.equal((await put('5.0.0', 'after the cut')).status, 201);

    fake.holdPutOf = '6.0.0';
    const [hostname, port] = gw.host.split(':') as [string, string];
    const abandoned = https.request({ hostname, port: Number(port), method: 'PUT', path: '/v2/alice/app/manifests/6.0.0', ca: gw.ca, agent: false, headers: { ...auth(), 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
    abandoned.on('error', () => {});
    abandoned.end('abandoned');
    await fake.waitFor('PUT /v2/alice/app/manifests/6.0.0');
    abandoned.destroy();
    // The registry has not answered the abandoned PUT: only the client's hang-up can have freed the lock.
    const next = await put('6.0.0', 'abandoned');
    assert.equal(next.status, 201, next.body);
    fake.releaseHeld();
  });
});

function fakeResponse() {
  const res = Object.assign(new EventEmitter(), { writableFinished: false, destroyed: false, closed: false });
  return { res, asResponse: res as unknown as Response };
}

describe('KeyedLock and holding it until the response ends', () => {
  test('one holder per key, first come first served; other keys never wait; nothing left once all are released', async () => {
    const locks = new KeyedLock();
    const order: string[] = [];
    const releaseA = await locks.acquire('repo', 1000);
    const waiting = ['b', 'c'].map(async (name) => {
      const release = await locks.acquire('repo', 60_000);
      order.push(name);
      release();
    });
    const releaseOther = await locks.acquire('other', 1000);
    order.push('other');
    releaseOther();
    order.push('a');
    releaseA();
    releaseA();
    await Promise.all(waiting);
    assert.deepEqual(order, ['other', 'a', 'b', 'c']);
    assert.equal(locks.size, 0);
  });

  test('a waiter that gives up gets UNAVAILABLE, and its turn passes on to those behind it', async () => {
    const locks = new KeyedLock();
    const release = await locks.acquire('repo', 1000);
    await assert.rejects(locks.acquire('repo', 1), (error: unknown) => error instanceof RegistryError && error.code === 'UNAVAILABLE');
    const behind = locks.acquire('repo', 60_000);
    release();
    (await behind)();
    assert.equal(locks.size, 0);
  });

  test('released on every path: check fails, client already gone, forward throws, response closes or finishes', async () => {
    const locks = new KeyedLock();
    let forwarded = 0;
    const forward = () => void forwarded++;

    await assert.rejects(runHoldingUntilResponseEnds(locks, 'r', 1000, fakeResponse().asResponse, () => Promise.reject(new RegistryError('DENIED', 'no')), forward));
    assert.equal(locks.size, 0);

    const gone = fakeResponse();
    gone.res.closed = true;
    await runHoldingUntilResponseEnds(locks, 'r', 1000, gone.asResponse, async () => {}, forward);
    assert.equal(locks.size, 0);

    const leavesDuringCheck = fakeResponse();
    await runHoldingUntilResponseEnds(locks, 'r', 1000, leavesDuringCheck.asResponse, async () => void (leavesDuringCheck.res.destroyed = true), forward);
    assert.equal(locks.size, 0);
    assert.equal(forwarded, 0, 'nothing is sent for a client that is gone');

    await assert.rejects(runHoldingUntilResponseEnds(locks, 'r', 1000, fakeResponse().asResponse, async () => {}, () => { throw new Error('bad host'); }));
    assert.equal(locks.size, 0);

    for (const event of ['close', 'finish']) {
      const answered = fakeResponse();
      await runHoldingUntilResponseEnds(locks, 'r', 1000, answered.asResponse, async () => {}, forward);
      assert.equal(locks.size, 1, 'held while the registry answers');
      answered.res.emit(event);
      assert.equal(locks.size, 0, `released on ${event}`);
    }
    assert.equal(forwarded, 2);
  });
});
