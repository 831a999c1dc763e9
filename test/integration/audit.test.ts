// The audit trail end to end: a push, a delete, a failed login and denials in token and Basic mode, anonymous named, never a secret, reopened after rotation (and a real SIGHUP), the token commands' lines, and syslog through a real rsyslogd.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/ports.js';
import { waitForOutput } from '../helpers/processes.js';
import { basic, fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import { runCli } from '../helpers/run-cli.js';
import { skopeoCopy, skopeoLogin } from '../helpers/skopeo.js';
import { startRsyslog, type Rsyslog } from '../helpers/rsyslog.js';

const rules = `
rules:
  - { users: [alice], repositories: ["app/**"], actions: ["*"] }
  - { users: [bob], repositories: ["app/**"], actions: [pull] }
  - { users: [anonymous, authenticated], repositories: ["public/**"], actions: [pull] }
  - { users: [bob], repositories: ["app/vault"], actions: ["*"], effect: deny }
`;
const users = { alice: 'alice-password', bob: 'bob-password' };
const wrongPassword = 'not-the-password-4711';

type AuditEntry = Record<string, unknown> & { event: string; user: string; source: string; time: string };

async function entries(file: string): Promise<AuditEntry[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter((line) => line.length > 0).map((line) => JSON.parse(line) as AuditEntry);
}

/** Events are written when a response has ended; the last one may be a moment behind the client. */
async function eventually(file: string, match: (entry: AuditEntry) => boolean): Promise<AuditEntry> {
  for (let i = 0; i < 100; i++) {
    const found = (await entries(file)).find(match);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no audit line matched in ${file}:\n${(await entries(file)).map((entry) => JSON.stringify(entry)).join('\n')}`);
}

for (const auth of ['token', 'basic'] as const) {
  describe(`audit trail (${auth} mode)`, () => {
    let work: string;
    let gw: TestGateway;
    let file: string;
    let image: TestImage;
    before(async () => {
      work = await mkdtemp(path.join(os.tmpdir(), 'audit-test-'));
      file = path.join(work, 'audit.log');
      gw = await startTestGateway({ auth, users, access: rules, env: { GATEWAY_AUDIT_LOG: file } });
      image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 16 * 1024 }] });
    });
    after(async () => {
      await gw?.close();
      await rm(work, { recursive: true, force: true });
    });

    test('a push and a delete: who, from where, repository, tag and digest', async () => {
      const authFile = path.join(work, 'auth.json');
      await skopeoLogin({ host: gw.host, user: 'alice', password: 'alice-password', certDir: gw.certDir, authFile });
      await skopeoCopy({ from: image.reference, to: `docker://${gw.host}/app/web:v1`, certDir: gw.certDir, authFile });
      const pushed = await eventually(file, (entry) => entry.event === 'manifest.pushed');
      assert.deepEqual({ user: pushed.user, source: pushed.source, repository: pushed.repository, tag: pushed.tag, digest: pushed.digest }, {
        user: 'alice',
        source: '127.0.0.1',
        repository: 'app/web',
        tag: 'v1',
        digest: image.manifestDigest,
      });
      assert.ok(!Number.isNaN(Date.parse(pushed.time)));

      const authorization = auth === 'basic' ? basic('alice', 'alice-password') : `Bearer ${await fetchToken(gw, 'alice', 'alice-password', ['repository:app/web:delete'])}`;
      const deleted = await request(gw, 'DELETE', `/v2/app/web/manifests/${image.manifestDigest}`, { headers: { Authorization: authorization } });
      assert.equal(deleted.status, 202);
      const line = await eventually(file, (entry) => entry.event === 'manifest.deleted');
      assert.deepEqual({ user: line.user, repository: line.repository, reference: line.reference }, { user: 'alice', repository: 'app/web', reference: image.manifestDigest });
    });

    test('a failed login names the user tried, the authenticator and the reason; denials name what was refused and the rule; anonymous is anonymous', async () => {
      const target = auth === 'basic' ? '/v2/app/web/tags/list' : '/token?service=registry-gateway&scope=repository:app/web:pull';
      const failed = await request(gw, 'GET', target, { headers: { Authorization: basic('alice', wrongPassword) } });
      assert.equal(failed.status, 401);
      const login = await eventually(file, (entry) => entry.event === 'login.failed');
      assert.equal(login.user, 'alice');
      assert.equal(login.authenticator, 'htpasswd');
      assert.match(String(login.reason), /wrong password/);

      if (auth === 'basic') {
        const denied = await request(gw, 'POST', '/v2/app/web/blobs/uploads/', { headers: { Authorization: basic('bob', 'bob-password') } });
        assert.notEqual(denied.status, 202);
        const anonymous = await request(gw, 'POST', '/v2/public/base/blobs/uploads/');
        assert.ok(anonymous.status === 401 || anonymous.status === 403);
      } else {
        await fetchToken(gw, 'bob', 'bob-password', ['repository:app/web:pull,push']);
        const anonymous = await request(gw, 'GET', '/token?service=registry-gateway&scope=repository:public/base:pull,push');
        assert.equal(anonymous.status, 200);
      }
      const bob = await eventually(file, (entry) => entry.event === 'access.denied' && entry.user === 'bob');
      assert.match(JSON.stringify(bob.denied), /push.*app\/web/);
      // A deny rule decides with its number and line in the access file.
      if (auth === 'basic') await request(gw, 'GET', '/v2/app/vault/tags/list', { headers: { Authorization: basic('bob', 'bob-password') } });
      else await fetchToken(gw, 'bob', 'bob-password', ['repository:app/vault:pull']);
      const vault = await eventually(file, (entry) => entry.event === 'access.denied' && JSON.stringify(entry.denied).includes('app/vault'));
      assert.deepEqual((vault.denied as { action: string; repository: string; rule: string }[]).map(({ action, repository, rule }) => [action, repository, rule.slice(0, 25)]), [['pull', 'app/vault', 'denied by rule 4 (line 6)']]);
      const anonymous = await eventually(file, (entry) => entry.event === 'access.denied' && entry.repository !== 'app/web' && JSON.stringify(entry.denied).includes('public/base'));
      assert.equal(anonymous.user, 'anonymous');

      const text = await readFile(file, 'utf8');
      for (const secret of [wrongPassword, ...Object.values(users)]) assert.ok(!text.includes(secret), 'no password in the audit trail');
      assert.ok(!/"event":"request"/.test(text), 'ordinary requests stay in the access log');
      assert.ok(!gw.logLines.some((line) => line.includes('"event":"login.failed"')), 'and audit lines stay out of it');
    });

    test('after rotation (rename, then what SIGHUP does) lines go to a new file; the token commands write theirs too', async () => {
      await rename(file, `${file}.1`);
      await gw.gateway.reload();
      await request(gw, 'GET', auth === 'basic' ? '/v2/app/web/tags/list' : '/token?service=registry-gateway', { headers: { Authorization: basic('bob', wrongPassword) } });
      const fresh = await eventually(file, (entry) => entry.event === 'login.failed' && entry.user === 'bob');
      assert.equal(fresh.user, 'bob');
      assert.ok(!(await entries(`${file}.1`)).some((entry) => entry.user === 'bob' && entry.event === 'login.failed'));

      const env = { GATEWAY_AUDIT_LOG: file, GATEWAY_HTPASSWD: gw.htpasswd, GATEWAY_CI_TOKENS: path.join(gw.dir, 'htpasswd', 'ci-tokens.json') };
      const created = await runCli(['token', 'create', '--user', 'alice', '--scope', 'repository:app/web:pull'], { cwd: gw.dir, env });
      assert.equal(created.code, 0, created.stderr);
      const id = /created CI token ([a-z2-7]+)/.exec(created.stderr)?.[1];
      assert.ok(id);
      const line = await eventually(file, (entry) => entry.event === 'ci-token.created');
      assert.deepEqual({ id: line.id, owner: line.owner, source: line.source }, { id, owner: 'alice', source: 'command line' });
      assert.ok(!(await readFile(file, 'utf8')).includes(created.stdout.trim()), 'never the token');
      const revoked = await runCli(['token', 'revoke', id], { cwd: gw.dir, env });
      assert.equal(revoked.code, 0, revoked.stderr);
      assert.equal((await eventually(file, (entry) => entry.event === 'ci-token.revoked')).owner, 'alice');
    });
  });
}

describe('audit trail settings', () => {
  test('an audit file that cannot be written stops the start, naming the setting', async () => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'audit-bad-'));
    try {
      await assert.rejects(startTestGateway({ env: { GATEWAY_AUDIT_LOG: path.join(work, 'no-such-folder', 'x', 'audit.log') } }).then((gw) => gw.close()), /GATEWAY_AUDIT_LOG/);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});

describe('audit trail to syslog (a real rsyslogd)', () => {
  let syslog: Rsyslog;
  let gw: TestGateway;
  before(async () => {
    syslog = await startRsyslog();
    gw = await startTestGateway({ auth: 'basic', users, access: rules, env: { GATEWAY_AUDIT_LOG: `syslog:${syslog.socket}` } });
  });
  after(async () => {
    await gw?.close();
    await syslog?.stop();
  });

  test('a failed login and a denial arrive as RFC 5424 messages: authpriv.info, registry-gateway, the pid, msgid audit, the JSON line', async () => {
    assert.equal((await request(gw, 'GET', '/v2/app/web/tags/list', { headers: { Authorization: basic('alice', wrongPassword) } })).status, 401);
    assert.equal((await request(gw, 'POST', '/v2/app/web/blobs/uploads/', { headers: { Authorization: basic('bob', 'bob-password') } })).status, 403);
    const failed = await syslog.waitFor((message) => message.includes('"event":"login.failed"'));
    // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG; PRI 86 = authpriv (10) * 8 + info (6).
    const header = /^<86>1 (\S+) \S+ registry-gateway (\d+) audit - (\{.*\})$/.exec(failed);
    assert.ok(header, failed);
    assert.ok(!Number.isNaN(Date.parse(header[1]!)));
    assert.equal(Number(header[2]), process.pid, 'the gateway runs in this test process');
    assert.deepEqual(pick(JSON.parse(header[3]!) as AuditEntry, ['user', 'source', 'authenticator']), { user: 'alice', source: '127.0.0.1', authenticator: 'htpasswd' });
    const denied = await syslog.waitFor((message) => message.includes('"event":"access.denied"'));
    assert.match(denied, /"user":"bob".*push.*app\/web/);
    assert.ok(!(await syslog.messages()).some((message) => message.includes(wrongPassword)));
    assert.equal(gw.gateway.auditFailures(), 0);
  });

  test('a syslog daemon restarting: lines lost meanwhile are counted, and lines go on arriving once it is back', async () => {
    const failuresBefore = gw.gateway.auditFailures();
    const paused = await syslog.pause();
    const fail = (user: string) => request(gw, 'GET', '/v2/app/web/tags/list', { headers: { Authorization: basic(user, wrongPassword) } });
    // `logger` finds the socket gone on the next message and ends: that line is lost, and counted.
    await fail('lost-while-down');
    for (let i = 0; i < 200 && gw.gateway.auditFailures() === failuresBefore; i++) await new Promise((resolve) => setTimeout(resolve, 25));
    assert.ok(gw.gateway.auditFailures() > failuresBefore, 'the loss is counted');
    await paused.resume();
    // After a pause `logger` is started again by the next line; lines sent before that are dropped (and counted).
    let arrived: string | undefined;
    for (let i = 0; i < 100 && arrived === undefined; i++) {
      await fail(`after-restart-${i}`);
      arrived = (await syslog.messages()).find((message) => message.includes('"user":"after-restart-'));
      if (arrived === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(arrived, 'lines arrive again');
    assert.ok(!(await syslog.messages()).some((message) => message.includes('lost-while-down')));
  });

  test('the token commands send theirs over UDP (syslog://HOST:PORT); one that cannot reach syslog creates no token', async () => {
    const env = { GATEWAY_AUDIT_LOG: `syslog://127.0.0.1:${syslog.udpPort}`, GATEWAY_HTPASSWD: gw.htpasswd, GATEWAY_CI_TOKENS: path.join(gw.dir, 'htpasswd', 'ci-tokens.json') };
    const created = await runCli(['token', 'create', '--user', 'alice', '--scope', 'repository:app/web:pull'], { cwd: gw.dir, env });
    assert.equal(created.code, 0, created.stderr);
    const id = /created CI token ([a-z2-7]+)/.exec(created.stderr)?.[1];
    const line = await syslog.waitFor((message) => message.includes('"event":"ci-token.created"'));
    assert.match(line, /^<86>1 .* registry-gateway \d+ audit - /);
    assert.match(line, new RegExp(`"source":"command line","id":"${id}","owner":"alice"`));

    const refused = await runCli(['token', 'create', '--user', 'alice', '--scope', 'repository:app/web:pull'], { cwd: gw.dir, env: { ...env, GATEWAY_AUDIT_LOG: `syslog:${gw.dir}/no-such.sock` } });
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /GATEWAY_AUDIT_LOG \(audit_log\): no syslog socket at .*no-such\.sock.*no token was created/);
    assert.equal(refused.stdout, '');
  });

  test('a syslog socket that is not there stops the start, naming the setting', async () => {
    await assert.rejects(
      startTestGateway({ env: { GATEWAY_AUDIT_LOG: `syslog:${path.dirname(syslog.socket)}/elsewhere.sock` } }).then((other) => other.close()),
      /GATEWAY_AUDIT_LOG \(audit_log\): no syslog socket at .*elsewhere\.sock/,
    );
  });
});

function pick(entry: AuditEntry, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((key) => [key, entry[key]]));
}

describe('audit trail of `gateway serve`', () => {
  test('logrotate-style: renamed, then a real SIGHUP, and the next lines go to a new 0600 file', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'audit-serve-'));
    const port = await freePort();
    const cli = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), GATEWAY_LISTEN: `127.0.0.1:${port}`, GATEWAY_SHUTDOWN_GRACE: '1', GATEWAY_AUDIT_LOG: 'audit.log' };
    const serve = spawn(process.execPath, [cli, 'serve'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await waitForOutput(serve, 'stdout', /"msg":"gateway listening"/);
      const gw = { host: `localhost:${port}`, ca: await readFile(path.join(dir, 'certs', 'ca.crt')) };
      const file = path.join(dir, 'audit.log');
      assert.equal((await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic('admin', wrongPassword) } })).status, 401);
      assert.equal((await eventually(file, (entry) => entry.event === 'login.failed')).user, 'admin');

      await rename(file, `${file}.1`);
      const reloaded = waitForOutput(serve, 'stdout', /"msg":"TLS certificate reloaded"/);
      serve.kill('SIGHUP');
      await reloaded;
      assert.equal((await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic('carol', wrongPassword) } })).status, 401);
      assert.equal((await eventually(file, (entry) => entry.event === 'login.failed')).user, 'carol');
      assert.deepEqual((await entries(`${file}.1`)).map((entry) => entry.user), ['admin']);
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.equal(serve.exitCode, null, 'SIGHUP did not stop it');
    } finally {
      if (serve.exitCode === null) {
        const exited = new Promise((resolve) => serve.once('exit', resolve));
        serve.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    }
  });
});
