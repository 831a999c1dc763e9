// Tests for scopes: parsing what clients ask for, formatting, merging, coverage checks and the default grant.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { covers, formatScope, grantFor, limitAccess, mergeAccess, parseScope, parseScopes, type Access } from '../src/access/access.js';
import { AllowAuthenticated } from '../src/access/access-rules.js';

const repo = (name: string, ...actions: string[]): Access => ({ type: 'repository', name, actions });
const catalog: Access = { type: 'registry', name: 'catalog', actions: ['*'] };

describe('parseScope', () => {
  const accepted: [scope: string, expected: Access][] = [
    ['repository:alpine:pull', repo('alpine', 'pull')],
    ['repository:library/alpine:pull,push', repo('library/alpine', 'pull', 'push')],
    ['repository:library/alpine:push,pull', repo('library/alpine', 'pull', 'push')],
    ['repository:team/app:pull,pull,push,pull', repo('team/app', 'pull', 'push')],
    ['repository:team/app:pull,,push,', repo('team/app', 'pull', 'push')],
    ['repository:team/app:delete', repo('team/app', 'delete')],
    ['repository:team/app:*', repo('team/app', '*')],
    ['repository(plugin):team/app:pull', repo('team/app', 'pull')],
    ['repository:a/manifests/b:pull', repo('a/manifests/b', 'pull')],
    [`repository:${'a'.repeat(255)}:pull`, repo('a'.repeat(255), 'pull')],
    ['registry:catalog:*', catalog],
    ['registry(x):catalog:*', catalog],
  ];
  for (const [scope, expected] of accepted) {
    it(`${JSON.stringify(scope.slice(0, 60))} -> ${formatScope(expected).slice(0, 60)}`, () => {
      assert.deepEqual(parseScope(scope), expected);
    });
  }

  // Anything the gateway cannot grant is left out of the token, not an error.
  const dropped: [scope: string, why: string][] = [
    ['repository:localhost:5000/team/app:pull', 'a name with host:port'],
    ['repository:registry.example.com:5000/app:pull', 'a name with host:port'],
    ['repository:Team/App:pull', 'an uppercase name'],
    ['repository:team/../secret:pull', 'a dot segment in the name'],
    ['repository:team//app:pull', 'an empty name component'],
    ['repository::pull', 'an empty name'],
    [`repository:${'a'.repeat(256)}:pull`, 'a name over 255 characters'],
    ['unknown:team/app:pull', 'an unknown type'],
    ['Repository:team/app:pull', 'a type in the wrong case'],
    ['repository(Plugin):team/app:pull', 'a resource class outside the grammar'],
    ['repository:team/app:', 'no actions'],
    ['repository:team/app:,,', 'only empty actions'],
    ['repository:team/app', 'no action part'],
    ['repository', 'nothing but a type'],
    [':team/app:pull', 'no type'],
    ['', 'an empty scope'],
    ['registry:other:*', 'a registry resource other than the catalog'],
  ];
  for (const [scope, why] of dropped) {
    it(`drops ${why}: ${JSON.stringify(scope.slice(0, 60))}`, () => {
      assert.equal(parseScope(scope), undefined);
    });
  }
});

describe('parseScopes', () => {
  const cases: [values: string[], expected: Access[]][] = [
    [[], []],
    [[''], []],
    [['repository:team/app:pull'], [repo('team/app', 'pull')]],
    [['repository:team/app:pull repository:team/base:pull'], [repo('team/app', 'pull'), repo('team/base', 'pull')]],
    [['repository:team/app:pull', 'repository:team/base:push'], [repo('team/app', 'pull'), repo('team/base', 'push')]],
    [['repository:team/app:push', 'repository:team/app:pull'], [repo('team/app', 'pull', 'push')]],
    [['repository:team/app:pull repository:team/app:pull'], [repo('team/app', 'pull')]],
    [['repository(plugin):team/app:pull', 'repository:team/app:push'], [repo('team/app', 'pull', 'push')]],
    [['  repository:team/app:pull   registry:catalog:*  '], [repo('team/app', 'pull'), catalog]],
    [['repository:team/app:pull unknown:x:pull repository:localhost:5000/x:pull repository:team/app:'], [repo('team/app', 'pull')]],
    [['registry:catalog:*', 'repository:catalog:pull'], [catalog, repo('catalog', 'pull')]],
  ];
  for (const [values, expected] of cases) {
    it(`${JSON.stringify(values)} -> ${JSON.stringify(expected.map(formatScope))}`, () => {
      assert.deepEqual(parseScopes(values), expected);
    });
  }
});

describe('formatScope', () => {
  it('writes type:name:actions, actions comma-separated', () => {
    assert.equal(formatScope(repo('library/alpine', 'pull', 'push')), 'repository:library/alpine:pull,push');
    assert.equal(formatScope(catalog), 'registry:catalog:*');
  });

  const canonical = ['repository:alpine:pull', 'repository:team/app:pull,push', 'repository:a/b/c:delete', 'repository:x:*', 'registry:catalog:*'];
  for (const scope of canonical) {
    it(`round-trips ${scope}`, () => {
      const parsed = parseScope(scope);
      assert.ok(parsed);
      assert.equal(formatScope(parsed), scope);
      assert.deepEqual(parseScope(formatScope(parsed)), parsed);
    });
  }

  it('drops the resource class: the registry matches access by type and name only', () => {
    assert.equal(formatScope(parseScope('repository(plugin):team/app:pull')!), 'repository:team/app:pull');
  });
});

describe('mergeAccess', () => {
  it('merges entries for the same resource, actions sorted and unique, in first-seen order', () => {
    const merged = mergeAccess([repo('b', 'push'), repo('a', 'pull'), repo('b', 'pull', 'push'), repo('a', 'delete')]);
    assert.deepEqual(merged, [repo('b', 'pull', 'push'), repo('a', 'delete', 'pull')]);
  });

  it('keeps resources of different types apart even with the same name', () => {
    assert.deepEqual(mergeAccess([catalog, repo('catalog', 'pull')]), [catalog, repo('catalog', 'pull')]);
  });

  it('sorts the actions of a single entry', () => {
    assert.deepEqual(mergeAccess([repo('a', 'push', 'delete', 'pull')]), [repo('a', 'delete', 'pull', 'push')]);
  });

  it('returns an empty list for no entries', () => {
    assert.deepEqual(mergeAccess([]), []);
  });

  it('leaves its input untouched', () => {
    const input = [repo('a', 'push'), repo('a', 'pull')];
    const before = structuredClone(input);
    const merged = mergeAccess(input);
    merged[0]!.actions.push('delete');
    assert.deepEqual(input, before);
  });
});

describe('covers', () => {
  const cases: [granted: Access[], needed: Access[], expected: boolean, why: string][] = [
    [[repo('a', 'pull', 'push')], [repo('a', 'pull')], true, 'a granted action'],
    [[repo('a', 'pull', 'push')], [repo('a', 'pull', 'push')], true, 'all granted actions'],
    [[repo('a', 'pull')], [repo('a', 'pull', 'push')], false, 'only part of the actions'],
    [[repo('a', 'push')], [repo('a', 'pull')], false, 'another action'],
    [[repo('a', 'pull', 'push')], [repo('a', 'delete')], false, 'delete without delete'],
    [[repo('a', '*')], [repo('a', 'pull', 'push', 'delete')], true, "'*' covers every action"],
    [[repo('a', '*')], [repo('b', 'pull')], false, "'*' only for its own resource"],
    [[catalog], [catalog], true, 'the catalog'],
    [[repo('catalog', '*')], [catalog], false, 'a repository named like the catalog'],
    [[], [repo('a', 'pull')], false, 'nothing granted'],
    [[repo('a', 'pull')], [], true, 'nothing needed'],
    [[repo('a', 'pull')], [repo('a', 'pull'), repo('b', 'pull')], false, 'one resource missing'],
    [[repo('b', 'pull'), repo('a', 'pull', 'push')], [repo('a', 'pull', 'push'), repo('b', 'pull')], true, 'several resources'],
    [[repo('team', '*')], [repo('team/app', 'pull')], false, 'a parent name'],
    [[repo('team/app', 'pull')], [repo('team', 'pull')], false, 'a child name'],
  ];
  for (const [granted, needed, expected, why] of cases) {
    it(`${expected ? 'covers' : 'does not cover'} ${why}`, () => {
      assert.equal(covers(granted, needed), expected);
    });
  }
});

describe('AllowAuthenticated (no access file)', () => {
  const authorizer = new AllowAuthenticated();
  const requested = parseScopes(['repository:team/app:pull,push repository:other:delete registry:catalog:*']);

  it('grants an authenticated user everything asked for', () => {
    assert.deepEqual(authorizer.grant({ user: 'alice' }, requested), requested);
  });

  it('grants an anonymous caller nothing, and does not allow anonymous tokens', () => {
    assert.deepEqual(authorizer.grant({ user: null }, requested), []);
    assert.equal(authorizer.allowsAnonymous(), false);
  });

  it('returns a copy: changing the grant does not change the request', () => {
    const before = structuredClone(requested);
    const granted = authorizer.grant({ user: 'alice' }, requested);
    assert.notEqual(granted, requested);
    granted[0]!.actions.push('delete');
    granted[1]!.name = 'changed';
    granted.push(repo('extra', 'pull'));
    assert.deepEqual(requested, before);
  });

  it('grants nothing for an empty request (a login check)', () => {
    assert.deepEqual(authorizer.grant({ user: 'alice' }, []), []);
  });
});

describe('limitAccess and grantFor: a CI token never gets more than its scopes', () => {
  const cases: [string, Access[], Access[] | undefined, Access[]][] = [
    ['no limit keeps the grant', [repo('a', 'pull', 'push')], undefined, [repo('a', 'pull', 'push')]],
    ['actions outside the limit are dropped', [repo('a', 'pull', 'push', 'delete')], [repo('a', 'pull', 'push')], [repo('a', 'pull', 'push')]],
    ['a resource outside the limit is dropped', [repo('a', 'pull'), repo('b', 'pull')], [repo('a', 'pull')], [repo('a', 'pull')]],
    ['a limit of * allows every repository action', [repo('a', 'delete', 'pull')], [repo('a', '*')], [repo('a', 'delete', 'pull')]],
    ['an empty limit grants nothing', [repo('a', 'pull')], [], []],
    ['catalog needs catalog in the limit', [{ type: 'registry', name: 'catalog', actions: ['*'] }], [repo('a', '*')], []],
  ];
  for (const [label, granted, limit, expected] of cases) {
    it(label, () => assert.deepEqual(limitAccess(granted, limit), expected));
  }

  it('grantFor narrows what the rules allow to the identity\'s scope limit', () => {
    const authorizer = new AllowAuthenticated();
    const requested = [repo('app/web', 'pull', 'push'), repo('app/api', 'pull', 'push')];
    assert.deepEqual(grantFor(authorizer, { user: 'ci', scopeLimit: [repo('app/web', 'pull', 'push')] }, requested), [repo('app/web', 'pull', 'push')]);
    assert.deepEqual(grantFor(authorizer, { user: 'alice' }, requested), requested);
    assert.deepEqual(grantFor(authorizer, { user: null }, requested), []);
  });
});
