// Unit tests: reading `n` and `last`, sorting tags in byte order and cutting pages as the OCI distribution spec says.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RegistryError } from '../src/errors.js';
import { nextPageLink, parseTagPageRequest, sortTags, tagPage } from '../src/registry/tag-list.js';

function refused(code: string, status: number) {
  return (error: unknown) => error instanceof RegistryError && error.code === code && error.status === status;
}

describe('parseTagPageRequest', () => {
  it('reads n as a non-negative integer and last as a tag; absent or empty means no limit or the start', () => {
    assert.deepEqual(parseTagPageRequest(undefined, undefined), { limit: undefined, last: undefined });
    assert.deepEqual(parseTagPageRequest('', ''), { limit: undefined, last: undefined });
    assert.deepEqual(parseTagPageRequest('0', undefined), { limit: 0, last: undefined });
    assert.deepEqual(parseTagPageRequest('1000', 'v1.2.3'), { limit: 1000, last: 'v1.2.3' });
    assert.deepEqual(parseTagPageRequest('007', '_x'), { limit: 7, last: '_x' });
    assert.deepEqual(parseTagPageRequest(String(Number.MAX_SAFE_INTEGER), undefined), { limit: Number.MAX_SAFE_INTEGER, last: undefined });
  });

  it('refuses an n that is not a plain non-negative integer with 400 PAGINATION_NUMBER_INVALID', () => {
    for (const n of ['abc', '-1', '+1', '1.5', '1e3', ' 1', '1 ', '0x10', 'Infinity', 'NaN', '١', '9'.repeat(17), '9007199254740992']) {
      assert.throws(() => parseTagPageRequest(n, undefined), refused('PAGINATION_NUMBER_INVALID', 400), JSON.stringify(n));
    }
  });

  it('refuses a last that is not a tag with 400, keeping the detail short', () => {
    for (const last of ['-x', '.x', 'a b', 'a/b', 'sha256:abc', 'lätest', 'a\u0000', 'x'.repeat(129), '../etc']) {
      assert.throws(() => parseTagPageRequest('10', last), refused('UNSUPPORTED', 400), JSON.stringify(last));
    }
    assert.throws(() => parseTagPageRequest('1', 'y'.repeat(5000)), (error: unknown) => error instanceof RegistryError && JSON.stringify(error.toBody()).length < 400);
  });
});

describe('sortTags', () => {
  it('sorts in byte order (digits, upper case, underscore, lower case), each tag once', () => {
    assert.deepEqual(sortTags(['b', '_z', 'B', 'a-b', '0', 'a', 'a.b', 'a', 'A', '10', '9']), ['0', '10', '9', 'A', 'B', '_z', 'a', 'a-b', 'a.b', 'b']);
  });
});

describe('tagPage', () => {
  const all = sortTags(['a', 'b', 'c', 'd', 'e']);

  it('without n answers every tag after last, with no next page', () => {
    assert.deepEqual(tagPage(all, { limit: undefined, last: undefined }), { tags: ['a', 'b', 'c', 'd', 'e'], next: undefined });
    assert.deepEqual(tagPage(all, { limit: undefined, last: 'b' }), { tags: ['c', 'd', 'e'], next: undefined });
  });

  it('answers n tags and names the next page while tags remain', () => {
    assert.deepEqual(tagPage(all, { limit: 2, last: undefined }), { tags: ['a', 'b'], next: 'b' });
    assert.deepEqual(tagPage(all, { limit: 2, last: 'b' }), { tags: ['c', 'd'], next: 'd' });
    assert.deepEqual(tagPage(all, { limit: 2, last: 'd' }), { tags: ['e'], next: undefined });
    assert.deepEqual(tagPage(all, { limit: 5, last: undefined }), { tags: all, next: undefined });
    assert.deepEqual(tagPage(all, { limit: 1e9, last: undefined }), { tags: all, next: undefined });
  });

  it('excludes last itself, and starts after it when it is no tag of the list', () => {
    assert.deepEqual(tagPage(all, { limit: 1, last: 'a' }), { tags: ['b'], next: 'b' });
    assert.deepEqual(tagPage(all, { limit: 2, last: 'bb' }), { tags: ['c', 'd'], next: 'd' });
    assert.deepEqual(tagPage(all, { limit: 2, last: 'A' }), { tags: ['a', 'b'], next: 'b' });
    assert.deepEqual(tagPage(all, { limit: 2, last: 'z' }), { tags: [], next: undefined });
    assert.deepEqual(tagPage(all, { limit: 2, last: 'e' }), { tags: [], next: undefined });
  });

  it('answers an empty list and no next page for n=0, as the spec requires', () => {
    assert.deepEqual(tagPage(all, { limit: 0, last: undefined }), { tags: [], next: undefined });
    assert.deepEqual(tagPage(all, { limit: 0, last: 'b' }), { tags: [], next: undefined });
    assert.deepEqual(tagPage([], { limit: 3, last: undefined }), { tags: [], next: undefined });
  });

  it('pages through a large list completely and in order, each tag once', () => {
    const tags = sortTags(Array.from({ length: 10_000 }, (_, i) => `t${(i * 7919) % 10_000}`));
    const seen: string[] = [];
    let last: string | undefined;
    for (let pages = 0; pages < 20; pages++) {
      const page = tagPage(tags, { limit: 999, last });
      seen.push(...page.tags);
      if (page.next === undefined) break;
      last = page.next;
    }
    assert.deepEqual(seen, tags);
  });
});

describe('nextPageLink', () => {
  it('is an RFC 5988 link to the next page, relative to this origin', () => {
    assert.equal(nextPageLink('team/app', 1000, 'v1.0'), '</v2/team/app/tags/list?n=1000&last=v1.0>; rel="next"');
  });
});
