// Unit tests: the repository page's tag order (versions newest first, then names) and the tags it leaves out.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { shownTags } from '../src/ui/browse/reader.js';
import { sortTagsForDisplay, versionOf } from '../src/ui/browse/tag-sort.js';

describe('sortTagsForDisplay', () => {
  it('orders versions as versions, newest first, a release before its pre-releases', () => {
    assert.deepEqual(sortTagsForDisplay(['1.9.0', 'v1.2.3', '1.10.0', '2.0.0-rc1', '2.0.0', '2.0.0-rc2', '0.1']), ['2.0.0', '2.0.0-rc2', '2.0.0-rc1', '1.10.0', '1.9.0', 'v1.2.3', '0.1']);
  });

  it('puts the other tags after the versions, by name', () => {
    assert.deepEqual(sortTagsForDisplay(['latest', 'main', '1.0.0', 'edge', 'sha-abc123', 'v2']), ['v2', '1.0.0', 'edge', 'latest', 'main', 'sha-abc123']);
  });

  it('orders equal versions by name and lists each tag once', () => {
    assert.deepEqual(sortTagsForDisplay(['1.0.0', 'v1.0', 'v1', '1.0.0']), ['1.0.0', 'v1', 'v1.0']);
  });

  it('does not take names with numbers for versions', () => {
    for (const tag of ['1.2.3.4', 'release-1.2', 'v1.2.3_foo', '1.2.3-', 'v', '20240101a']) assert.equal(versionOf(tag), undefined, tag);
    assert.equal(versionOf('20240101')?.major, 20240101);
  });
});

describe('shownTags', () => {
  it('leaves out the referrers fallback tags but keeps signature tags', () => {
    const fallback = `sha256-${'a'.repeat(64)}`;
    assert.deepEqual(shownTags(['latest', fallback, `${fallback}.sig`, '1.0']), ['1.0', 'latest', `${fallback}.sig`]);
  });
});
