// OCI 1.1 referrers through the gateway on registry 2.8: the API, the fallback tag both paths share, bad input, attachment tags under immutable rules.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { ociIndexMediaType, ociManifestMediaType } from '../helpers/oci-image.js';
import { rawExchange } from '../helpers/raw-tls.js';
import { sha256 } from '../helpers/registry-api.js';
import { artifact, Client, cosignStyle, digests, empty, emptyBlob, sbomType, signatureType } from '../helpers/referrers.js';

const access = `
rules:
  - users: [authenticated]
    repositories: ["{user}/**"]
    actions: ["*"]
immutable_tags:
  - repositories: ["alice/signed"]
    tags: ["*"]
  - repositories: ["alice/frozen"]
    tags: ["v*", "sha256-*.sig"]
  - repositories: ["alice/pinned"]
    tags: ["sha256-*"]
`;
const repositories = ['alice/app', 'alice/other', 'alice/signed', 'alice/frozen', 'alice/pinned'];
const scopes = [...repositories, 'alice/never-pushed'].map((name) => `repository:${name}:pull,push,delete`);

describe('referrers API through the gateway (registry 2.8)', () => {
  let gw: TestGateway;
  let alice: Client;

  before(async () => {
    gw = await startTestGateway({ auth: 'token', users: { alice: 'alice-password' }, access });
    alice = new Client(gw, await fetchToken(gw, 'alice', 'alice-password', scopes));
    for (const repository of repositories) assert.equal((await alice.api.uploadBlob(repository, emptyBlob)).digest, empty.digest);
  });
  after(() => gw?.close());

  test('two referrers of an image: OCI-Subject on each push, both listed with artifactType and annotations, the fallback tag the same', async () => {
    const repository = 'alice/app';
    const image = await alice.subject(repository, 'v1');
    const sbom = artifact(image, { artifactType: sbomType, annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z', format: 'spdx' } });
    const configType = 'application/vnd.example.signature.config.v1+json';
    const config = await alice.api.uploadBlob(repository, Buffer.from('{"signer":"alice"}'));
    const signature = artifact(image, { config: { mediaType: configType, ...config } });

    for (const referrer of [sbom, signature]) {
      const pushed = await alice.pushReferrer(repository, referrer);
      assert.equal(pushed.status, 201, pushed.body);
      assert.equal(pushed.headers['oci-subject'], image.digest);
      assert.equal(pushed.headers['docker-content-digest'], referrer.descriptor.digest);
    }

    const res = await alice.referrers(repository, image.digest);
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['content-type'], ociIndexMediaType);
    assert.equal(res.headers['oci-filters-applied'], undefined);
    const expected = [
      { ...sbom.descriptor, artifactType: sbomType, annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z', format: 'spdx' } },
      { ...signature.descriptor, artifactType: configType },
    ];
    assert.deepEqual(res.json(), { schemaVersion: 2, mediaType: ociIndexMediaType, manifests: expected });

    const fallback = await alice.fallback(repository, image.digest);
    assert.deepEqual(fallback, { schemaVersion: 2, mediaType: ociIndexMediaType, manifests: expected }, 'a pre-1.1 client reads the same list from sha256-<hex>');

    // Pushed again (a retried push): listed once.
    assert.equal((await alice.pushReferrer(repository, sbom)).headers['oci-subject'], image.digest);
    assert.deepEqual(digests(await alice.listed(repository, image.digest)), digests(expected));
    // A manifest without subject gets no OCI-Subject and changes no list.
    const plain = await alice.api.makeManifest(repository, 'no subject');
    const put = await alice.put(repository, 'plain', plain.body);
    assert.equal(put.status, 201);
    assert.equal(put.headers['oci-subject'], undefined);
  });

  test('artifactType filter: only that type, with OCI-Filters-Applied; a type with + needs %2B as in any query', async () => {
    const repository = 'alice/app';
    const image = await alice.subject(repository, 'filtered');
    const sbom = artifact(image, { artifactType: sbomType });
    const signature = artifact(image, { artifactType: signatureType });
    for (const referrer of [sbom, signature]) assert.equal((await alice.pushReferrer(repository, referrer)).status, 201);

    const res = await alice.referrers(repository, image.digest, `?artifactType=${encodeURIComponent(sbomType)}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['oci-filters-applied'], 'artifactType');
    assert.deepEqual(digests(res.json().manifests), [sbom.descriptor.digest]);
    assert.deepEqual(digests(await alice.listed(repository, image.digest, `?artifactType=${signatureType}`)), [signature.descriptor.digest]);
    const none = await alice.referrers(repository, image.digest, '?artifactType=application/vnd.example.none');
    assert.equal(none.headers['oci-filters-applied'], 'artifactType');
    assert.deepEqual(none.json().manifests, []);
  });

  test('deleting a referrer by digest takes it off the list and the fallback tag; deleting another tag of it does not', async () => {
    const repository = 'alice/app';
    const image = await alice.subject(repository, 'deletes');
    const kept = artifact(image, { artifactType: sbomType, annotations: { n: 'kept' } });
    const gone = artifact(image, { artifactType: sbomType, annotations: { n: 'gone' } });
    for (const referrer of [kept, gone]) assert.equal((await alice.pushReferrer(repository, referrer)).status, 201);
    assert.equal((await alice.put(repository, 'kept-tag', kept.body)).status, 201);
    assert.equal((await alice.api.deleteManifest(repository, 'kept-tag')).status, 202);

    const deleted = await alice.api.deleteManifest(repository, gone.descriptor.digest);
    assert.equal(deleted.status, 202, deleted.body);
    assert.deepEqual(digests(await alice.listed(repository, image.digest)), [kept.descriptor.digest]);
    assert.deepEqual(digests((await alice.fallback(repository, image.digest))!.manifests as { digest: string }[]), [kept.descriptor.digest]);
    assert.equal(await alice.api.digestOf(repository, gone.descriptor.digest), undefined);
  });

  test('a digest nothing refers to, or nothing has: 200 and an empty index; so for an unknown repository', async () => {
    const unknown = `sha256:${'0'.repeat(64)}`;
    for (const repository of ['alice/app', 'alice/never-pushed']) {
      const res = await alice.referrers(repository, unknown);
      assert.equal(res.status, 200, res.body);
      assert.equal(res.headers['content-type'], ociIndexMediaType);
      assert.deepEqual(res.json(), { schemaVersion: 2, mediaType: ociIndexMediaType, manifests: [] });
    }
    const head = await request(gw, 'HEAD', `/v2/alice/app/referrers/${unknown}`, { headers: alice.headers() });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  test('malformed digests answer 400 DIGEST_INVALID; other methods 405; callers without pull are refused', async () => {
    for (const digest of ['sha256:abc', `sha256:${'A'.repeat(64)}`, `md5:${'a'.repeat(32)}`, 'latest']) {
      const res = await alice.referrers('alice/app', digest);
      assert.equal(res.status, 400, `${digest}: ${res.body}`);
      assert.equal(res.json().errors[0].code, 'DIGEST_INVALID');
    }
    const digest = `sha256:${'0'.repeat(64)}`;
    const posted = await request(gw, 'POST', `/v2/alice/app/referrers/${digest}`, { headers: alice.headers() });
    assert.equal(posted.status, 405);
    assert.equal(posted.json().errors[0].code, 'UNSUPPORTED');
    const anonymous = await request(gw, 'GET', `/v2/alice/app/referrers/${digest}`);
    assert.equal(anonymous.status, 401);
    assert.match(String(anonymous.headers['www-authenticate']), /scope="repository:alice\/app:pull"/);
    const otherToken = await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/other:pull']);
    const wrongScope = await request(gw, 'GET', `/v2/alice/app/referrers/${digest}`, { headers: { Authorization: `Bearer ${otherToken}` } });
    assert.equal(wrongScope.status, 401);
  });

  test('a subject that is not a descriptor: 400 MANIFEST_INVALID, nothing stored, no list changed', async () => {
    const repository = 'alice/app';
    const image = await alice.subject(repository, 'bad-subjects');
    const good = artifact(image, { artifactType: sbomType });
    assert.equal((await alice.pushReferrer(repository, good)).status, 201);
    const before = await alice.fallback(repository, image.digest);
    const badSubjects: unknown[] = [image.digest, { digest: image.digest, size: image.size }, { ...image, digest: 'sha256:abc' }, { ...image, size: '12' }];
    for (const subject of badSubjects) {
      const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: ociManifestMediaType, config: empty, layers: [empty], subject }));
      const res = await alice.put(repository, sha256(body), body);
      assert.equal(res.status, 400, `${JSON.stringify(subject)}: ${res.body}`);
      assert.equal(res.json().errors[0].code, 'MANIFEST_INVALID');
      assert.equal(await alice.api.digestOf(repository, sha256(body)), undefined, 'the registry never got it');
    }
    // Spelled so that Go clients read another subject than the gateway would.
    const ambiguous = Buffer.from(`{"schemaVersion":2,"mediaType":"${ociManifestMediaType}","config":${JSON.stringify(empty)},"layers":[],"subject":${JSON.stringify(image)},"Subject":${JSON.stringify({ ...image, digest: `sha256:${'1'.repeat(64)}` })}}`);
    const refused = await alice.put(repository, 'ambiguous', ambiguous);
    assert.equal(refused.status, 400);
    assert.equal(refused.json().errors[0].code, 'MANIFEST_INVALID');
    assert.deepEqual(await alice.fallback(repository, image.digest), before);
  });

  test('a manifest over 4 MiB is refused with MANIFEST_INVALID before the gateway reads it; the registry sees nothing', async () => {
    const repository = 'alice/app';
    const head = (framing: string) =>
      `PUT /v2/${repository}/manifests/huge-one HTTP/1.1\r\nHost: ${gw.host}\r\nAuthorization: Bearer ${alice.token}\r\nContent-Type: ${ociManifestMediaType}\r\n${framing}\r\n`;
    const mib = 1024 * 1024;
    // Declared 5 MiB, 1 MiB sent: the answer comes while the client still owes 4 MiB.
    const declared = await rawExchange(gw, Buffer.concat([Buffer.from(head(`Content-Length: ${5 * mib}\r\n`)), Buffer.alloc(mib, 0x20)]), { methods: ['PUT'] });
    assert.deepEqual(declared.statuses, [400], declared.text.slice(0, 300));
    assert.equal(JSON.parse(declared.responses[0]!.body).errors[0].code, 'MANIFEST_INVALID');
    assert.equal(declared.responses[0]!.headers.connection, 'close');
    // Chunked, no length said: refused as soon as more than 4 MiB came, the terminating chunk never sent.
    const chunk = Buffer.alloc(mib, 0x20);
    const chunks = [0, 1, 2, 3, 4].map(() => Buffer.concat([Buffer.from(`${mib.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]));
    const chunked = await rawExchange(gw, Buffer.concat([Buffer.from(head('Transfer-Encoding: chunked\r\n')), ...chunks]), { methods: ['PUT'] });
    assert.deepEqual(chunked.statuses, [400], chunked.text.slice(0, 300));
    assert.equal(JSON.parse(chunked.responses[0]!.body).errors[0].code, 'MANIFEST_INVALID');

    assert.equal(await alice.api.digestOf(repository, 'huge-one'), undefined);
    // The registry logs every request it answers: it answered the HEAD above, and never a PUT of that tag.
    const seen = gw.logLines.filter((line) => line.includes('"component":"registry"') && line.includes('/manifests/huge-one'));
    assert.ok(seen.some((line) => line.includes('http.request.method=HEAD')), 'the registry log shows the requests it got');
    assert.deepEqual(seen.filter((line) => !line.includes('http.request.method=HEAD')), []);
  });

  test('a referrer pushed before its subject is listed; an index referrer without artifactType is listed without one', async () => {
    const repository = 'alice/app';
    const later = await alice.api.makeManifest(repository, 'pushed after its referrer');
    const subject = { mediaType: ociManifestMediaType, digest: later.digest, size: later.body.length };
    const early = artifact(subject, { artifactType: sbomType });
    const pushed = await alice.pushReferrer(repository, early);
    assert.equal(pushed.status, 201, pushed.body);
    assert.equal(pushed.headers['oci-subject'], subject.digest);
    const indexBody = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: ociIndexMediaType, manifests: [early.descriptor], subject }));
    const indexPushed = await alice.put(repository, sha256(indexBody), indexBody, ociIndexMediaType);
    assert.equal(indexPushed.status, 201, indexPushed.body);
    assert.equal(indexPushed.headers['oci-subject'], subject.digest);
    assert.equal((await alice.put(repository, 'later', later.body)).status, 201);
    const listed = await alice.listed(repository, subject.digest);
    assert.deepEqual(listed, [
      { ...early.descriptor, artifactType: sbomType },
      { mediaType: ociIndexMediaType, digest: sha256(indexBody), size: indexBody.length },
    ]);
  });

  test('a fallback tag naming something other than an index is left alone: the push stands, without OCI-Subject', async () => {
    const repository = 'alice/other';
    const image = await alice.subject(repository, 'v1');
    const squatter = await alice.api.makeManifest(repository, 'not an index');
    assert.equal((await alice.put(repository, image.digest.replace(':', '-'), squatter.body)).status, 201);
    const referrer = artifact(image, { artifactType: sbomType });
    const pushed = await alice.pushReferrer(repository, referrer);
    assert.equal(pushed.status, 201, pushed.body);
    assert.equal(pushed.headers['oci-subject'], undefined, 'the client is told to record it itself');
    assert.equal(await alice.api.digestOf(repository, image.digest.replace(':', '-')), squatter.digest);
    assert.deepEqual(await alice.listed(repository, image.digest), []);
    assert.ok(gw.logLines.some((line) => line.includes('could not list a pushed referrer under its subject') && line.includes(image.digest)));
  });

  test('immutable rules covering every tag: cosign .sig and .att tags are rewritten, referrers still recorded, release tags stay', async () => {
    const repository = 'alice/signed';
    const image = await alice.subject(repository, 'v1');
    for (const suffix of ['sig', 'att']) {
      const tag = `${image.digest.replace(':', '-')}.${suffix}`;
      const once = await cosignStyle(alice, repository, ['first']);
      const twice = await cosignStyle(alice, repository, ['first', 'second']);
      assert.equal((await alice.put(repository, tag, once.body)).status, 201);
      const again = await alice.put(repository, tag, twice.body);
      assert.equal(again.status, 201, `${tag}: ${again.body}`);
      assert.equal(await alice.api.digestOf(repository, tag), twice.digest);
    }
    for (const note of ['one', 'two']) {
      const pushed = await alice.pushReferrer(repository, artifact(image, { artifactType: signatureType, annotations: { note } }));
      assert.equal(pushed.status, 201, pushed.body);
      assert.equal(pushed.headers['oci-subject'], image.digest);
    }
    assert.equal((await alice.listed(repository, image.digest)).length, 2);
    // A client keeping the fallback tag itself (spec fallback mode) may rewrite it too.
    const own = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: ociIndexMediaType, manifests: [] }));
    assert.equal((await alice.put(repository, image.digest.replace(':', '-'), own, ociIndexMediaType)).status, 201);

    const moved = await alice.put(repository, 'v1', (await alice.api.makeManifest(repository, 'another v1')).body);
    assert.equal(moved.status, 403, moved.body);
    assert.equal(moved.json().errors[0].code, 'DENIED');
  });

  test('a rule naming sha256-*.sig freezes signature tags only; one naming sha256-* freezes the fallback tag, which the gateway then leaves', async () => {
    const frozen = 'alice/frozen';
    const image = await alice.subject(frozen, 'v1');
    const sigTag = `${image.digest.replace(':', '-')}.sig`;
    assert.equal((await alice.put(frozen, sigTag, (await cosignStyle(alice, frozen, ['first'])).body)).status, 201);
    const refused = await alice.put(frozen, sigTag, (await cosignStyle(alice, frozen, ['first', 'second'])).body);
    assert.equal(refused.status, 403, refused.body);
    assert.equal(refused.json().errors[0].code, 'DENIED');
    const attTag = `${image.digest.replace(':', '-')}.att`;
    assert.equal((await alice.put(frozen, attTag, (await cosignStyle(alice, frozen, ['a'])).body)).status, 201);
    assert.equal((await alice.put(frozen, attTag, (await cosignStyle(alice, frozen, ['a', 'b'])).body)).status, 201);
    for (const note of ['one', 'two']) assert.equal((await alice.pushReferrer(frozen, artifact(image, { artifactType: sbomType, annotations: { note } }))).headers['oci-subject'], image.digest);
    assert.equal((await alice.listed(frozen, image.digest)).length, 2);

    const pinned = 'alice/pinned';
    const pinnedImage = await alice.subject(pinned, 'v1');
    const first = artifact(pinnedImage, { artifactType: sbomType, annotations: { n: 'first' } });
    const second = artifact(pinnedImage, { artifactType: sbomType, annotations: { n: 'second' } });
    assert.equal((await alice.pushReferrer(pinned, first)).headers['oci-subject'], pinnedImage.digest, 'the first write creates the tag');
    const unlisted = await alice.pushReferrer(pinned, second);
    assert.equal(unlisted.status, 201, 'the push itself stands');
    assert.equal(unlisted.headers['oci-subject'], undefined);
    assert.deepEqual(digests(await alice.listed(pinned, pinnedImage.digest)), [first.descriptor.digest]);
    const rewrite = await alice.put(pinned, pinnedImage.digest.replace(':', '-'), Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: ociIndexMediaType, manifests: [] })), ociIndexMediaType);
    assert.equal(rewrite.status, 403, 'clients may not rewrite it either');
  });

  test('a listed referrer deleted around the gateway is dropped from the list when the next referrer is pushed', async () => {
    const repository = 'alice/app';
    const image = await alice.subject(repository, 'deleted-around');
    const first = artifact(image, { artifactType: sbomType, annotations: { n: '1' } });
    const second = artifact(image, { artifactType: sbomType, annotations: { n: '2' } });
    assert.equal((await alice.pushReferrer(repository, first)).status, 201);
    const direct = await fetch(new URL(`/v2/${repository}/manifests/${first.descriptor.digest}`, gw.registry!.url), { method: 'DELETE' });
    assert.equal(direct.status, 202);
    const pushed = await alice.pushReferrer(repository, second);
    assert.equal(pushed.status, 201, pushed.body);
    assert.equal(pushed.headers['oci-subject'], image.digest);
    assert.deepEqual(digests(await alice.listed(repository, image.digest)), [second.descriptor.digest]);
  });
});

