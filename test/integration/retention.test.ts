// `gateway retention` on a real registry: a dry run lists what would go and deletes nothing; a real run deletes exactly those tags, never an immutable one or a manifest a kept tag names.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fetchToken, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { ociConfigMediaType, ociManifestMediaType } from '../helpers/oci-image.js';
import { RegistryApi, sha256 } from '../helpers/registry-api.js';
import { runCli } from '../helpers/run-cli.js';

const repository = 'app/web';
const dayMs = 24 * 3600 * 1000;

const access = `
rules:
  - users: [authenticated]
    repositories: ["**"]
    actions: ["*"]
immutable_tags:
  - repositories: ["app/**"]
    tags: ["v*"]
`;

const config = `
retention:
  - repositories: ["app/web"]
    tags: [latest]
  - repositories: ["app/**"]
    tags: ["v*", "build-*"]
    keep_newest: 2
    older_than_days: 30
`;

/** Pushes an image whose config says it was created `daysAgo` days ago (undefined: no date), under `tags`. */
async function pushImage(api: RegistryApi, daysAgo: number | undefined, tags: string[]): Promise<{ digest: string; config: string }> {
  const created = daysAgo === undefined ? {} : { created: new Date(Date.now() - daysAgo * dayMs).toISOString() };
  const configBlob = await api.uploadBlob(repository, Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', ...created, rootfs: { type: 'layers', diff_ids: [] }, note: randomBytes(8).toString('hex') })));
  const layer = await api.uploadBlob(repository, randomBytes(2048));
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifestMediaType,
      config: { mediaType: ociConfigMediaType, ...configBlob },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
    }),
  );
  for (const tag of tags) {
    const put = await api.putManifest(repository, tag, body);
    assert.equal(put.status, 201, put.body);
  }
  return { digest: sha256(body), config: configBlob.digest };
}

describe('gateway retention', () => {
  let gw: TestGateway;
  let api: RegistryApi;
  const digests = new Map<string, { digest: string; config: string }>();
  let env: Record<string, string>;
  const tagsNow = async () => {
    const names = ['latest', 'build-1', 'build-2', 'build-3', 'build-4', 'build-5', 'build-x', 'v1.0.0', 'nightly'];
    const present: string[] = [];
    for (const name of names) if ((await api.digestOf(repository, name)) !== undefined) present.push(name);
    return present;
  };

  before(async () => {
    gw = await startTestGateway({ users: { alice: 'alice-password' }, access, config });
    api = new RegistryApi(gw, await fetchToken(gw, 'alice', 'alice-password', [`repository:${repository}:pull,push,delete`]));
    digests.set('build-1', await pushImage(api, 100, ['build-1', 'nightly']));
    digests.set('build-2', await pushImage(api, 90, ['build-2']));
    digests.set('build-3', await pushImage(api, 60, ['build-3']));
    digests.set('build-4', await pushImage(api, 10, ['build-4']));
    digests.set('build-5', await pushImage(api, 1, ['build-5', 'latest']));
    digests.set('build-x', await pushImage(api, undefined, ['build-x']));
    digests.set('v1.0.0', await pushImage(api, 200, ['v1.0.0']));
    const dataDir = path.join(gw.dir, 'registry-data');
    env = { GATEWAY_UPSTREAM: gw.registry!.url, GATEWAY_REGISTRY_CONFIG: path.join(dataDir, 'registry.yml'), GATEWAY_REGISTRY_BIN: '/usr/bin/docker-registry' };
  });
  after(async () => {
    await gw?.close();
  });

  test('--dry-run lists what would go, by creation date, and deletes nothing', async () => {
    const run = await runCli(['retention', '--dry-run', '--verbose', '--config', 'gateway.yaml'], { cwd: gw.dir, env });
    assert.equal(run.code, 0, run.stderr);
    const deleting = [...run.stdout.matchAll(/^ {2}delete app\/web:(\S+)/gm)].map((match) => match[1]).sort();
    assert.deepEqual(deleting, ['build-1', 'build-2', 'build-3']);
    assert.match(run.stdout, /keep {3}app\/web:build-5 {2}one of the newest 2; newest #1, created /);
    assert.match(run.stdout, /keep {3}app\/web:build-4 {2}one of the newest 2; newest #2/);
    assert.match(run.stdout, /keep {3}app\/web:build-x {2}its image has no creation date/);
    assert.match(run.stdout, /delete app\/web:build-3 {2}older than 30 days; newest #3, created .* \(60 days ago\)/);
    assert.match(run.stdout, /keep {3}app\/web:latest {2}the rule keeps every tag/);
    assert.doesNotMatch(run.stdout, /v1\.0\.0|nightly/, 'immutable tags and tags no rule covers are not governed');
    assert.match(run.stdout, /dry run: would delete 3 of 7 tags the rules govern in 1 repositories \(4 kept\), and 2 manifests no tag would name any more/);
    const manifests = [...run.stdout.matchAll(/^manifest app\/web@(sha256:[a-f0-9]+): no tag left \((\S+)\), deleted too$/gm)].map((match) => [match[2], match[1]]);
    assert.deepEqual(Object.fromEntries(manifests), { 'build-2': digests.get('build-2')!.digest, 'build-3': digests.get('build-3')!.digest }, 'build-1 stays: nightly names it');
    assert.deepEqual(await tagsNow(), ['latest', 'build-1', 'build-2', 'build-3', 'build-4', 'build-5', 'build-x', 'v1.0.0', 'nightly']);
  });

  test('a real run deletes those tags only; a manifest another tag names stays; gc then frees the rest', async () => {
    const run = await runCli(['retention', '--gc', '--config', 'gateway.yaml'], { cwd: gw.dir, env });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /deleted 3 of 3 tags and 2 manifests no tag names any more \(4 tags kept\)/);
    assert.deepEqual(await tagsNow(), ['latest', 'build-4', 'build-5', 'build-x', 'v1.0.0', 'nightly']);
    assert.equal(await api.digestOf(repository, 'nightly'), digests.get('build-1')!.digest, 'deleting build-1 left nightly, which names the same manifest');
    assert.equal(await api.digestOf(repository, digests.get('build-1')!.digest), digests.get('build-1')!.digest);

    assert.match(run.stdout, /removed \d+ blobs/, 'then the collection ran');
    const blob = (digest: string) => path.join(gw.dir, 'registry-data', 'registry', 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data');
    for (const gone of ['build-2', 'build-3']) {
      assert.ok(!existsSync(blob(digests.get(gone)!.digest)), `${gone}'s manifest is collected`);
      assert.ok(!existsSync(blob(digests.get(gone)!.config)), `${gone}'s config is collected`);
    }
    for (const kept of ['build-1', 'build-4', 'v1.0.0']) assert.ok(existsSync(blob(digests.get(kept)!.digest)), `${kept}'s manifest stays`);
  });

  test('no rules: the command says where they go', async () => {
    const run = await runCli(['retention', '--dry-run'], { cwd: gw.dir, env });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /no retention rules: add a `retention:` list to the settings file/);
  });
});
