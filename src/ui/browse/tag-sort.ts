// Orders a repository's tags for people: version-like tags by semantic version, newest first, then the others by name.

import semver from 'semver';
import { compareTags } from '../../registry/tag-list.js';

/** v1, 1.2, v1.2.3, 2.0.0-rc1: one to three numbers, an optional leading v, an optional pre-release. */
const versionLike = /^v?(\d{1,16})(?:\.(\d{1,16}))?(?:\.(\d{1,16}))?(?:-([0-9A-Za-z.-]+))?$/;

/** The tag as a semantic version (missing minor and patch read as 0), or undefined when it does not look like one. */
export function versionOf(tag: string): semver.SemVer | undefined {
  const match = versionLike.exec(tag);
  if (match === null) return undefined;
  const [, major, minor = '0', patch = '0', pre] = match;
  const text = `${Number(major)}.${Number(minor)}.${Number(patch)}${pre === undefined ? '' : `-${pre}`}`;
  return semver.parse(text, { loose: true }) ?? undefined;
}

/**
 * Version-like tags first, newest first (2.0.0 before 2.0.0-rc1 before 1.10.0 before 1.9.0); equal
 * versions (v1.0 and 1.0.0) by name; then every other tag by name.
 */
export function sortTagsForDisplay(tags: Iterable<string>): string[] {
  const versions: { tag: string; version: semver.SemVer }[] = [];
  const others: string[] = [];
  for (const tag of new Set(tags)) {
    const version = versionOf(tag);
    if (version === undefined) others.push(tag);
    else versions.push({ tag, version });
  }
  versions.sort((a, b) => semver.rcompare(a.version, b.version) || compareTags(a.tag, b.tag));
  others.sort(compareTags);
  return [...versions.map((entry) => entry.tag), ...others];
}
