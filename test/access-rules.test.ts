// Tests for the access file: glob matching, who gets which actions, explanations, validation and the example file.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { covers, grantFor, type Access, type Identity } from '../src/access/access.js';
import { AccessFileError, AllowAuthenticated, loadAccessFile, parseAccessFile, type RuleSet } from '../src/access/access-rules.js';

const rulesFrom = (yaml: string): RuleSet => parseAccessFile(yaml, 'test.yml').rules;

const repo = (name: string, ...actions: string[]): Access => ({ type: 'repository', name, actions });
const catalog: Access = { type: 'registry', name: 'catalog', actions: ['*'] };

/** The actions `user` is granted on one repository when asking for `requested`. */
function granted(rules: RuleSet, user: string | null, name: string, requested: string[]): string[] {
  const result = rules.grant({ user }, [repo(name, ...requested)]);
  assert.ok(result.length <= 1);
  return result[0]?.actions ?? [];
}

/** Whether the gateway lets `identity` pull `name`: the decision path the gate and the filtered catalog use. */
function mayPull(rules: RuleSet, identity: Identity, name: string): boolean {
  const wanted = [repo(name, 'pull')];
  return covers(grantFor(rules, identity, wanted), wanted);
}

/** Whether the gateway lets `identity` list the whole catalog. */
function hasCatalog(rules: RuleSet, identity: Identity): boolean {
  return covers(grantFor(rules, identity, [catalog]), [catalog]);
}

const label = (user: string | null) => (user === null ? '(anonymous)' : JSON.stringify(user));

describe('repository globs', () => {
  const cases: [glob: string, name: string, matches: boolean][] = [
    ['a/**', 'a', true],
    ['a/**', 'a/b', true],
    ['a/**', 'a/b/c', true],
    ['a/**', 'ab', false],
    ['a/**', 'b/a', false],
    ['**/x', 'x', true],
    ['**/x', 'a/x', true],
    ['**/x', 'a/b/x', true],
    ['**/x', 'a/xx', false],
    ['**/x', 'x/a', false],
    ['a/**/b', 'a/b', true],
    ['a/**/b', 'a/x/y/b', true],
    ['a/**/b', 'a/bb', false],
    ['a/**/b', 'a/b/c', false],
    ['**', 'a', true],
    ['**', 'a/b/c', true],
    ['a/**/**/b', 'a/b', true],
    ['a/*', 'a/b', true],
    ['a/*', 'a/b/c', false],
    ['a/*', 'a', false],
    ['*', 'a', true],
    ['*', 'a/b', false],
    ['a*', 'a', true],
    ['a*', 'abc', true],
    ['a*', 'ba', false],
    ['*/app', 'team/app', true],
    ['*/app', 'x/team/app', false],
    ['a/?', 'a/b', true],
    ['a/?', 'a/bc', false],
    ['a/?', 'a', false],
    ['v?-*', 'v1-x', true],
    ['v?-*', 'v12-x', false],
    // Literal characters are literal: '.' is not "any character".
    ['lib.x', 'lib.x', true],
    ['lib.x', 'libax', false],
    ['a-b/c_d', 'a-b/c_d', true],
    ['a-b/c_d', 'a-b/cxd', false],
  ];
  for (const [glob, name, matches] of cases) {
    it(`${JSON.stringify(glob)} ${matches ? 'matches' : 'does not match'} ${JSON.stringify(name)}`, () => {
      const rules = rulesFrom(`rules:\n  - users: [authenticated]\n    repositories: ["${glob}"]\n    actions: [pull]\n`);
      assert.deepEqual(granted(rules, 'u', name, ['pull']), matches ? ['pull'] : []);
    });
  }
});

const team = `
groups:
  admins: [ada]
  developers: [bob, carol]
  ci: [ci]
rules:
  - groups: [admins]
    repositories: ["**"]
    actions: ["*", catalog]
  - groups: [developers]
    repositories: ["app/**", "library/*"]
    actions: [pull]
  - groups: [ci]
    repositories: ["app/**"]
    actions: [pull, push]
  - groups: [ci]
    repositories: [app/secret]
    actions: [push]
    effect: deny
  - users: [authenticated]
    repositories: ["{user}/**"]
    actions: ["*"]
  - users: [anonymous]
    repositories: ["public/**"]
    actions: [pull]
  - users: [dave]
    groups: [developers]
    repositories: ["tools/v?"]
    actions: [pull, delete]
`;

describe('grant on a team setup', () => {
  const rules = rulesFrom(team);
  const cases: [user: string | null, name: string, requested: string[], expected: string[], why: string][] = [
    ['ada', 'app/web', ['pull', 'push', 'delete'], ['delete', 'pull', 'push'], 'admins may do everything'],
    ['ada', 'app/secret', ['push'], ['push'], 'the deny names group ci only'],
    ['ada', 'x/y/z', ['*'], ['delete', 'pull', 'push'], "'*' expands to every allowed action"],
    ['bob', 'app/web', ['pull', 'push'], ['pull'], 'developers only pull: a partial grant'],
    ['bob', 'app/web', ['push'], [], 'nothing left, nothing granted'],
    ['bob', 'library/alpine', ['pull'], ['pull'], 'library/* is one segment deep'],
    ['bob', 'library/a/b', ['pull'], [], 'library/* is not two segments deep'],
    ['ci', 'app/web', ['pull', 'push'], ['pull', 'push'], 'ci pushes app/**'],
    ['ci', 'app/a/b', ['push'], ['push'], 'app/** covers any depth'],
    ['ci', 'app', ['push'], ['push'], 'app/** covers app itself'],
    ['ci', 'app/secret', ['pull', 'push'], ['pull'], 'deny push beats allow push on app/**'],
    ['ci', 'app/secret', ['push'], [], 'deny push beats allow push on app/**'],
    ['ci', 'app/secret', ['*'], ['pull'], "'*' expands to what is left after the deny"],
    ['ci', 'app/secret/x', ['push'], ['push'], 'the deny names app/secret exactly'],
    ['ci', 'library/alpine', ['pull'], [], 'ci has no library access'],
    ['alice', 'alice/app', ['pull', 'push', 'delete'], ['delete', 'pull', 'push'], 'a personal namespace'],
    ['alice', 'alice', ['push'], ['push'], '{user}/** covers the bare user name'],
    ['alice', 'alice/a/b/c', ['push'], ['push'], '{user}/** covers any depth'],
    ['alice', 'bob/app', ['pull'], [], "another user's namespace"],
    ['bob', 'alice/app', ['pull'], [], "another user's namespace"],
    ['alice', 'alicex/app', ['pull'], [], '{user} is a whole segment'],
    ['alice', 'x/alice', ['pull'], [], '{user}/** is anchored at the start'],
    ['alice', 'public/base', ['pull'], [], 'the public rule names anonymous only'],
    [null, 'public/base', ['pull'], ['pull'], 'anonymous may pull public/**'],
    [null, 'public/base', ['pull', 'push'], ['pull'], 'anonymous may not push public/**'],
    [null, 'public/base', ['*'], ['pull'], "'*' expands for anonymous too"],
    [null, 'app/web', ['pull'], [], 'anonymous gets nothing else'],
    [null, 'anonymous/x', ['pull'], [], '{user} never matches anonymous'],
    ['anonymous', 'public/base', ['pull'], [], 'a logged-in user named "anonymous" is not anonymous'],
    ['dave', 'tools/v1', ['pull', 'delete'], ['delete', 'pull'], 'a rule matches its users'],
    ['carol', 'tools/v2', ['delete'], ['delete'], 'a rule matches its groups too'],
    ['ci', 'tools/v1', ['pull'], [], 'ci is neither'],
    ['dave', 'tools/v10', ['pull'], [], '? is exactly one character'],
    ['dave', 'tools/v1', ['push', 'bogus'], [], 'unknown actions are never granted'],
    ['dave', 'tools/v1', ['pull', 'bogus'], ['pull'], 'unknown actions are dropped'],
    ['mallory', 'app/web', ['pull'], [], 'no rule, no access'],
  ];
  for (const [user, name, requested, expected, why] of cases) {
    it(`${label(user)} ${requested.join(',')} ${name} -> [${expected.join(',')}] (${why})`, () => {
      assert.deepEqual(granted(rules, user, name, requested), expected);
    });
  }

  it('grants several entries at once, dropping those left empty', () => {
    const requested = [repo('app/web', 'pull'), repo('app/secret', 'push'), repo('app/secret', 'pull'), catalog, { type: 'unknown', name: 'x', actions: ['pull'] }];
    assert.deepEqual(rules.grant({ user: 'ci' }, requested), [repo('app/web', 'pull'), repo('app/secret', 'pull')]);
  });

  it('does not modify what was requested', () => {
    const requested = [repo('app/web', 'push', 'pull')];
    rules.grant({ user: 'bob' }, requested);
    assert.deepEqual(requested, [repo('app/web', 'push', 'pull')]);
  });

  it('grants the catalog to admins only', () => {
    assert.deepEqual(rules.grant({ user: 'ada' }, [catalog]), [catalog]);
    assert.deepEqual(rules.grant({ user: 'bob' }, [catalog]), []);
    assert.deepEqual(rules.grant({ user: null }, [catalog]), []);
    assert.equal(hasCatalog(rules, { user: 'ada' }), true);
    assert.equal(hasCatalog(rules, { user: 'bob' }), false);
  });

  it('decides pulls, anonymous access and groups', () => {
    assert.equal(mayPull(rules, { user: 'bob' }, 'app/web'), true);
    assert.equal(mayPull(rules, { user: 'bob' }, 'secret/x'), false);
    assert.equal(mayPull(rules, { user: null }, 'public/x'), true);
    assert.equal(mayPull(rules, { user: 'ada' }, 'Bad/Name'), false);
    assert.equal(rules.allowsAnonymous(), true);
    assert.deepEqual(rules.groupsOf('carol'), ['developers']);
    assert.deepEqual(rules.groupsOf('nobody'), []);
  });

  it("never lets a CI token pull or list beyond its scopes, whatever its user's rules allow", () => {
    const ciOfAda: Identity = { user: 'ada', credential: 'ci:abcdefghijkl', scopeLimit: [repo('app/web', 'pull')] };
    assert.equal(mayPull(rules, { user: 'ada' }, 'secret/x'), true);
    assert.equal(mayPull(rules, ciOfAda, 'secret/x'), false);
    assert.equal(mayPull(rules, ciOfAda, 'app/web'), true);
    assert.equal(hasCatalog(rules, { user: 'ada' }), true);
    assert.equal(hasCatalog(rules, ciOfAda), false);
  });

  it('keeps personal namespaces apart when users alternate', () => {
    for (let round = 0; round < 3; round++) {
      assert.deepEqual(granted(rules, 'alice', 'alice/x', ['push']), ['push']);
      assert.deepEqual(granted(rules, 'erin', 'alice/x', ['push']), []);
      assert.deepEqual(granted(rules, 'erin', 'erin/x', ['push']), ['push']);
    }
  });
});

describe('deny precedence', () => {
  const allow = '  - users: [bob]\n    repositories: ["app/**"]\n    actions: ["*"]\n';
  const deny = '  - users: [bob]\n    repositories: [app/secret]\n    actions: [push, delete]\n    effect: deny\n';
  for (const [order, text] of [['deny last', `rules:\n${allow}${deny}`], ['deny first', `rules:\n${deny}${allow}`]] as const) {
    it(`a deny wins over an allow (${order})`, () => {
      const rules = rulesFrom(text);
      assert.deepEqual(granted(rules, 'bob', 'app/secret', ['*']), ['pull']);
      assert.deepEqual(granted(rules, 'bob', 'app/other', ['*']), ['delete', 'pull', 'push']);
    });
  }

  it('a deny of "*" takes every repository action but not the catalog', () => {
    const rules = rulesFrom('rules:\n  - users: [bob]\n    repositories: ["**"]\n    actions: ["*", catalog]\n  - users: [authenticated]\n    repositories: ["x/**"]\n    actions: ["*"]\n    effect: deny\n');
    assert.deepEqual(granted(rules, 'bob', 'x/y', ['*']), []);
    assert.deepEqual(granted(rules, 'bob', 'y', ['*']), ['delete', 'pull', 'push']);
    assert.equal(hasCatalog(rules, { user: 'bob' }), true);
  });

  it('a deny of catalog takes the catalog', () => {
    const rules = rulesFrom('rules:\n  - users: [authenticated]\n    actions: [catalog]\n  - users: [bob]\n    actions: [catalog]\n    effect: deny\n');
    assert.equal(hasCatalog(rules, { user: 'alice' }), true);
    assert.equal(hasCatalog(rules, { user: 'bob' }), false);
  });

  it('a deny naming anonymous does not make anonymous access possible', () => {
    const rules = rulesFrom('rules:\n  - users: [anonymous]\n    repositories: ["**"]\n    actions: [push]\n    effect: deny\n');
    assert.equal(rules.allowsAnonymous(), false);
  });
});

describe('hostile names', () => {
  const rules = rulesFrom('rules:\n  - users: [authenticated]\n    repositories: ["**", "{user}/**"]\n    actions: ["*"]\n');
  const personal = rulesFrom('rules:\n  - users: [authenticated]\n    repositories: ["{user}/**"]\n    actions: ["*"]\n');
  const invalidNames = ['..', '.', 'A', 'App/x', 'a//b', 'a/../b', '/a', 'a/', '', ' a', 'a:b', 'ü', 'café/x', 'a\nb', 'a'.repeat(256), `${'a/'.repeat(128)}a`];
  for (const name of invalidNames) {
    it(`grants nothing on ${JSON.stringify(name.slice(0, 40))}${name.length > 40 ? '...' : ''}`, () => {
      assert.deepEqual(granted(rules, 'alice', name, ['*', 'pull', 'push', 'delete']), []);
      assert.equal(mayPull(rules, { user: 'alice' }, name), false);
      assert.equal(rules.explain({ user: 'alice' }, 'pull', name).allowed, false);
    });
  }

  it('grants on a name of exactly 255 characters', () => {
    const name = `${'a/'.repeat(127)}a`;
    assert.equal(name.length, 255);
    assert.deepEqual(granted(rules, 'alice', name, ['pull']), ['pull']);
  });

  const userCases: [user: string, name: string, expected: string[], why: string][] = [
    ['x*', 'x/app', [], 'a user name is not a glob'],
    ['x*', 'xx/app', [], 'a user name is not a glob'],
    ['x?', 'xy/app', [], 'a user name is not a glob'],
    ['a/b', 'a/b/c', [], '{user} stands for one segment only'],
    ['a/b', 'a/b', [], '{user} stands for one segment only'],
    ['a.b', 'a.b/x', ['pull'], 'a dot in a user name is literal'],
    ['a.b', 'axb/x', [], 'a dot in a user name is literal'],
    ['Alice', 'alice/x', [], 'names are case-sensitive'],
    ['**', 'a/b', [], 'a user name is not a glob'],
    ['.*', 'ab/x', [], 'a user name is not a regular expression'],
    ['', 'x', [], 'an empty user name owns nothing'],
  ];
  for (const [user, name, expected, why] of userCases) {
    it(`user ${JSON.stringify(user)} on ${name} -> [${expected.join(',')}] (${why})`, () => {
      assert.deepEqual(granted(personal, user, name, ['pull']), expected);
    });
  }

  it('never throws on malformed requests', () => {
    const odd = [
      { type: 'repository', name: 'app', actions: [] },
      { type: 'repository', name: 'a'.repeat(100_000), actions: ['pull'] },
      { type: 'registry', name: 'catalog', actions: ['pull'] },
      { type: 'registry', name: 'other', actions: ['*'] },
      { type: '', name: '', actions: [''] },
    ];
    assert.deepEqual(rules.grant({ user: 'alice' }, odd), []);
  });
});

describe('immutable tags', () => {
  const rules = rulesFrom('rules: []\nimmutable_tags:\n  - repositories: ["app/**"]\n    tags: ["v*", semver]\n  - repositories: [tools]\n    tags: ["rc?"]\n');
  const cases: [name: string, tag: string, immutable: boolean][] = [
    ['app/web', 'v1.2.3', true],
    ['app/web', '1.2.3', true],
    ['app/web', '1.2.3-rc.1+b', true],
    ['app/web', '0.0.0', true],
    ['app/web', '10.20.30-alpha-1.beta', true],
    ['app/web', 'vnext', true],
    ['app', '1.2.3', true],
    ['app/web', 'latest', false],
    ['app/web', '1.2', false],
    ['app/web', '1.2.3.4', false],
    ['app/web', '01.2.3', false],
    ['app/web', '1.2.3-', false],
    ['app/web', 'V1.2.3', false],
    ['other/web', 'v1.2.3', false],
    ['tools', 'rc1', true],
    ['tools', 'rc10', false],
    ['tools', 'v1', false],
    ['App/web', 'v1', false],
  ];
  for (const [name, tag, immutable] of cases) {
    it(`${name}:${tag} is ${immutable ? '' : 'not '}immutable`, () => {
      assert.equal(rules.isImmutableTag(name, tag), immutable);
    });
  }
});

describe('explain', () => {
  const text = [
    'groups:', //                     line 1
    '  ci: [ci]', //                  line 2
    'rules:', //                      line 3
    '  - users: [authenticated]', //  line 4
    '    repositories: ["app/**"]',
    '    actions: [pull, push]',
    '  - groups: [ci]', //            line 7
    '    repositories: [app/secret]',
    '    actions: [push]',
    '    effect: deny',
    '  - users: [ada]', //            line 11
    '    actions: [catalog]',
    '',
  ].join('\n');
  const rules = rulesFrom(text);

  it('names the deny rule and its line', () => {
    const explanation = rules.explain({ user: 'ci' }, 'push', 'app/secret');
    assert.equal(explanation.allowed, false);
    assert.deepEqual(explanation.decidedBy, { index: 2, line: 7, effect: 'deny', text: 'deny push on app/secret for group ci' });
    assert.equal(explanation.reason, 'denied by rule 2 (line 7): deny push on app/secret for group ci');
  });

  it('names the allow rule and its line', () => {
    const explanation = rules.explain({ user: 'bob' }, 'push', 'app/secret');
    assert.equal(explanation.allowed, true);
    assert.equal(explanation.reason, 'allowed by rule 1 (line 4): allow pull, push on app/** for authenticated users');
  });

  it('says when no rule allows', () => {
    assert.deepEqual(rules.explain({ user: 'bob' }, 'push', 'x'), { allowed: false, decidedBy: undefined, reason: 'no rule allows push on x for bob (default: deny)' });
    assert.equal(rules.explain({ user: null }, 'pull', 'app/web').reason, 'no rule allows pull on app/web for anonymous (default: deny)');
    assert.equal(rules.explain({ user: 'ci' }, 'delete', 'app/web').reason, 'no rule allows delete on app/web for ci (groups: ci) (default: deny)');
  });

  it('explains the catalog', () => {
    assert.equal(rules.explain({ user: 'ada' }, 'catalog', '').reason, 'allowed by rule 3 (line 11): allow catalog for user ada');
    assert.equal(rules.explain({ user: 'bob' }, 'catalog', '').reason, 'no rule allows catalog for bob (default: deny)');
  });

  it('refuses unknown actions and invalid names', () => {
    const unknown = rules.explain({ user: 'bob' }, 'pul', 'app/web');
    assert.equal(unknown.allowed, false);
    assert.match(unknown.reason, /unknown action "pul"/);
    const invalid = rules.explain({ user: 'bob' }, 'pull', 'app/../x');
    assert.equal(invalid.allowed, false);
    assert.match(invalid.reason, /"app\/..\/x" is not a valid repository name/);
  });
});

describe('validation', () => {
  // Each case: file text, the line the error must name, and a part of its reason.
  const cases: [what: string, text: string, line: number, reason: RegExp][] = [
    ['an unknown top-level key', 'groups: {}\nrule: []\n', 2, /unknown key "rule"/],
    ['a top level that is not a mapping', '- users: [bob]\n', 1, /must be a mapping/],
    ['an unknown rule key', 'rules:\n  - users: [bob]\n    repository: [a]\n    actions: [pull]\n', 3, /unknown key "repository" in rule 1/],
    ['rules that are not a list', 'rules:\n  users: [bob]\n', 2, /rules must be a list/],
    ['a rule that is not a mapping', 'rules:\n  - bob\n', 2, /rule 1 must be a mapping/],
    ['users that are not a list', 'rules:\n  - users: bob\n    repositories: [a]\n    actions: [pull]\n', 2, /users of rule 1 must be a list/],
    ['a user that is a number', 'rules:\n  - users: [bob, 123]\n    repositories: [a]\n    actions: [pull]\n', 2, /must be a string \(123; quote it/],
    ['an unknown action', 'rules:\n  - users: [bob]\n    repositories: [a]\n    actions:\n      - pull\n      - pul\n', 6, /unknown action "pul"/],
    ['an empty action list', 'rules:\n  - users: [bob]\n    repositories: [a]\n    actions: []\n', 4, /actions of rule 1 is empty/],
    ['missing actions', 'rules:\n  - users: [bob]\n    repositories: [a]\n', 2, /rule 1 has no actions/],
    ['an unknown effect', 'rules:\n  - users: [bob]\n    repositories: [a]\n    actions: [pull]\n    effect: permit\n', 5, /effect must be allow or deny/],
    ['an effect that is a list', 'rules:\n  - users: [bob]\n    repositories: [a]\n    actions: [pull]\n    effect: [deny]\n', 5, /effect must be allow or deny/],
    ['an undefined group', 'groups:\n  ci: [x]\nrules:\n  - groups:\n      - ci\n      - devs\n    repositories: [a]\n    actions: [pull]\n', 6, /group "devs" is not defined; defined groups: ci/],
    ['a group without any groups section', 'rules:\n  - groups: [devs]\n    repositories: [a]\n    actions: [pull]\n', 2, /group "devs" is not defined/],
    ['a rule naming nobody', 'rules:\n  - repositories: [a]\n    actions: [pull]\n', 2, /names no users and no groups/],
    ['missing repositories', 'rules:\n  - users: [bob]\n    actions: [catalog, pull]\n', 2, /repository actions but no repositories/],
    ['empty repositories', 'rules:\n  - users: [bob]\n    repositories: []\n    actions: [pull]\n', 3, /repositories of rule 1 is empty/],
    ['an empty glob', 'rules:\n  - users: [bob]\n    repositories: [a, ""]\n    actions: [pull]\n', 3, /repositories of rule 1 contains an empty entry/],
    ['a glob with //', 'rules:\n  - users: [bob]\n    repositories:\n      - a//b\n    actions: [pull]\n', 4, /glob "a\/\/b" contains '\/\/'/],
    ['a glob with uppercase', 'rules:\n  - users: [bob]\n    repositories: [App]\n    actions: [pull]\n', 3, /uppercase/],
    ['a glob with a space', 'rules:\n  - users: [bob]\n    repositories: ["a b"]\n    actions: [pull]\n', 3, /glob "a b" contains " "/],
    ['a glob with a colon', 'rules:\n  - users: [bob]\n    repositories: ["host:5000/a"]\n    actions: [pull]\n', 3, /contains ":"/],
    ['a glob with a leading /', 'rules:\n  - users: [bob]\n    repositories: ["/a"]\n    actions: [pull]\n', 3, /starts or ends with/],
    ['** inside a segment', 'rules:\n  - users: [bob]\n    repositories: ["a/b**"]\n    actions: [pull]\n', 3, /'\*\*' must be a whole segment/],
    ['an unknown placeholder', 'rules:\n  - users: [bob]\n    repositories: ["{usr}/x"]\n    actions: [pull]\n', 3, /other than in \{user\}/],
    ['anonymous with {user}', 'rules:\n  - users:\n      - bob\n      - anonymous\n    repositories: ["{user}/**"]\n    actions: [pull]\n', 4, /"anonymous" cannot share rule 1 with "\{user\}\/\*\*"/],
    ['an unquoted *', 'rules:\n  - users: [bob]\n    repositories: [a]\n    actions: [*]\n', 4, /invalid YAML.*quote globs/],
    ['an unquoted {user}', 'rules:\n  - users: [bob]\n    repositories:\n      - {user}/**\n    actions: [pull]\n', 4, /invalid YAML.*quote globs/],
    ['a duplicate key', 'rules:\n  - users: [bob]\n    repositories: [a]\n    actions: [pull]\n    actions: [push]\n', 5, /invalid YAML: Map keys must be unique/],
    ['a special name as group member', 'groups:\n  all:\n    - bob\n    - authenticated\n', 4, /"authenticated" is a special name/],
    ['groups that are a list', 'groups:\n  - bob\n', 2, /groups must be a mapping/],
    ['a bad tag glob', 'immutable_tags:\n  - repositories: [a]\n    tags: [v1, "v+"]\n', 3, /tag glob "v\+" contains "\+"/],
    ['immutable tags without tags', 'immutable_tags:\n  - repositories: [a]\n', 2, /has no tags/],
    ['immutable tags with {user}', 'immutable_tags:\n  - repositories: ["{user}/**"]\n    tags: [semver]\n', 2, /cannot use \{user\}/],
    ['an unknown immutable_tags key', 'immutable_tags:\n  - repositories: [a]\n    tag: [v1]\n', 3, /unknown key "tag" in immutable_tags entry 1/],
  ];
  for (const [what, text, line, reason] of cases) {
    it(`rejects ${what} at line ${line}`, () => {
      assert.throws(
        () => parseAccessFile(text, 'test.yml'),
        (error: unknown) => {
          assert.ok(error instanceof AccessFileError, `not an AccessFileError: ${String(error)}`);
          assert.equal(error.line, line, error.message);
          assert.ok(error.message.startsWith(`test.yml:${line}: `), error.message);
          assert.match(error.message, reason);
          assert.doesNotMatch(error.message, /\n/);
          return true;
        },
      );
    });
  }

  it('accepts an anchored list reused through an alias', () => {
    const rules = rulesFrom('rules:\n  - users: [bob]\n    repositories: &apps ["app/**", tools]\n    actions: [pull]\n  - users: [ci]\n    repositories: *apps\n    actions: [push]\n');
    assert.deepEqual(granted(rules, 'ci', 'tools', ['pull', 'push']), ['push']);
  });

  it('warns about a catalog rule with repositories and about anonymous push', () => {
    const { warnings } = parseAccessFile('rules:\n  - users: [ada]\n    repositories: [a]\n    actions: [catalog]\n  - users: [anonymous]\n    repositories: [a]\n    actions: [push]\n', 'w.yml');
    assert.equal(warnings.length, 2);
    assert.match(warnings[0]!, /^w\.yml:3: rule 1 only grants catalog/);
    assert.match(warnings[1]!, /^w\.yml:5: rule 2 lets anonymous callers push or delete/);
  });

  const emptyFiles: [what: string, text: string][] = [
    ['an empty file', ''],
    ['a file of comments', '# nothing yet\n'],
    ['empty sections', 'groups:\nrules:\nimmutable_tags:\n'],
  ];
  for (const [what, text] of emptyFiles) {
    it(`accepts ${what} as "everyone denied", with a warning`, () => {
      const { rules, warnings } = parseAccessFile(text, 'empty.yml');
      assert.deepEqual(warnings, ['empty.yml: no rules, so everyone is denied everything']);
      assert.deepEqual(rules.grant({ user: 'bob' }, [repo('a', '*'), catalog]), []);
      assert.equal(rules.allowsAnonymous(), false);
    });
  }
});

describe('loadAccessFile', () => {
  it('reads a file and returns the warning for an empty one', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'access-rules-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'access.yml');
    await writeFile(file, '');
    const { warnings } = await loadAccessFile(file);
    assert.deepEqual(warnings, [`${file}: no rules, so everyone is denied everything`]);
    await writeFile(file, 'rules:\n  - users: [bob]\n    repositories: [a]\n    actions: [pul]\n');
    await assert.rejects(loadAccessFile(file), { name: 'AccessFileError', message: `${file}:4: unknown action "pul"; use pull, push, delete, "*" or catalog` });
  });

  it('names the file it cannot read', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'access-rules-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'missing.yml');
    await assert.rejects(loadAccessFile(file), (error: unknown) => error instanceof AccessFileError && error.message === `${file}: cannot read the access file (ENOENT)`);
  });
});

describe('AllowAuthenticated', () => {
  const rules = new AllowAuthenticated();

  it('grants every authenticated user everything asked for', () => {
    assert.deepEqual(rules.grant({ user: 'bob' }, [repo('app', 'push', 'pull'), repo('x/y', '*'), catalog]), [repo('app', 'pull', 'push'), repo('x/y', 'delete', 'pull', 'push'), catalog]);
    assert.equal(mayPull(rules, { user: 'bob' }, 'x'), true);
    assert.equal(hasCatalog(rules, { user: 'bob' }), true);
    assert.equal(rules.explain({ user: 'bob' }, 'delete', 'x').reason, 'no access file: every authenticated user may do everything');
  });

  it('grants anonymous callers nothing', () => {
    assert.deepEqual(rules.grant({ user: null }, [repo('app', 'pull'), catalog]), []);
    assert.equal(rules.allowsAnonymous(), false);
    assert.equal(mayPull(rules, { user: null }, 'x'), false);
    assert.equal(hasCatalog(rules, { user: null }), false);
    assert.equal(rules.explain({ user: null }, 'pull', 'x').allowed, false);
  });

  it('grants nothing on invalid names and has no immutable tags', () => {
    assert.deepEqual(rules.grant({ user: 'bob' }, [repo('a/../b', 'pull'), repo('A', 'pull')]), []);
    assert.equal(rules.isImmutableTag('app', 'v1.2.3'), false);
    assert.deepEqual(rules.groupsOf('bob'), []);
  });
});

describe('access.example.yml', async () => {
  const exampleFile = new URL('../../access.example.yml', import.meta.url);
  const text = await readFile(exampleFile, 'utf8');
  const { rules, warnings } = parseAccessFile(text, 'access.example.yml');

  it('is valid and raises no warnings', () => {
    assert.deepEqual(warnings, []);
  });

  // The file's comments hold its worked examples, e.g. "#   bob  push  alice/tools  -> denied: ...".
  const worked = [...text.matchAll(/^#\s+(\S+)\s+(pull|push|delete|catalog)\s+(\S+)\s+->\s+(allowed|denied)(?: by rule (\d+))?/gm)];

  it('has three worked examples', () => {
    assert.equal(worked.length, 3);
  });

  for (const [line, user, action, name, outcome, ruleNumber] of worked) {
    it(`behaves as its comment says: ${line.replace(/^#\s+/, '')}`, () => {
      const explanation = rules.explain({ user: user === 'anonymous' ? null : (user ?? '') }, action ?? '', name ?? '');
      assert.equal(explanation.allowed, outcome === 'allowed', explanation.reason);
      assert.equal(explanation.decidedBy?.index, ruleNumber === undefined ? undefined : Number(ruleNumber), explanation.reason);
    });
  }

  const cases: [user: string | null, name: string, requested: string[], expected: string[], why: string][] = [
    ['alice', 'app/signing', ['*'], ['delete', 'pull', 'push'], 'admins do everything'],
    ['bob', 'app/web', ['pull', 'push'], ['pull'], 'developers pull everything'],
    ['carol', 'carol/tools', ['*'], ['delete', 'pull', 'push'], 'personal namespace'],
    ['buildbot', 'app/web/debug', ['push'], [], 'app/* is one segment'],
    [null, 'public/base', ['pull', 'push'], ['pull'], 'public anonymous pull'],
    [null, 'app/web', ['pull'], [], 'nothing else for anonymous'],
  ];
  for (const [user, name, requested, expected, why] of cases) {
    it(`${label(user)} ${requested.join(',')} ${name} -> [${expected.join(',')}] (${why})`, () => {
      assert.deepEqual(granted(rules, user, name, requested), expected);
    });
  }

  it('gives the catalog to admins, anonymous a token, and keeps release tags', () => {
    assert.equal(hasCatalog(rules, { user: 'alice' }), true);
    assert.equal(hasCatalog(rules, { user: 'bob' }), false);
    assert.equal(rules.allowsAnonymous(), true);
    assert.equal(rules.isImmutableTag('app/web', '1.4.0'), true);
    assert.equal(rules.isImmutableTag('app/web', 'release-2024'), true);
    assert.equal(rules.isImmutableTag('app/web', 'latest'), false);
    assert.equal(rules.isImmutableTag('bob/tools', '1.4.0'), false);
    assert.equal(rules.hasImmutableTags('app/web'), true, 'deletes in app/web check its tags');
    assert.equal(rules.hasImmutableTags('bob/tools'), false, 'deletes in bob/tools need no tag lookup');
  });
});
