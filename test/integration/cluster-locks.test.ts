// Immutable tags with two workers: pushes of one tag take turns across workers, as in one process, so the second cannot move the tag the first pushed.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fetchToken, request, type TestGateway } from '../helpers/gateway.js';
import { FakeRegistry } from '../helpers/fake-registry.js';
import { eventually } from '../helpers/processes.js';
import { runCli } from '../helpers/run-cli.js';
import { ServedGateway } from '../helpers/served.js';

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

describe('immutable tags with two workers (fake upstream)', () => {
  let dir: string;
  let fake: FakeRegistry;
  let served: ServedGateway;
  let gw: Pick<TestGateway, 'host' | 'ca' | 'url'>;
  let token: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cluster-locks-'));
    fake = await FakeRegistry.start();
    await writeFile(path.join(dir, 'access.yml'), access);
    const added = await runCli(['user', 'add', 'alice', '--password-stdin', '--cost', '4'], { cwd: dir, input: 'alice-password' });
    assert.equal(added.code, 0, added.stderr);
    served = new ServedGateway(dir, { GATEWAY_WORKERS: '2', GATEWAY_LISTEN: '127.0.0.1:0', GATEWAY_METRICS_LISTEN: '', GATEWAY_SHUTDOWN_GRACE: '1', GATEWAY_UPSTREAM: fake.url });
    const listening = await served.waitFor((entry) => entry.msg === 'gateway listening');
    const host = `localhost:${new URL(listening.url).port}`;
    gw = { host, url: `https://${host}`, ca: await readFile(path.join(dir, 'certs', 'ca.crt')) };
    token = await fetchToken(gw as TestGateway, 'alice', 'alice-password', ['repository:alice/app:pull,push,delete']);
  });
  after(async () => {
    await served?.stop();
    await fake?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a push of an immutable tag on one worker waits for the one in flight on the other; the second is refused', { timeout: 60_000 }, async () => {
    const put = (tag: string, body: string) => request(gw, 'PUT', `/v2/alice/app/manifests/${tag}`, { headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }, body });
    const from = served.mark();
    fake.holdPutOf = '4.0.0';
    const first = put('4.0.0', 'first');
    await fake.waitFor('PUT /v2/alice/app/manifests/4.0.0');
    const second = put('4.0.0', 'second');
    assert.equal((await put('latest', 'mutable')).status, 201, 'a mutable tag is pushed meanwhile');
    assert.equal(fake.count('HEAD /v2/alice/app/manifests/4.0.0'), 1, 'the second push has not checked the tag yet');
    fake.releaseHeld();
    assert.equal((await first).status, 201);
    const refused = await second;
    assert.equal(refused.status, 403, refused.body);
    assert.equal(fake.tags.get('4.0.0'), digestOf('first'));
    assert.equal(fake.count('PUT /v2/alice/app/manifests/4.0.0'), 1);
    const putsOfTag = () => served.requests(from).filter((entry) => entry.method === 'PUT' && entry.path === '/v2/alice/app/manifests/4.0.0');
    assert.ok(await eventually(() => putsOfTag().length === 2), 'both pushes are logged');
    const puts = putsOfTag();
    assert.notEqual(puts[0]!.worker, puts[1]!.worker, 'the two pushes went to different workers');
  });
});
