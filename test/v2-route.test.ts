// Tests for /v2/ request parsing: every route the registry serves, greedy names, hostile targets, and the access each needs.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Access } from '../src/access/access.js';
import { RegistryError, type RegistryErrorCode } from '../src/errors.js';
import { parseV2Route, requirementOf, type Requirement, type V2Route } from '../src/access/v2-route.js';

const digest = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const uploadId = '0c3b6d1e-4f5a-4b7c-9d2e-8f1a2b3c4d5e';

/** Asserts that `action` throws a RegistryError with this code and HTTP status. */
function assertRegistryError(action: () => unknown, code: RegistryErrorCode, status: number, label: string): void {
  assert.throws(action, (error: unknown) => {
    assert.ok(error instanceof RegistryError, `${label}: expected a RegistryError, got ${String(error)}`);
    assert.equal(error.code, code, `${label}: code`);
    assert.equal(error.status, status, `${label}: status`);
    return true;
  });
}

/** Shortens a table row's target for a test title. */
function title(target: string): string {
  const printable = JSON.stringify(target);
  return printable.length > 90 ? `${printable.slice(0, 87)}...` : printable;
}

describe('parseV2Route: the routes the registry serves', () => {
  const cases: [target: string, expected: V2Route][] = [
    ['/v2/', { kind: 'base' }],
    ['/v2', { kind: 'base' }],
    ['/v2/?probe=1', { kind: 'base' }],
    ['/v2/_catalog', { kind: 'catalog' }],
    ['/v2/_catalog?n=100&last=library%2Falpine', { kind: 'catalog', n: '100', last: 'library/alpine' }],
    ['/v2/alpine/tags/list', { kind: 'tags', name: 'alpine' }],
    ['/v2/library/alpine/tags/list?n=10&last=3.19', { kind: 'tags', name: 'library/alpine', n: '10', last: '3.19' }],
    ['/v2/alpine/manifests/latest', { kind: 'manifest', name: 'alpine', reference: 'latest' }],
    ['/v2/team/app/manifests/v1.2.3-rc_1', { kind: 'manifest', name: 'team/app', reference: 'v1.2.3-rc_1' }],
    ['/v2/team/app/manifests/_private', { kind: 'manifest', name: 'team/app', reference: '_private' }],
    [`/v2/team/app/manifests/${'t'.repeat(128)}`, { kind: 'manifest', name: 'team/app', reference: 't'.repeat(128) }],
    [`/v2/alpine/manifests/${digest}`, { kind: 'manifest', name: 'alpine', reference: digest }],
    [`/v2/a/b/c/d/blobs/${digest}`, { kind: 'blob', name: 'a/b/c/d', digest }],
    ['/v2/team/app/blobs/uploads/', { kind: 'upload-start', name: 'team/app', mountFrom: undefined }],
    [`/v2/team/app/blobs/uploads/?mount=${digest}&from=library/base`, { kind: 'upload-start', name: 'team/app', mountFrom: 'library/base', mount: digest }],
    // The registry decodes the query with Go's FormValue; the gateway must see the same source name.
    [`/v2/team/app/blobs/uploads/?mount=sha256%3A${digest.slice(7)}&from=library%2Fbase`, { kind: 'upload-start', name: 'team/app', mountFrom: 'library/base', mount: digest }],
    [`/v2/team/app/blobs/uploads/?%6Dount=${digest}&%66rom=library/base`, { kind: 'upload-start', name: 'team/app', mountFrom: 'library/base', mount: digest }],
    [`/v2/team/app/blobs/uploads/?digest=${digest}&other=1`, { kind: 'upload-start', name: 'team/app', mountFrom: undefined, digest }],
    // The registry only mounts when both are given; either alone is an ordinary upload.
    ['/v2/team/app/blobs/uploads/?from=library/base', { kind: 'upload-start', name: 'team/app', mountFrom: undefined }],
    [`/v2/team/app/blobs/uploads/?mount=${digest}`, { kind: 'upload-start', name: 'team/app', mountFrom: undefined }],
    [`/v2/team/app/blobs/uploads/${uploadId}`, { kind: 'upload', name: 'team/app', uploadId }],
    [`/v2/team/app/blobs/uploads/${uploadId}?_state=abc%3D%3D&digest=${digest}`, { kind: 'upload', name: 'team/app', uploadId, state: 'abc==', digest }],
    ['/v2/my-org/my_app.web/sub__x--y/tags/list', { kind: 'tags', name: 'my-org/my_app.web/sub__x--y' }],
    [`/v2/${'a'.repeat(255)}/tags/list`, { kind: 'tags', name: 'a'.repeat(255) }],
  ];
  for (const [target, expected] of cases) {
    it(`${title(target)} -> ${expected.kind}`, () => {
      assert.deepEqual(parseV2Route(target), expected);
    });
  }
});

describe('parseV2Route: names containing route words are taken greedily, as the registry router does', () => {
  const cases: [target: string, expected: V2Route][] = [
    ['/v2/a/manifests/b/manifests/latest', { kind: 'manifest', name: 'a/manifests/b', reference: 'latest' }],
    ['/v2/manifests/manifests/manifests', { kind: 'manifest', name: 'manifests', reference: 'manifests' }],
    ['/v2/tags/list/manifests/latest', { kind: 'manifest', name: 'tags/list', reference: 'latest' }],
    ['/v2/a/blobs/b/blobs/' + digest, { kind: 'blob', name: 'a/blobs/b', digest }],
    ['/v2/a/manifests/b/blobs/' + digest, { kind: 'blob', name: 'a/manifests/b', digest }],
    ['/v2/a/blobs/uploads/b/blobs/uploads/', { kind: 'upload-start', name: 'a/blobs/uploads/b', mountFrom: undefined }],
    [`/v2/a/blobs/uploads/b/blobs/uploads/${uploadId}`, { kind: 'upload', name: 'a/blobs/uploads/b', uploadId }],
    ['/v2/a/manifests/blobs/uploads/', { kind: 'upload-start', name: 'a/manifests', mountFrom: undefined }],
    ['/v2/a/tags/list/tags/list', { kind: 'tags', name: 'a/tags/list' }],
    ['/v2/manifests/tags/list', { kind: 'tags', name: 'manifests' }],
    ['/v2/v2/manifests/latest', { kind: 'manifest', name: 'v2', reference: 'latest' }],
    ['/v2/uploads/blobs/uploads/', { kind: 'upload-start', name: 'uploads', mountFrom: undefined }],
  ];
  for (const [target, expected] of cases) {
    it(`${title(target)} -> ${expected.kind} of ${'name' in expected ? expected.name : ''}`, () => {
      assert.deepEqual(parseV2Route(target), expected);
    });
  }
});

describe('parseV2Route: references the registry router does not match are its 404, after the usual access check', () => {
  const cases: [target: string, expected: V2Route][] = [
    ['/v2/team/manifests/-x', { kind: 'unrouted', name: 'team' }],
    ['/v2/team/manifests/.INVALID_MANIFEST_NAME', { kind: 'unrouted', name: 'team' }],
    [`/v2/team/manifests/${'t'.repeat(129)}`, { kind: 'unrouted', name: 'team' }],
    ['/v2/team/manifests/', { kind: 'unrouted', name: 'team' }],
    ['/v2/team/manifests/tag=x', { kind: 'unrouted', name: 'team' }],
    ['/v2/team/app/blobs/latest', { kind: 'unrouted', name: 'team/app' }],
    [`/v2/team/blobs/SHA256:${digest.slice(7)}`, { kind: 'unrouted', name: 'team' }],
    [`/v2/team/blobs/:${digest.slice(7)}`, { kind: 'unrouted', name: 'team' }],
    ['/v2/team/blobs/', { kind: 'unrouted', name: 'team' }],
    // Manifest references no tag or digest in any spelling: the registry's router answers 404 for them too.
    ['/v2/team/app/manifests/latest%00', { kind: 'unrouted', name: 'team/app' }],
    ['/v2/team/app/manifests/latest#frag', { kind: 'unrouted', name: 'team/app' }],
    ['/v2/team/app/manifests/lätest', { kind: 'unrouted', name: 'team/app' }],
    ['/v2/team/app/manifests/latest@' + digest, { kind: 'unrouted', name: 'team/app' }],
    ['/v2/team/app/manifests/v1!', { kind: 'unrouted', name: 'team/app' }],
    ['/v2/team/app/manifests/a%20b?n=1;x', { kind: 'unrouted', name: 'team/app' }],
    [`/v2/team/app/manifests/${'t'.repeat(5000)}`, { kind: 'unrouted', name: 'team/app' }],
    // The router's digest pattern is looser than a valid digest: the registry's handlers answer for these.
    ['/v2/team/manifests/sha256:abc', { kind: 'manifest', name: 'team', reference: 'sha256:abc' }],
    ['/v2/team/blobs/sha256:abc', { kind: 'blob', name: 'team', digest: 'sha256:abc' }],
  ];
  for (const [target, expected] of cases) {
    it(`${title(target)} -> ${expected.kind}`, () => {
      assert.deepEqual(parseV2Route(target), expected);
    });
  }
  it('needs the access its method needs on the name', () => {
    const route = parseV2Route('/v2/team/manifests/.x');
    assert.deepEqual(requirementOf('GET', route), { kind: 'access', access: [{ type: 'repository', name: 'team', actions: ['pull'] }] });
    assert.deepEqual(requirementOf('DELETE', route), { kind: 'access', access: [{ type: 'repository', name: 'team', actions: ['delete'] }] });
  });
});

describe('parseV2Route: hostile or malformed targets are refused before any decision', () => {
  const cases: [target: string, code: RegistryErrorCode, status: number][] = [
    // Percent-encoding anywhere in the path: the registry would decode it into something else.
    ['/v2/team%2Fapp/manifests/latest', 'NAME_INVALID', 400],
    ['/v2%2Fteam/app/tags/list', 'NAME_INVALID', 400],
    ['/v2/team/app/manifests/%6Catest', 'NAME_INVALID', 400],
    // An escaped slash, an escaped dot segment or a bad escape in a manifest reference: refused, never a guess at the route.
    ['/v2/team/app/manifests/a%2Fb', 'NAME_INVALID', 400],
    ['/v2/team/app/manifests/%2e%2e', 'NAME_INVALID', 400],
    ['/v2/team/app/manifests/%2e', 'NAME_INVALID', 400],
    ['/v2/team/app/manifests/a%zzb', 'NAME_INVALID', 400],
    [`/v2/team/app/manifests/${digest.replace(':', '%3A')}`, 'NAME_INVALID', 400],
    ['/v2/Team/manifests/l%C3%A4test', 'NAME_INVALID', 400],
    ['/v2/team/%2e%2e/other/manifests/latest', 'NAME_INVALID', 400],
    ['/v2/team/%2E%2E/other/tags/list', 'NAME_INVALID', 400],
    ['/v2/team/app%00/tags/list', 'NAME_INVALID', 400],
    [`/v2/team/app/blobs/sha256%3A${digest.slice(7)}`, 'NAME_INVALID', 400],
    ['/v2/team/app/blobs/uploads%2F', 'NAME_INVALID', 400],
    // Dot segments: the router would clean them into another repository.
    ['/v2/other/../team/app/manifests/latest', 'NAME_INVALID', 400],
    ['/v2/./team/manifests/latest', 'NAME_INVALID', 400],
    ['/v2/team/./manifests/latest', 'NAME_INVALID', 400],
    ['/v2/team/manifests/..', 'NAME_INVALID', 400],
    ['/v2/team/app/tags/list/..', 'NAME_INVALID', 400],
    ['/v2/..', 'NAME_INVALID', 400],
    ['/v2/../v2/', 'NAME_INVALID', 400],
    // Empty segments: the router would redirect to a cleaned path.
    ['/v2/team//app/manifests/latest', 'NAME_INVALID', 400],
    ['/v2//team/tags/list', 'NAME_INVALID', 400],
    ['//v2/team/tags/list', 'NAME_INVALID', 400],
    ['/v2/team/app/blobs//' + digest, 'NAME_INVALID', 400],
    // Characters a registry path never has.
    ['/v2/team\\app/manifests/latest', 'NAME_INVALID', 400],
    ['/v2\\team/tags/list', 'NAME_INVALID', 400],
    ['/v2/team app/manifests/latest', 'NAME_INVALID', 400],
    ['/v2/team\u0000/tags/list', 'NAME_INVALID', 400],
    ['/v2/café/manifests/latest', 'NAME_INVALID', 400],
    ['/v2/te\u0430m/tags/list', 'NAME_INVALID', 400],
    // Names outside the grammar.
    ['/v2/Team/app/manifests/latest', 'NAME_INVALID', 400],
    ['/v2/team/App/tags/list', 'NAME_INVALID', 400],
    ['/v2/localhost:5000/team/manifests/latest', 'NAME_INVALID', 400],
    ['/v2/-team/tags/list', 'NAME_INVALID', 400],
    ['/v2/team_/tags/list', 'NAME_INVALID', 400],
    ['/v2/team___app/tags/list', 'NAME_INVALID', 400],
    ['/v2/team+app/tags/list', 'NAME_INVALID', 400],
    ['/v2/team=app/tags/list', 'NAME_INVALID', 400],
    [`/v2/${'a'.repeat(256)}/manifests/latest`, 'NAME_INVALID', 400],
    [`/v2/${'ab/'.repeat(85)}c/tags/list`, 'NAME_INVALID', 400],
    [`/v2/${'a'.repeat(256)}/blobs/uploads/`, 'NAME_INVALID', 400],
    // Over-long targets, whether the length is in the path or the query.
    [`/v2/${'a/'.repeat(2100)}tags/list`, 'NAME_INVALID', 400],
    [`/v2/team/blobs/uploads/?mount=${digest}&from=${'a'.repeat(5000)}`, 'NAME_INVALID', 400],
    // Not an origin-form path.
    ['http://internal:5000/v2/', 'NAME_INVALID', 400],
    ['https://x/v2/team/manifests/latest', 'NAME_INVALID', 400],
    ['v2/', 'NAME_INVALID', 400],
    ['v2/team/tags/list', 'NAME_INVALID', 400],
    ['*', 'NAME_INVALID', 400],
    ['', 'NAME_INVALID', 400],
    // Cross-repository mounts whose source or digest is not valid.
    [`/v2/team/blobs/uploads/?mount=${digest}&from=Other`, 'NAME_INVALID', 400],
    [`/v2/team/blobs/uploads/?mount=${digest}&from=`, 'NAME_INVALID', 400],
    [`/v2/team/blobs/uploads/?mount=${digest}&from=localhost:5000/other`, 'NAME_INVALID', 400],
    [`/v2/team/blobs/uploads/?mount=${digest}&from=other%2F..%2Fsecret`, 'NAME_INVALID', 400],
    [`/v2/team/blobs/uploads/?mount=${digest}&from=other/`, 'NAME_INVALID', 400],
    [`/v2/team/blobs/uploads/?mount=${digest}&from=${'a'.repeat(256)}`, 'NAME_INVALID', 400],
    ['/v2/team/blobs/uploads/?mount=latest&from=other', 'DIGEST_INVALID', 400],
    ['/v2/team/blobs/uploads/?mount=&from=other', 'DIGEST_INVALID', 400],
    ['/v2/team/blobs/uploads/?mount=sha256:abc&from=other', 'DIGEST_INVALID', 400],
    // Upload ids outside the registry's route pattern.
    ['/v2/team/blobs/uploads/id:with:colons', 'BLOB_UPLOAD_INVALID', 400],
    ['/v2/team/blobs/uploads/id+plus', 'BLOB_UPLOAD_INVALID', 400],
    [`/v2/team/blobs/uploads/${'u'.repeat(257)}`, 'BLOB_UPLOAD_INVALID', 400],
    // Queries Go's url.ParseQuery and the gateway could read differently, or with a parameter given twice.
    [`/v2/team/blobs/uploads/?mount=${digest};from=other`, 'UNSUPPORTED', 400],
    [`/v2/team/blobs/uploads/?mount=${digest}&from=other&x=1;y=2`, 'UNSUPPORTED', 400],
    [`/v2/team/blobs/uploads/?mount=${digest}&from=other%zz`, 'UNSUPPORTED', 400],
    [`/v2/team/blobs/uploads/?mount=${digest}&from=other&junk=%`, 'UNSUPPORTED', 400],
    [`/v2/team/blobs/uploads/?mount=${digest}&from=other%ff`, 'UNSUPPORTED', 400],
    [`/v2/team/blobs/uploads/?mount=${digest}&from=other&from=secret`, 'UNSUPPORTED', 400],
    [`/v2/team/blobs/uploads/?mount=${digest}&mount=${digest}&from=other`, 'UNSUPPORTED', 400],
    [`/v2/team/blobs/uploads/?digest=${digest}&digest=${digest}`, 'UNSUPPORTED', 400],
    [`/v2/team/blobs/uploads/${uploadId}?_state=a&_state=b`, 'UNSUPPORTED', 400],
    ['/v2/_catalog?n=1&n=1000', 'UNSUPPORTED', 400],
    ['/v2/team/tags/list?last=a&last=b', 'UNSUPPORTED', 400],
    // Paths the registry has no route for.
    ['/v3/', 'UNSUPPORTED', 404],
    ['/v2x', 'UNSUPPORTED', 404],
    ['/v2x/team/tags/list', 'UNSUPPORTED', 404],
    ['/token', 'UNSUPPORTED', 404],
    ['/v2/team', 'UNSUPPORTED', 404],
    ['/v2/team/manifests', 'UNSUPPORTED', 404],
    ['/v2/team/tags', 'UNSUPPORTED', 404],
    ['/v2/team/tags/list/', 'UNSUPPORTED', 404],
    ['/v2/team/manifests/latest/', 'UNSUPPORTED', 404],
    ['/v2/team/Manifests/latest', 'UNSUPPORTED', 404],
    ['/v2/_catalog/', 'UNSUPPORTED', 404],
    ['/v2/team/_catalog', 'UNSUPPORTED', 404],
    ['/v2/manifests/latest', 'UNSUPPORTED', 404],
    ['/v2/tags/list', 'UNSUPPORTED', 404],
    [`/v2/blobs/${digest}`, 'UNSUPPORTED', 404],
    ['/v2/blobs/uploads/', 'UNSUPPORTED', 404],
  ];
  for (const [target, code, status] of cases) {
    it(`${title(target)} -> ${code} ${status}`, () => {
      assertRegistryError(() => parseV2Route(target), code, status, target);
    });
  }

  it('keeps a refused name short in the error detail, so a huge name cannot bloat the response', () => {
    const name = 'A'.repeat(4000);
    assert.throws(() => parseV2Route(`/v2/${name}/tags/list`), (error: unknown) => {
      assert.ok(error instanceof RegistryError);
      assert.ok(JSON.stringify(error.toBody()).length < 1000);
      return true;
    });
  });
});

describe('requirementOf: the access each request needs, as the registry itself demands', () => {
  const repo = (name: string, ...actions: string[]): Access => ({ type: 'repository', name, actions });
  const catalog: Access = { type: 'registry', name: 'catalog', actions: ['*'] };
  const identity: Requirement = { kind: 'identity' };
  const access = (...entries: Access[]): Requirement => ({ kind: 'access', access: entries });
  const refused = 'UNSUPPORTED 405' as const;

  const cases: [method: string, target: string, expected: Requirement | typeof refused][] = [
    ['GET', '/v2/', identity],
    ['HEAD', '/v2/', identity],
    ['GET', '/v2', identity],
    ['POST', '/v2/', refused],
    ['PUT', '/v2/', refused],
    ['PATCH', '/v2/', refused],
    ['DELETE', '/v2/', refused],
    ['OPTIONS', '/v2/', refused],

    ['GET', '/v2/_catalog', access(catalog)],
    ['HEAD', '/v2/_catalog?n=10', access(catalog)],
    ['POST', '/v2/_catalog', refused],
    ['PUT', '/v2/_catalog', refused],
    ['PATCH', '/v2/_catalog', refused],
    ['DELETE', '/v2/_catalog', refused],
    ['OPTIONS', '/v2/_catalog', refused],

    ['GET', '/v2/team/app/tags/list', access(repo('team/app', 'pull'))],
    ['HEAD', '/v2/team/app/tags/list', access(repo('team/app', 'pull'))],
    ['POST', '/v2/team/app/tags/list', access(repo('team/app', 'pull', 'push'))],
    ['PUT', '/v2/team/app/tags/list', access(repo('team/app', 'pull', 'push'))],
    ['PATCH', '/v2/team/app/tags/list', access(repo('team/app', 'pull', 'push'))],
    ['DELETE', '/v2/team/app/tags/list', access(repo('team/app', 'delete'))],
    ['OPTIONS', '/v2/team/app/tags/list', refused],

    ['GET', '/v2/team/app/manifests/latest', access(repo('team/app', 'pull'))],
    ['HEAD', `/v2/team/app/manifests/${digest}`, access(repo('team/app', 'pull'))],
    ['POST', '/v2/team/app/manifests/latest', access(repo('team/app', 'pull', 'push'))],
    ['PUT', '/v2/team/app/manifests/latest', access(repo('team/app', 'pull', 'push'))],
    ['PATCH', '/v2/team/app/manifests/latest', access(repo('team/app', 'pull', 'push'))],
    ['DELETE', `/v2/team/app/manifests/${digest}`, access(repo('team/app', 'delete'))],
    ['OPTIONS', '/v2/team/app/manifests/latest', refused],
    ['GET', '/v2/a/manifests/b/manifests/latest', access(repo('a/manifests/b', 'pull'))],

    ['GET', `/v2/team/app/blobs/${digest}`, access(repo('team/app', 'pull'))],
    ['HEAD', `/v2/team/app/blobs/${digest}`, access(repo('team/app', 'pull'))],
    ['POST', `/v2/team/app/blobs/${digest}`, access(repo('team/app', 'pull', 'push'))],
    ['PUT', `/v2/team/app/blobs/${digest}`, access(repo('team/app', 'pull', 'push'))],
    ['PATCH', `/v2/team/app/blobs/${digest}`, access(repo('team/app', 'pull', 'push'))],
    ['DELETE', `/v2/team/app/blobs/${digest}`, access(repo('team/app', 'delete'))],
    ['OPTIONS', `/v2/team/app/blobs/${digest}`, refused],

    ['POST', '/v2/team/app/blobs/uploads/', access(repo('team/app', 'pull', 'push'))],
    ['GET', '/v2/team/app/blobs/uploads/', access(repo('team/app', 'pull'))],
    ['HEAD', '/v2/team/app/blobs/uploads/', access(repo('team/app', 'pull'))],
    ['PUT', '/v2/team/app/blobs/uploads/', access(repo('team/app', 'pull', 'push'))],
    ['PATCH', '/v2/team/app/blobs/uploads/', access(repo('team/app', 'pull', 'push'))],
    ['DELETE', '/v2/team/app/blobs/uploads/', access(repo('team/app', 'delete'))],
    ['OPTIONS', '/v2/team/app/blobs/uploads/', refused],
    // A mount copies a blob out of the source: without pull on it, anyone could read any repository.
    ['POST', `/v2/team/app/blobs/uploads/?mount=${digest}&from=secret/base`, access(repo('team/app', 'pull', 'push'), repo('secret/base', 'pull'))],
    ['POST', `/v2/team/app/blobs/uploads/?from=secret%2Fbase&mount=${digest}`, access(repo('team/app', 'pull', 'push'), repo('secret/base', 'pull'))],
    ['POST', `/v2/team/app/blobs/uploads/?mount=${digest}&from=team/app`, access(repo('team/app', 'pull', 'push'))],
    ['POST', '/v2/team/app/blobs/uploads/?from=secret/base', access(repo('team/app', 'pull', 'push'))],

    ['GET', `/v2/team/app/blobs/uploads/${uploadId}`, access(repo('team/app', 'pull'))],
    ['HEAD', `/v2/team/app/blobs/uploads/${uploadId}`, access(repo('team/app', 'pull'))],
    ['POST', `/v2/team/app/blobs/uploads/${uploadId}`, access(repo('team/app', 'pull', 'push'))],
    ['PATCH', `/v2/team/app/blobs/uploads/${uploadId}`, access(repo('team/app', 'pull', 'push'))],
    ['PUT', `/v2/team/app/blobs/uploads/${uploadId}?digest=${digest}`, access(repo('team/app', 'pull', 'push'))],
    ['DELETE', `/v2/team/app/blobs/uploads/${uploadId}`, access(repo('team/app', 'delete'))],
    ['OPTIONS', `/v2/team/app/blobs/uploads/${uploadId}`, refused],

    ['TRACE', '/v2/team/app/manifests/latest', refused],
    ['CONNECT', '/v2/team/app/manifests/latest', refused],
  ];
  for (const [method, target, expected] of cases) {
    it(`${method} ${title(target)}`, () => {
      const route = parseV2Route(target);
      if (expected === refused) {
        assertRegistryError(() => requirementOf(method, route), 'UNSUPPORTED', 405, `${method} ${target}`);
      } else {
        assert.deepEqual(requirementOf(method, route), expected);
      }
    });
  }

  it('returns a fresh list each time, so a caller adding to it cannot change the next request', () => {
    const route = parseV2Route('/v2/team/app/manifests/latest');
    const first = requirementOf('GET', route);
    assert.equal(first.kind, 'access');
    if (first.kind === 'access') {
      first.access.push(repo('other', 'pull'));
      first.access[0]!.actions.push('push');
    }
    assert.deepEqual(requirementOf('GET', route), access(repo('team/app', 'pull')));
  });
});
