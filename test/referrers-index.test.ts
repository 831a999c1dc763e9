// The referrers tag schema as data: fallback tag names, the referrer a pushed manifest makes, index changes, the route, and attachment tags under immutable rules.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAccessFile } from '../src/access/access-rules.js';
import { parseV2Route, requirementOf } from '../src/access/v2-route.js';
import { RegistryError } from '../src/errors.js';
import {
  applyChange,
  emptyIndex,
  fallbackTag,
  isReflected,
  listing,
  ociIndexMediaType,
  ociManifestMediaType,
  parseIndex,
  referrerOf,
  serializeIndex,
  subjectOfStored,
  withoutDigests,
  type ReferrerDescriptor,
} from '../src/registry/referrers-index.js';

const hex = 'ab'.repeat(32);
const subject = { mediaType: ociManifestMediaType, digest: `sha256:${hex}`, size: 500 };
const emptyConfig = { mediaType: 'application/vnd.oci.empty.v1+json', digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a', size: 2 };
const json = (value: unknown) => Buffer.from(JSON.stringify(value));

function refusal(fn: () => unknown): RegistryError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof RegistryError, String(error));
    return error;
  }
  assert.fail('expected a refusal');
}

describe('fallback tags', () => {
  it('are the algorithm, a dash and the encoded part truncated to 64 characters', () => {
    assert.equal(fallbackTag(`sha256:${hex}`), `sha256-${hex}`);
    assert.equal(fallbackTag(`sha512:${'c'.repeat(128)}`), `sha512-${'c'.repeat(64)}`);
    assert.equal(fallbackTag(`a+b:${'d'.repeat(70)}`), `a-b-${'d'.repeat(64)}`);
  });
});

describe('the referrer a manifest PUT makes', () => {
  it('takes artifactType, else the config media type, and the annotations; digest-less, size of the body', () => {
    const body = json({ schemaVersion: 2, mediaType: ociManifestMediaType, artifactType: 'application/vnd.example.sbom', config: emptyConfig, layers: [], subject, annotations: { a: '1' } });
    assert.deepEqual(referrerOf(body, ociManifestMediaType), {
      subject: subject.digest,
      descriptor: { mediaType: ociManifestMediaType, size: body.length, artifactType: 'application/vnd.example.sbom', annotations: { a: '1' } },
    });
    const plain = json({ schemaVersion: 2, config: { ...emptyConfig, mediaType: 'application/vnd.example.config' }, layers: [], subject, artifactType: '' });
    assert.equal(referrerOf(plain, `${ociManifestMediaType}; charset=utf-8`)?.descriptor.artifactType, 'application/vnd.example.config');
    const index = json({ schemaVersion: 2, mediaType: ociIndexMediaType, manifests: [], subject });
    assert.deepEqual(referrerOf(index, ociIndexMediaType)?.descriptor, { mediaType: ociIndexMediaType, size: index.length });
  });

  it('is none without a subject, for Docker manifests, and for bodies that are no JSON object', () => {
    assert.equal(referrerOf(json({ schemaVersion: 2, config: emptyConfig, layers: [] }), ociManifestMediaType), undefined);
    assert.equal(referrerOf(json({ schemaVersion: 2, subject }), 'application/vnd.docker.distribution.manifest.v2+json'), undefined);
    assert.equal(referrerOf(Buffer.from('{not json'), ociManifestMediaType), undefined);
    assert.equal(referrerOf(json([subject]), ociManifestMediaType), undefined);
  });

  it('refuses a subject that is no descriptor of a sha256 or sha512 digest with MANIFEST_INVALID', () => {
    for (const bad of [subject.digest, null, [], { ...subject, digest: undefined }, { ...subject, digest: `sha256:${hex.toUpperCase()}` }, { ...subject, digest: 'md5:abc' }, { ...subject, size: -1 }, { ...subject, size: '5' }, { ...subject, mediaType: '' }]) {
      const error = refusal(() => referrerOf(json({ schemaVersion: 2, config: emptyConfig, subject: bad }), ociManifestMediaType));
      assert.equal(error.code, 'MANIFEST_INVALID', JSON.stringify(bad));
      assert.equal(error.status, 400);
    }
    assert.equal(refusal(() => referrerOf(json({ schemaVersion: 2, subject, artifactType: 5 }), ociManifestMediaType)).code, 'MANIFEST_INVALID');
  });

  it('refuses fields Go clients would read under another spelling (another case, ſ for s)', () => {
    const other = { ...subject, digest: `sha256:${'cd'.repeat(32)}` };
    for (const body of [
      `{"schemaVersion":2,"subject":${JSON.stringify(subject)},"Subject":${JSON.stringify(other)}}`,
      `{"schemaVersion":2,"SUBJECT":${JSON.stringify(other)}}`,
      `{"schemaVersion":2,"\u017fubject":${JSON.stringify(other)}}`,
      `{"schemaVersion":2,"subject":{"mediaType":"${ociManifestMediaType}","size":5,"digest":"${subject.digest}","Digest":"${other.digest}"}}`,
      `{"schemaVersion":2,"subject":${JSON.stringify(subject)},"artifactType":"a/b","artifacttype":"c/d"}`,
    ]) {
      assert.equal(refusal(() => referrerOf(Buffer.from(body), ociManifestMediaType)).code, 'MANIFEST_INVALID', body);
    }
  });

  it('reads the subject of a stored manifest, and none of one the gateway would have refused', () => {
    assert.equal(subjectOfStored(json({ schemaVersion: 2, subject }), ociManifestMediaType), subject.digest);
    assert.equal(subjectOfStored(json({ schemaVersion: 2, subject: 'x' }), ociManifestMediaType), undefined);
  });
});

describe('referrers indexes', () => {
  const one: ReferrerDescriptor = { mediaType: ociManifestMediaType, digest: `sha256:${'1'.repeat(64)}`, size: 10, artifactType: 'application/a', annotations: { x: 'y', b: 'c' } };
  const two: ReferrerDescriptor = { mediaType: ociManifestMediaType, digest: `sha256:${'2'.repeat(64)}`, size: 20, artifactType: 'application/b' };

  it('parse only image indexes, keeping unknown fields of entries and of the index', () => {
    assert.equal(parseIndex(json({ schemaVersion: 2, manifests: [] }), ociManifestMediaType), undefined);
    assert.equal(parseIndex(json({ schemaVersion: 1, manifests: [] }), ociIndexMediaType), undefined);
    assert.equal(parseIndex(json({ schemaVersion: 2, manifests: {} }), ociIndexMediaType), undefined);
    const index = parseIndex(json({ schemaVersion: 2, annotations: { k: 'v' }, manifests: [{ ...one, platform: { os: 'x' } }, 'junk'] }), ociIndexMediaType)!;
    assert.equal(index.entries.length, 1);
    const written = JSON.parse(serializeIndex(applyChange(index, { kind: 'add', descriptor: two })).toString());
    assert.deepEqual(written, { schemaVersion: 2, mediaType: ociIndexMediaType, annotations: { k: 'v' }, manifests: [{ ...one, platform: { os: 'x' } }, two] });
  });

  it('add once per digest, replace a different entry of that digest, remove by digest', () => {
    let index = applyChange(emptyIndex(), { kind: 'add', descriptor: one });
    assert.ok(isReflected(index, { kind: 'add', descriptor: { ...one, annotations: { b: 'c', x: 'y' } } }), 'annotation order does not matter');
    assert.ok(!isReflected(index, { kind: 'add', descriptor: { ...one, size: 11 } }));
    index = applyChange(index, { kind: 'add', descriptor: { ...one, size: 11 } });
    assert.deepEqual(index.entries.map((entry) => entry.size), [11]);
    index = applyChange(index, { kind: 'add', descriptor: two });
    assert.ok(!isReflected(index, { kind: 'remove', digest: two.digest }));
    index = applyChange(index, { kind: 'remove', digest: two.digest });
    assert.ok(isReflected(index, { kind: 'remove', digest: two.digest }));
    assert.deepEqual(withoutDigests(applyChange(index, { kind: 'add', descriptor: two }), new Set([one.digest])).entries, [two]);
  });

  it('list usable descriptors only, filtered by artifactType when asked', () => {
    const index = { fields: {}, entries: [{ ...one }, { ...two }, { digest: 'sha256:short', mediaType: 'x', size: 1 }, { ...two, digest: `sha256:${'3'.repeat(64)}`, size: -2 }] };
    const all = JSON.parse(listing(index, undefined).toString());
    assert.deepEqual(all, { schemaVersion: 2, mediaType: ociIndexMediaType, manifests: [one, two] });
    assert.deepEqual(JSON.parse(listing(index, 'application/b').toString()).manifests, [two]);
    assert.deepEqual(JSON.parse(listing(index, 'application/none').toString()).manifests, []);
  });
});

describe('the referrers route', () => {
  it('names the repository, the digest and the artifactType filter, and needs pull', () => {
    const route = parseV2Route(`/v2/team/app/referrers/sha256:${hex}?artifactType=application%2Fvnd.example%2Bjson`);
    assert.deepEqual(route, { kind: 'referrers', name: 'team/app', digest: `sha256:${hex}`, artifactType: 'application/vnd.example+json' });
    assert.deepEqual(requirementOf('GET', route), { kind: 'access', access: [{ type: 'repository', name: 'team/app', actions: ['pull'] }] });
    assert.equal(refusal(() => requirementOf('PUT', route)).code, 'UNSUPPORTED');
    assert.equal(refusal(() => requirementOf('DELETE', route)).status, 405);
  });

  it('answers 400 DIGEST_INVALID for anything but a sha256 or sha512 digest', () => {
    for (const digest of ['sha256:abc', `sha256:${hex.toUpperCase()}`, `md5:${hex}`, 'latest', `sha512:${hex}`, '']) {
      const error = refusal(() => parseV2Route(`/v2/app/referrers/${digest}`));
      assert.equal(error.code, 'DIGEST_INVALID', digest);
      assert.equal(error.status, 400);
    }
    assert.equal(parseV2Route(`/v2/app/referrers/sha512:${'e'.repeat(128)}`).kind, 'referrers');
  });

  it('leaves repositories named referrers to the routes they always had', () => {
    assert.equal(parseV2Route('/v2/referrers/manifests/latest').kind, 'manifest');
    assert.equal(parseV2Route('/v2/a/referrers/tags/list').kind, 'tags');
  });
});

describe('attachment tags under immutable rules', () => {
  const rulesWith = (tags: string) => parseAccessFile(`rules: [{ users: [authenticated], repositories: ["**"], actions: ["*"] }]\nimmutable_tags: [{ repositories: ["app/**"], tags: ${tags} }]\n`, 'access.yml').rules;
  const fallback = `sha256-${hex}`;

  it('stay mutable under globs that do not name them; release tags stay immutable', () => {
    for (const tags of ['["*"]', '["s*", "*-*"]', '["?*"]', '[semver, "v*"]']) {
      const rules = rulesWith(tags);
      for (const tag of [fallback, `${fallback}.sig`, `${fallback}.att`, `${fallback}.sbom`, `sha512-${'f'.repeat(64)}`]) assert.equal(rules.isImmutableTag('app/web', tag), false, `${tags} ${tag}`);
    }
    assert.equal(rulesWith('["*"]').isImmutableTag('app/web', 'v1.0.0'), true);
    assert.equal(rulesWith('["*"]').isImmutableTag('app/web', `${fallback}.other`), true, 'other suffixes are ordinary tags');
    assert.equal(rulesWith('["*"]').isImmutableTag('app/web', `sha256-${hex.slice(2)}`), true, 'a shorter digest is an ordinary tag');
  });

  it('are immutable under a glob starting with the algorithm and a dash', () => {
    const signatures = rulesWith('["sha256-*.sig"]');
    assert.equal(signatures.isImmutableTag('app/web', `${fallback}.sig`), true);
    assert.equal(signatures.isImmutableTag('app/web', `${fallback}.att`), false);
    assert.equal(signatures.isImmutableTag('app/web', fallback), false);
    const all = rulesWith('["*", "sha256-*"]');
    assert.equal(all.isImmutableTag('app/web', fallback), true);
    assert.equal(all.isImmutableTag('other/web', fallback), false);
  });
});
