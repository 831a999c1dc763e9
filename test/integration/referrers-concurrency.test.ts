// Referrers pushed at once through two gateways in front of one registry, on the filesystem and on Swift: every one ends up listed.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { fetchToken, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { artifact, Client, digests, emptyBlob, raceReport, sbomType, signatureType } from '../helpers/referrers.js';
import { startComposeRegistry, startSwift, type ComposeRegistry, type SwiftServer } from '../helpers/swift.js';

const access = `
rules:
  - users: [authenticated]
    repositories: ["{user}/**"]
    actions: ["*"]
`;

describe('referrers pushed at once through two gateways in front of one registry', () => {
  let first: TestGateway;
  let second: TestGateway;
  let clients: Client[];
  const repository = 'alice/race';

  before(async () => {
    first = await startTestGateway({ auth: 'token', users: { alice: 'alice-password' }, access });
    second = await startTestGateway({ auth: 'token', users: { alice: 'alice-password' }, access, upstream: first.registry!.url });
    clients = [];
    for (const gw of [first, second]) clients.push(new Client(gw, await fetchToken(gw, 'alice', 'alice-password', [`repository:${repository}:pull,push,delete`])));
    await clients[0]!.api.uploadBlob(repository, emptyBlob);
  });
  after(async () => {
    await second?.close();
    await first?.close();
  });

  test('every referrer ends up listed, in the API of both gateways and in the fallback tag', async (t) => {
    for (const round of [1, 2, 3, 4]) {
      const image = await clients[0]!.subject(repository, `round-${round}`);
      const referrers = [1, 2, 3, 4, 5, 6].map((n) => artifact(image, { artifactType: n % 2 ? sbomType : signatureType, annotations: { round: String(round), n: String(n) } }));
      const answers = await Promise.all(referrers.map((referrer, n) => clients[n % 2]!.pushReferrer(repository, referrer)));
      for (const answer of answers) {
        assert.equal(answer.status, 201, answer.body);
        assert.equal(answer.headers['oci-subject'], image.digest);
      }
      const expected = digests(referrers.map((referrer) => referrer.descriptor));
      for (const client of clients) assert.deepEqual(digests(await client.listed(repository, image.digest)), expected, `round ${round}`);
      assert.deepEqual(digests((await clients[1]!.fallback(repository, image.digest))!.manifests as { digest: string }[]), expected);
      assert.equal((await clients[0]!.listed(repository, image.digest, `?artifactType=${encodeURIComponent(sbomType)}`)).length, 3);
    }
    t.diagnostic(raceReport([first, second]));
  });
});

describe('referrers on a registry storing on Swift, through two gateways', () => {
  let swift: SwiftServer;
  let work: string;
  let registry: ComposeRegistry;
  let gateways: TestGateway[] = [];
  let clients: Client[];
  const repository = 'alice/app';

  before(async () => {
    swift = await startSwift();
    work = await mkdtemp(path.join(os.tmpdir(), 'referrers-swift-'));
    const configFile = path.join(work, 'config.yml');
    const swiftStorage = { authurl: swift.authUrl, username: swift.user, password: swift.key, container: `registry-${randomBytes(4).toString('hex')}`, authversion: 1 };
    await writeFile(configFile, stringify({
      version: '0.1',
      log: { level: 'info', accesslog: { disabled: true } },
      storage: { swift: swiftStorage, delete: { enabled: true }, redirect: { disable: true } },
      http: { addr: '127.0.0.1:5000', secret: randomBytes(16).toString('hex') },
    }));
    registry = await startComposeRegistry({ configFile, environment: {} });
    gateways = [await startTestGateway({ upstream: registry.url, access }), await startTestGateway({ upstream: registry.url, access })];
    clients = [];
    for (const gw of gateways) clients.push(new Client(gw, await fetchToken(gw, 'alice', 'alice-password', [`repository:${repository}:pull,push,delete`])));
    await clients[0]!.api.uploadBlob(repository, emptyBlob);
  });
  after(async () => {
    for (const gw of gateways) await gw.close();
    await registry?.stop();
    await swift?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('referrers pushed at once are all listed; one deleted by digest leaves the list', async (t) => {
    const image = await clients[0]!.subject(repository, 'v1');
    const referrers = [1, 2, 3, 4].map((n) => artifact(image, { artifactType: n % 2 ? sbomType : signatureType, annotations: { n: String(n) } }));
    const answers = await Promise.all(referrers.map((referrer, n) => clients[n % 2]!.pushReferrer(repository, referrer)));
    for (const answer of answers) assert.equal(answer.headers['oci-subject'], image.digest, `${answer.status} ${answer.body}`);
    const expected = digests(referrers.map((referrer) => referrer.descriptor));
    assert.deepEqual(digests(await clients[1]!.listed(repository, image.digest)), expected);
    assert.deepEqual(digests((await clients[0]!.fallback(repository, image.digest))!.manifests as { digest: string }[]), expected);

    const deleted = await clients[1]!.api.deleteManifest(repository, referrers[0]!.descriptor.digest);
    assert.equal(deleted.status, 202, deleted.body);
    assert.deepEqual(digests(await clients[0]!.listed(repository, image.digest)), expected.filter((digest) => digest !== referrers[0]!.descriptor.digest));
    assert.deepEqual(digests(await clients[0]!.listed(repository, image.digest, `?artifactType=${signatureType}`)), digests([referrers[1]!, referrers[3]!].map((r) => r.descriptor)));
    t.diagnostic(raceReport(gateways));
  });
});
