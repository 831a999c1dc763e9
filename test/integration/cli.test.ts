// The `gateway` command as users run it: quick start with the embedded registry, certs, users, config errors, docker login.

import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, copyFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request } from '../helpers/gateway.js';
import { buildOciImage } from '../helpers/oci-image.js';
import { freePort } from '../helpers/ports.js';
import { skopeoCopy, skopeoInspectDigest, skopeoLogin } from '../helpers/skopeo.js';

const cli = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function gateway(args: string[], options: { cwd: string; env?: Record<string, string>; input?: string }): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [cli, ...args], { cwd: options.cwd, env: { PATH: process.env.PATH ?? '', ...options.env } }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
    child.stdin?.end(options.input ?? '');
  });
}

function waitForOutput(child: ChildProcess, stream: 'stdout' | 'stderr', pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern} in ${stream}; got:\n${seen}`)), timeoutMs);
    child[stream]!.on('data', (chunk: Buffer) => {
      seen += chunk.toString('utf8');
      const match = seen.match(pattern);
      if (match) {
        clearTimeout(timer);
        resolve(match);
      }
    });
  });
}

function portIsClosed(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

describe('gateway serve: the quick start', () => {
  let dir: string;
  let child: ChildProcess;
  let port: number;
  let password: string;
  let registryPort: number;
  let exited: Promise<number | null>;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-cli-'));
    port = await freePort();
    child = spawn(process.execPath, [cli, 'serve'], { cwd: dir, env: { PATH: process.env.PATH ?? '', GATEWAY_LISTEN: `127.0.0.1:${port}` }, stdio: ['ignore', 'pipe', 'pipe'] });
    exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    const passwordLine = waitForOutput(child, 'stderr', /user "admin" and password\s+(\S+)/);
    const registryLine = waitForOutput(child, 'stdout', /"msg":"embedded registry started"/);
    const listening = waitForOutput(child, 'stdout', /"msg":"gateway listening"/);
    const registryUrl = waitForOutput(child, 'stdout', /"binary":"[^"]+","url":"http:\/\/127\.0\.0\.1:(\d+)"/);
    password = (await passwordLine)[1]!;
    await registryLine;
    registryPort = Number((await registryUrl)[1]);
    await listening;
  });
  after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  test('first start creates a CA, a server certificate, a token key and an admin user, with private keys 0600', async () => {
    for (const file of ['ca.crt', 'server.crt', 'server.key', 'token.crt', 'token.key']) assert.ok(existsSync(path.join(dir, 'certs', file)), file);
    assert.ok(!existsSync(path.join(dir, 'certs', 'ca.key')), 'the CA key stays out of the folder the gateway reads');
    for (const file of ['ca/ca.key', 'certs/server.key', 'certs/token.key', 'htpasswd/htpasswd']) {
      assert.equal((await stat(path.join(dir, file))).mode & 0o077, 0, `${file} is private`);
    }
    assert.match(await readFile(path.join(dir, 'htpasswd', 'htpasswd'), 'utf8'), /^admin:\$2y\$10\$/);
  });

  test('skopeo logs in with the printed password and pushes to the embedded registry, storage under ./data', async () => {
    const certDir = path.join(dir, 'client-certs');
    await mkdir(certDir);
    await copyFile(path.join(dir, 'certs', 'ca.crt'), path.join(certDir, 'ca.crt'));
    const authFile = path.join(dir, 'auth.json');
    const host = `localhost:${port}`;
    await skopeoLogin({ host, user: 'admin', password, certDir, authFile });
    const image = await buildOciImage({ dir: path.join(dir, 'image'), tag: 'v1', layers: [{ sizeBytes: 256 * 1024 }] });
    await skopeoCopy({ from: image.reference, to: `docker://${host}/quick/start:v1`, certDir, authFile });
    assert.equal(await skopeoInspectDigest({ image: `docker://${host}/quick/start:v1`, certDir, authFile }), image.manifestDigest);
    assert.ok(existsSync(path.join(dir, 'data', 'registry', 'docker', 'registry', 'v2', 'repositories', 'quick', 'start')));
    const ca = await readFile(path.join(dir, 'certs', 'ca.crt'));
    assert.equal((await request({ host, ca }, 'GET', '/readyz')).status, 200);
  });

  test('SIGTERM stops the gateway and its embedded registry cleanly', async () => {
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.equal(await portIsClosed(registryPort), true);
    assert.equal(await portIsClosed(port), true);
  });
});

describe('gateway commands', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-cmd-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('certs: creates the files with the given SANs, explains how to trust the CA, refuses to overwrite without --force', async () => {
    const first = await gateway(['certs', '--dir', 'tls', '--host', 'registry.example.com', '--host', '10.1.2.3', '--port', '443'], { cwd: dir });
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /\/etc\/docker\/certs\.d\/registry\.example\.com/);
    const { X509Certificate } = await import('node:crypto');
    const cert = new X509Certificate(await readFile(path.join(dir, 'tls', 'server.crt')));
    assert.equal(cert.subjectAltName, 'DNS:registry.example.com, IP Address:10.1.2.3');
    const again = await gateway(['certs', '--dir', 'tls', '--host', 'registry.example.com'], { cwd: dir });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /--force/);
    assert.doesNotMatch(again.stderr, /at .*\.js:\d+/, 'no stack trace');
    const forced = await gateway(['certs', '--dir', 'tls', '--host', 'registry.example.com', '--force'], { cwd: dir });
    assert.equal(forced.code, 0, forced.stderr);
    const bad = await gateway(['certs', '--dir', 'tls2', '--host', 'https://x'], { cwd: dir });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /https:\/\/x/);
  });

  test('user add / list / remove manage an htpasswd file that Apache htpasswd accepts', async () => {
    const add = await gateway(['user', 'add', 'alice', '--password-stdin', '--cost', '5'], { cwd: dir, input: 'alice-secret\n' });
    assert.equal(add.code, 0, add.stderr);
    await gateway(['user', 'add', 'bob', '--password-stdin', '--cost', '5'], { cwd: dir, input: 'bob-secret' });
    const list = await gateway(['user', 'list'], { cwd: dir });
    assert.deepEqual(list.stdout.trim().split('\n'), ['alice', 'bob']);
    const verified = await new Promise<number>((resolve) => execFile('htpasswd', ['-vb', path.join(dir, 'htpasswd', 'htpasswd'), 'alice', 'alice-secret'], (error) => resolve(error ? 1 : 0)));
    assert.equal(verified, 0);
    const removed = await gateway(['user', 'remove', 'alice'], { cwd: dir });
    assert.equal(removed.code, 0);
    const missing = await gateway(['user', 'remove', 'alice'], { cwd: dir });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no user "alice"/);
    const hostile = await gateway(['user', 'add', 'eve:admin', '--password-stdin'], { cwd: dir, input: 'x' });
    assert.notEqual(hostile.code, 0);
    const noPassword = await gateway(['user', 'add', 'carol'], { cwd: dir });
    assert.notEqual(noPassword.code, 0);
    assert.match(noPassword.stderr, /--password-stdin/);
  });

  test('token create prints a credential once, list never shows secrets, revoke removes it', async () => {
    assert.equal((await gateway(['user', 'add', 'ci', '--password-stdin', '--cost', '4'], { cwd: dir, input: 'ci-password' })).code, 0);
    const created = await gateway(['token', 'create', '--user', 'ci', '--scope', 'repository:app/web:pull,push', '--ttl', '30d', '--description', 'deploys'], { cwd: dir });
    assert.equal(created.code, 0, created.stderr);
    const credential = created.stdout.trim();
    assert.match(credential, /^gwt_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
    const id = credential.split('_')[1]!;
    const listed = await gateway(['token', 'list'], { cwd: dir });
    assert.match(listed.stdout, new RegExp(`^${id}  ci  repository:app/web:pull,push  created .* expires .*"deploys"`, 'm'));
    const stored = await readFile(path.join(dir, 'htpasswd', 'ci-tokens.json'), 'utf8');
    assert.ok(!stored.includes(credential.slice('gwt_'.length + id.length + 1)), 'the secret is not stored');
    assert.equal((await stat(path.join(dir, 'htpasswd', 'ci-tokens.json'))).mode & 0o077, 0);
    const badScope = await gateway(['token', 'create', '--user', 'ci', '--scope', 'repository:App:pull'], { cwd: dir });
    assert.notEqual(badScope.code, 0);
    assert.match(badScope.stderr, /repository:App:pull/);
    const badTtl = await gateway(['token', 'create', '--user', 'ci', '--scope', 'repository:app:pull', '--ttl', 'soon'], { cwd: dir });
    assert.notEqual(badTtl.code, 0);
    assert.match(badTtl.stderr, /soon/);
    assert.equal((await gateway(['token', 'revoke', id], { cwd: dir })).code, 0);
    assert.doesNotMatch((await gateway(['token', 'list'], { cwd: dir })).stdout, new RegExp(id));
    const again = await gateway(['token', 'revoke', id], { cwd: dir });
    assert.equal(again.code, 1);
  });

  test('access check explains a decision with the rule and line, exit 1 when denied', async () => {
    const { copyFile: copy } = await import('node:fs/promises');
    await copy(fileURLToPath(new URL('../../../access.example.yml', import.meta.url)), path.join(dir, 'access.yml'));
    const allowed = await gateway(['access', 'check', 'buildbot', 'push', 'app/web'], { cwd: dir });
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /^allowed: allowed by rule 3 \(line \d+\)/);
    const denied = await gateway(['access', 'check', 'buildbot', 'push', 'app/signing'], { cwd: dir });
    assert.equal(denied.code, 1);
    assert.match(denied.stdout, /^denied: denied by rule 6 \(line \d+\)/);
    const anonymous = await gateway(['access', 'check', 'anonymous', 'pull', 'public/base'], { cwd: dir });
    assert.equal(anonymous.code, 0);
    await writeFile(path.join(dir, 'broken.yml'), 'rules:\n  - users: [bob]\n    actions: [fly]\n');
    const broken = await gateway(['access', 'check', 'bob', 'pull', 'x', '--access', 'broken.yml'], { cwd: dir });
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /broken\.yml:\d+:/);
    await rm(path.join(dir, 'access.yml'));
  });

  test('serve refuses bad settings with a message naming the setting, and says how to get a registry', async () => {
    const badAuth = await gateway(['serve'], { cwd: dir, env: { GATEWAY_AUTH: 'ldap' } });
    assert.equal(badAuth.code, 2);
    assert.match(badAuth.stderr, /GATEWAY_AUTH \(auth\)/);
    const badTtl = await gateway(['config', 'check'], { cwd: dir, env: { GATEWAY_TOKEN_TTL: 'soon' } });
    assert.equal(badTtl.code, 2);
    assert.match(badTtl.stderr, /GATEWAY_TOKEN_TTL/);
    const noRegistry = await gateway(['serve'], { cwd: dir, env: { PATH: '/nonexistent', GATEWAY_LISTEN: '127.0.0.1:0' } });
    assert.equal(noRegistry.code, 2);
    assert.match(noRegistry.stderr, /apt-get install docker-registry/);
    assert.match(noRegistry.stderr, /GATEWAY_UPSTREAM/);
    const ok = await gateway(['config', 'check'], { cwd: dir, env: { GATEWAY_UPSTREAM: 'http://registry:5000' } });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /upstream: http:\/\/registry:5000/);
  });

  test('serve --help documents every setting', async () => {
    const help = await gateway(['serve', '--help'], { cwd: dir });
    for (const name of ['GATEWAY_LISTEN', 'GATEWAY_UPSTREAM', 'GATEWAY_TLS_CERT', 'GATEWAY_TLS_KEY', 'GATEWAY_HTPASSWD', 'GATEWAY_AUTH', 'GATEWAY_PUBLIC_URL', 'GATEWAY_SERVICE', 'GATEWAY_TOKEN_TTL', 'GATEWAY_REGISTRY_BIN']) {
      assert.match(help.stdout, new RegExp(name), name);
    }
  });
});

const dockerCli = (process.env.PATH ?? '').split(':').map((p) => path.join(p, 'docker')).find((p) => existsSync(p));

describe('docker login', { skip: dockerCli ? false : 'the docker CLI is not on PATH' }, () => {
  test('docker login stores a refresh token and a wrong password fails', async (t) => {
    const { startTestGateway } = await import('../helpers/gateway.js');
    const gw = await startTestGateway({ auth: 'token' });
    t.after(() => gw.close());
    const dockerConfig = path.join(gw.dir, 'docker-config');
    await mkdir(dockerConfig);
    const login = (password: string) =>
      new Promise<Run>((resolve) => {
        const child = execFile(dockerCli!, ['login', gw.host, '-u', 'alice', '--password-stdin'], { env: { PATH: process.env.PATH ?? '', DOCKER_CONFIG: dockerConfig, HOME: gw.dir } }, (error, stdout, stderr) =>
          resolve({ code: error ? 1 : 0, stdout, stderr }),
        );
        child.stdin?.end(password);
      });
    const good = await login('alice-password');
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /Login Succeeded/);
    const saved = JSON.parse(await readFile(path.join(dockerConfig, 'config.json'), 'utf8'));
    assert.equal(typeof saved.auths[gw.host].identitytoken, 'string');
    const bad = await login('wrong');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /incorrect username or password/);
  });
});
