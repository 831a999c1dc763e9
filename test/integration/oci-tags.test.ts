// OCI 1.1 tag lists on registry 2.8 through the gateway: sorted in byte order, paged by n and last with Link headers, 10,000 tags, skopeo list-tags.

import assert from 'node:assert/strict';
import https from 'node:https';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { RegistryApi } from '../helpers/registry-api.js';
import { skopeoLogin } from '../helpers/skopeo.js';
import { ociManifestMediaType } from '../helpers/oci-image.js';
import { sortTags } from '../../src/registry/tag-list.js';

const run = promisify(execFile);

const access = `
rules:
  - users: [alice]
    repositories: ["alice/**"]
    actions: ["*"]
  - users: [bob]
    repositories: ["alice/**"]
    actions: [pull, push]
`;

/** Many requests over a few kept-alive TLS connections, as a busy client sends them. */
function keptAlive(gw: TestGateway) {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 32, ca: gw.ca });
  const [hostname, port] = gw.host.split(':') as [string, string];
  const send = (method: string, target: string, headers: Record<string, string>, body?: Buffer) =>
    new Promise<number>((resolve, reject) => {
      const req = https.request({ hostname, port: Number(port), method, path: target, ca: gw.ca, agent, headers }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  return { send, close: () => agent.destroy() };
}

/** Runs `work` over `items` with at most `width` at a time. */
async function inParallel<T>(items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
}

describe('OCI 1.1 tags (real registry 2.8)', () => {
  let gw: TestGateway;
  let api: RegistryApi;
  let auth: Record<string, string>;
  const list = (name: string, query = '') => request(gw, 'GET', `/v2/${name}/tags/list${query}`, { headers: auth });
  const tagsOf = async (name: string) => ((await list(name)).json() as { tags: string[] }).tags;

  before(async () => {
    gw = await startTestGateway({ auth: 'token', users: { alice: 'alice-password', bob: 'bob-password' }, access });
    const token = await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/app:pull,push,delete', 'repository:alice/many:pull,push', 'repository:alice/emptied:pull,push,delete', 'repository:alice/nothing-here:pull']);
    api = new RegistryApi(gw, token);
    auth = { Authorization: `Bearer ${token}` };
  });
  after(() => gw?.close());

  test('the tag list is sorted in byte order; n, last and the Link header work as the spec says', async () => {
    const manifest = await api.makeManifest('alice/app', 'listing');
    const pushed = ['b', '_z', 'B', 'a-b', '0', 'a', 'a.b', 'v10', 'v9', 'V1'];
    for (const tag of pushed) assert.equal((await api.putManifest('alice/app', tag, manifest.body)).status, 201);
    const sorted = ['0', 'B', 'V1', '_z', 'a', 'a-b', 'a.b', 'b', 'v10', 'v9'];

    const all = await list('alice/app');
    assert.equal(all.status, 200);
    assert.match(String(all.headers['content-type']), /^application\/json/);
    assert.deepEqual(all.json(), { name: 'alice/app', tags: sorted });
    assert.equal(all.headers.link, undefined);

    const first = await list('alice/app', '?n=4');
    assert.deepEqual(first.json().tags, sorted.slice(0, 4));
    assert.equal(first.headers.link, '</v2/alice/app/tags/list?n=4&last=_z>; rel="next"');
    const second = await request(gw, 'GET', String(first.headers.link).slice(1, String(first.headers.link).indexOf('>')), { headers: auth });
    assert.deepEqual(second.json().tags, sorted.slice(4, 8));
    const third = await list('alice/app', '?n=4&last=b');
    assert.deepEqual(third.json().tags, ['v10', 'v9']);
    assert.equal(third.headers.link, undefined, 'no Link when nothing remains');
    const exact = await list('alice/app', '?n=10');
    assert.deepEqual(exact.json().tags, sorted);
    assert.equal(exact.headers.link, undefined);

    // last is excluded, and need not be a tag of the repository; without n every tag after it comes.
    assert.deepEqual((await list('alice/app', '?last=a')).json().tags, ['a-b', 'a.b', 'b', 'v10', 'v9']);
    assert.deepEqual((await list('alice/app', '?last=aa&n=2')).json().tags, ['b', 'v10']);
    assert.deepEqual((await list('alice/app', '?last=zzz')).json().tags, []);

    const zero = await list('alice/app', '?n=0');
    assert.equal(zero.status, 200);
    assert.deepEqual(zero.json(), { name: 'alice/app', tags: [] });
    assert.equal(zero.headers.link, undefined, 'n=0: an empty list and no Link');
  });

  test('bad n or last get the spec error format, never a 500', async () => {
    for (const query of ['?n=abc', '?n=-1', '?n=1.5', '?n=99999999999999999999', '?n=%2B1', '?n=1e3']) {
      const res = await list('alice/app', query);
      assert.equal(res.status, 400, query);
      assert.equal(res.json().errors[0].code, 'PAGINATION_NUMBER_INVALID', query);
    }
    for (const query of ['?last=-x', '?last=a%2Fb', '?last=a%20b', '?last=%00', `?last=${'x'.repeat(200)}`, '?last=sha256:abc']) {
      const res = await list('alice/app', query);
      assert.equal(res.status, 400, query);
      assert.equal(res.json().errors[0].code, 'UNSUPPORTED', query);
    }
    for (const query of ['?last=%ff', '?n=1&n=2', '?last=a;b']) {
      const res = await list('alice/app', query);
      assert.equal(res.status, 400, query);
      assert.ok(Array.isArray(res.json().errors), query);
    }
  });

  test('an unknown repository is the registry\'s 404 NAME_UNKNOWN; a repository whose tags were all deleted lists none', async () => {
    const unknown = await list('alice/nothing-here');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json().errors[0].code, 'NAME_UNKNOWN');
    const manifest = await api.makeManifest('alice/emptied', 'short-lived');
    assert.equal((await api.putManifest('alice/emptied', 'gone', manifest.body)).status, 201);
    assert.deepEqual(await tagsOf('alice/emptied'), ['gone']);
    assert.equal((await api.deleteManifest('alice/emptied', 'gone')).status, 202);
    const emptied = await list('alice/emptied');
    assert.equal(emptied.status, 200);
    assert.deepEqual(emptied.json(), { name: 'alice/emptied', tags: [] });
  });

  test('10,000 tags: every one listed once, in order, in pages of 1000 linked by Link headers', async (t) => {
    const manifest = await api.makeManifest('alice/many', 'ten thousand tags');
    const tags = Array.from({ length: 10_000 }, (_, i) => `t${(i * 7919) % 10_000}-${i % 3 === 0 ? 'x' : 'Y'}`);
    const client = keptAlive(gw);
    const started = Date.now();
    try {
      await inParallel(tags, 32, async (tag) => {
        const status = await client.send('PUT', `/v2/alice/many/manifests/${tag}`, { ...auth, 'Content-Type': ociManifestMediaType, 'Content-Length': String(manifest.body.length) }, manifest.body);
        assert.equal(status, 201, tag);
      });
    } finally {
      client.close();
    }
    t.diagnostic(`10,000 tag PUTs through the gateway, 32 at a time: ${Date.now() - started} ms`);

    const listed: string[] = [];
    let target: string | undefined = '/v2/alice/many/tags/list?n=1000';
    let pages = 0;
    const paging = Date.now();
    while (target !== undefined) {
      const page = await request(gw, 'GET', target, { headers: auth });
      assert.equal(page.status, 200, target);
      const body = page.json() as { name: string; tags: string[] };
      assert.equal(body.name, 'alice/many');
      pages++;
      listed.push(...body.tags);
      const link = page.headers.link as string | undefined;
      if (link === undefined) {
        assert.ok(body.tags.length <= 1000);
        target = undefined;
      } else {
        assert.equal(body.tags.length, 1000, 'a page with a Link is a full page');
        assert.equal(link, `</v2/alice/many/tags/list?n=1000&last=${body.tags[999]}>; rel="next"`);
        target = link.slice(1, link.indexOf('>'));
      }
      assert.ok(pages <= 11, 'paging ends');
    }
    t.diagnostic(`10 pages of 1000 read in ${Date.now() - paging} ms`);
    assert.equal(pages, 10);
    assert.deepEqual(listed, sortTags(tags), 'complete, in byte order, each tag once');
    const whole = await list('alice/many');
    assert.deepEqual(whole.json().tags, listed);
  });

  test('skopeo list-tags reads the sorted list', async () => {
    const authFile = path.join(gw.dir, 'skopeo-auth.json');
    await skopeoLogin({ host: gw.host, user: 'alice', password: 'alice-password', certDir: gw.certDir, authFile });
    const { stdout } = await run('skopeo', ['list-tags', '--authfile', authFile, '--cert-dir', gw.certDir, `docker://${gw.host}/alice/app`], { env: { ...process.env, REGISTRY_AUTH_FILE: authFile } });
    const listed = (JSON.parse(stdout) as { Tags: string[] }).Tags;
    assert.deepEqual(listed, await tagsOf('alice/app'));
    assert.deepEqual(listed, sortTags(listed));
  });
});
