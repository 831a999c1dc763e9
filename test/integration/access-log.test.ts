// The access log, end to end: failed logins name the user tried and why, denials name the action, repository and rule, anonymous is "anonymous", never a secret.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { basic, fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { logLineFor } from '../helpers/sources.js';

const rules = `
groups:
  ci: [ci]
rules:
  - users: [authenticated]
    repositories: ["{user}/**"]
    actions: ["*"]
  - groups: [ci]
    repositories: ["app/*"]
    actions: [pull, push]
  - effect: deny
    groups: [ci]
    repositories: ["app/secret"]
    actions: [push]
  - users: [anonymous, authenticated]
    repositories: ["public/**"]
    actions: [pull]
`;

const users = { alice: 'alice-password', bob: 'bob-password', ci: 'ci-password' };
const wrongPassword = 'not-the-password-4711';

/** The last request line for this method and path. */
const lineOf = (gw: TestGateway, method: string, path: string, more: (entry: Record<string, any>) => boolean = () => true) =>
  logLineFor(gw, (entry) => entry.method === method && entry.path === path && more(entry));

describe('access log (token mode)', () => {
  let gw: TestGateway;
  const secrets: string[] = [wrongPassword, ...Object.values(users)];
  before(async () => {
    gw = await startTestGateway({ users, access: rules });
  });
  after(() => gw.close());

  test('a failed login names the user tried and the reason; the client cannot tell unknown user from wrong password', async () => {
    const wrong = await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic('alice', wrongPassword) } });
    const unknown = await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic('mallory', wrongPassword) } });
    assert.equal(wrong.status, 401);
    assert.equal(unknown.status, 401);
    assert.deepEqual(unknown.json(), wrong.json(), 'the same answer for both');
    const wrongLine = await lineOf(gw, 'GET', '/token', (entry) => entry.user === 'alice');
    assert.equal(wrongLine.status, 401);
    assert.equal(wrongLine.reason, 'wrong password');
    const unknownLine = await lineOf(gw, 'GET', '/token', (entry) => entry.user === 'mallory');
    assert.equal(unknownLine.reason, 'unknown user');

    const form = new URLSearchParams({ grant_type: 'password', username: 'bob', password: wrongPassword, client_id: 'test' }).toString();
    const posted = await request(gw, 'POST', '/token', { headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form });
    assert.equal(posted.status, 401);
    const postedLine = await lineOf(gw, 'POST', '/token');
    assert.equal(postedLine.user, 'bob');
    assert.equal(postedLine.reason, 'wrong password');

    const malformed = await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: 'Basic !!!' } });
    assert.equal(malformed.status, 401);
    assert.equal((await lineOf(gw, 'GET', '/token', (entry) => entry.reason === 'malformed credentials')).user, undefined);
  });

  test('a partial grant and a refused Bearer request name user, action, repository and the deciding rule', async () => {
    const ciToken = await fetchToken(gw, 'ci', 'ci-password', ['repository:app/secret:pull,push']);
    secrets.push(ciToken);
    const grantLine = await lineOf(gw, 'GET', '/token', (entry) => entry.user === 'ci' && entry.status === 200);
    assert.equal(grantLine.denied.length, 1);
    assert.equal(grantLine.denied[0].action, 'push');
    assert.equal(grantLine.denied[0].repository, 'app/secret');
    assert.match(grantLine.denied[0].rule, /^denied by rule 3 \(line 11\)/);

    const push = await request(gw, 'POST', '/v2/app/secret/blobs/uploads/', { headers: { Authorization: `Bearer ${ciToken}` } });
    assert.equal(push.status, 401);
    const pushLine = await lineOf(gw, 'POST', '/v2/app/secret/blobs/uploads/');
    assert.equal(pushLine.user, 'ci');
    assert.deepEqual(
      pushLine.denied.map((denial: Record<string, string>) => [denial.action, denial.repository]),
      [['push', 'app/secret']],
    );
    assert.match(pushLine.denied[0].rule, /^denied by rule 3 \(line 11\)/);

    const bobToken = await fetchToken(gw, 'bob', 'bob-password', ['repository:alice/app:pull']);
    secrets.push(bobToken);
    const bobLine = await lineOf(gw, 'GET', '/token', (entry) => entry.user === 'bob' && entry.status === 200);
    assert.deepEqual(bobLine.denied, [{ action: 'pull', repository: 'alice/app', rule: 'no rule allows pull on alice/app for bob (default: deny)' }]);
  });

  test('anonymous callers are logged as anonymous, with what was denied them', async () => {
    const ping = await request(gw, 'GET', '/v2/');
    assert.equal(ping.status, 401);
    assert.equal((await lineOf(gw, 'GET', '/v2/')).user, 'anonymous');
    const anonymousToken = await request(gw, 'GET', '/token?service=registry-gateway&scope=repository:public/tool:pull&scope=repository:alice/app:pull');
    assert.equal(anonymousToken.status, 200);
    secrets.push(anonymousToken.json().token);
    const line = await lineOf(gw, 'GET', '/token', (entry) => entry.user === 'anonymous');
    assert.deepEqual(line.denied, [{ action: 'pull', repository: 'alice/app', rule: 'no rule allows pull on alice/app for anonymous (default: deny)' }]);
  });

  test('never a password, token or Authorization value, in any field', async () => {
    const everything = gw.logLines.join('\n');
    for (const secret of [...secrets, ...secrets.map((secret) => secret.split('.')[2] ?? secret), basic('alice', wrongPassword).slice(6), basic('bob', 'bob-password').slice(6)]) {
      assert.ok(!everything.includes(secret), 'a secret reached the log');
    }
  });
});

describe('access log (basic mode)', () => {
  test('a denial names user, action, repository and rule; anonymous is anonymous', async (t) => {
    const gw = await startTestGateway({ auth: 'basic', users, access: rules });
    t.after(() => gw.close());
    const denied = await request(gw, 'POST', '/v2/public/tool/blobs/uploads/', { headers: { Authorization: basic('bob', 'bob-password') } });
    assert.equal(denied.status, 403);
    const line = await lineOf(gw, 'POST', '/v2/public/tool/blobs/uploads/');
    assert.equal(line.user, 'bob');
    assert.deepEqual(line.denied, [{ action: 'push', repository: 'public/tool', rule: 'no rule allows push on public/tool for bob (default: deny)' }]);

    const anonymous = await request(gw, 'GET', '/v2/alice/app/tags/list');
    assert.equal(anonymous.status, 401);
    const anonymousLine = await lineOf(gw, 'GET', '/v2/alice/app/tags/list');
    assert.equal(anonymousLine.user, 'anonymous');
    assert.equal(anonymousLine.denied[0].rule, 'no rule allows pull on alice/app for anonymous (default: deny)');

    const failed = await request(gw, 'GET', '/v2/alice/app/tags/list', { headers: { Authorization: basic('alice', wrongPassword) } });
    assert.equal(failed.status, 401);
    const failedLine = await lineOf(gw, 'GET', '/v2/alice/app/tags/list', (entry) => entry.user === 'alice');
    assert.equal(failedLine.reason, 'wrong password');
    assert.ok(!gw.logLines.join('\n').includes(wrongPassword));
  });
});
