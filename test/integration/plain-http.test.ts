// Plain HTTP on the TLS port: one plain answer (a redirect to https, or Go's 400), never the app; TLS on the same port unchanged.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createCertificates } from '../../src/tls/certs.js';
import { startHttpsServer, type RunningServer } from '../../src/tls/server.js';
import { requireCommand, runCommand } from '../helpers/clients.js';
import { request, startTestGateway, type TestGateway } from '../helpers/gateway.js';

interface PlainResponse {
  /** Everything the server sent before it closed. */
  raw: string;
  status: number | undefined;
  headers: Record<string, string>;
  body: string;
}

/** Sends `bytes` on a raw TCP connection and collects what comes back until the server closes it. */
async function sendRaw(port: number, bytes: string | Buffer): Promise<PlainResponse> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.write(bytes);
  await new Promise<void>((resolve) => {
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
  });
  const raw = Buffer.concat(chunks).toString('latin1');
  const [head = '', body = ''] = raw.split(/\r\n\r\n(.*)/s);
  const [statusLine = '', ...headerLines] = head.split('\r\n');
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1];
  const headers = Object.fromEntries(headerLines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
  return { raw, status: status === undefined ? undefined : Number(status), headers, body };
}

const goMessage = 'Client sent an HTTP request to an HTTPS server.';

function assertGoBadRequest(response: PlainResponse): void {
  assert.equal(response.status, 400, response.raw);
  assert.equal(response.headers['content-type'], 'application/json; charset=utf-8');
  assert.equal(response.headers.connection, 'close');
  assert.deepEqual(JSON.parse(response.body), { errors: [{ code: 'UNSUPPORTED', message: goMessage }] });
}

describe('plain HTTP on the gateway TLS port', () => {
  let gw: TestGateway;
  let port: number;
  before(async () => {
    gw = await startTestGateway({ auth: 'token' });
    port = gw.gateway.port;
  });
  after(() => gw?.close());

  test('GET is redirected to the same host and path over https, and the connection closes', async () => {
    const response = await sendRaw(port, `GET /v2/ HTTP/1.1\r\nHost: localhost:${port}\r\nUser-Agent: docker/28\r\n\r\n`);
    assert.equal(response.status, 301, response.raw);
    assert.equal(response.headers.location, `https://localhost:${port}/v2/`);
    assert.equal(response.headers['content-length'], '0');
    assert.equal(response.headers.connection, 'close');
  });

  test('HEAD keeps the query; the host is lowercased as the app does', async () => {
    const response = await sendRaw(port, `HEAD /v2/team/app/manifests/v1?x=1 HTTP/1.1\r\nhost: LocalHost:${port}\r\n\r\n`);
    assert.equal(response.status, 301);
    assert.equal(response.headers.location, `https://localhost:${port}/v2/team/app/manifests/v1?x=1`);
  });

  test('curl following the redirect reaches the real answer: the registry 401 and its token challenge', async () => {
    await requireCommand('curl', 'curl');
    const { stdout } = await runCommand('curl', ['-sS', '-L', '--cacert', path.join(gw.certDir, 'ca.crt'), '-D', '-', '-o', '/dev/null', '-w', 'final=%{http_code} %{url_effective}', `http://localhost:${port}/v2/`], { label: 'curl' });
    assert.match(stdout, /^HTTP\/1\.1 301 /);
    assert.match(stdout, /www-authenticate: Bearer realm="https:\/\/localhost:\d+\/token"/i);
    assert.ok(stdout.endsWith(`final=401 https://localhost:${port}/v2/`), stdout);
  });

  test('methods with a body get Go\'s 400 in the registry error format, never a redirect', async () => {
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const response = await sendRaw(port, `${method} /v2/team/app/blobs/uploads/ HTTP/1.1\r\nHost: localhost:${port}\r\nContent-Length: 5\r\n\r\nhello`);
      assertGoBadRequest(response);
    }
  });

  test('a missing, malformed or repeated Host, an absolute target, or a broken head get the 400', async () => {
    const heads = [
      'GET /v2/ HTTP/1.1\r\n\r\n',
      'GET /v2/ HTTP/1.1\r\nHost: evil.example/x\r\n\r\n',
      'GET /v2/ HTTP/1.1\r\nHost: a b\r\n\r\n',
      `GET /v2/ HTTP/1.1\r\nHost: localhost:${port}\r\nHost: evil.example\r\n\r\n`,
      `GET http://evil.example/v2/ HTTP/1.1\r\nHost: localhost:${port}\r\n\r\n`,
      `GET /v2/ HTTP/1.1\r\nHost: localhost:${port}\r\n folded\r\n\r\n`,
      'GARBAGE\r\n\r\n',
    ];
    for (const head of heads) assertGoBadRequest(await sendRaw(port, head));
    const hugeHead = `GET /v2/ HTTP/1.1\r\nHost: localhost:${port}\r\nX-Filler: ${'a'.repeat(10_000)}\r\n\r\n`;
    assertGoBadRequest(await sendRaw(port, hugeHead));
  });

  test('bytes that are neither HTTP nor TLS are closed without an answer', async () => {
    const response = await sendRaw(port, Buffer.from([0x00, 0x01, 0x02, 0xff, 0x0d, 0x0a, 0x0d, 0x0a]));
    assert.equal(response.status, undefined);
    assert.equal(response.raw.startsWith('HTTP/'), false);
  });

  test('no plain-HTTP request reaches the app; each is logged as such; TLS on the same port still works', async () => {
    await sendRaw(port, `GET /v2/_catalog HTTP/1.1\r\nHost: localhost:${port}\r\n\r\n`);
    // The app's access log saw only the https requests curl made after following its redirect.
    const requestLines = gw.logLines.map((line) => JSON.parse(line)).filter((entry) => entry.msg === 'request');
    assert.deepEqual(requestLines.map((entry) => `${entry.method} ${entry.path}`), ['GET /v2/']);
    const plain = gw.logLines.map((line) => JSON.parse(line)).filter((entry) => entry.msg === 'plain HTTP request on the TLS port');
    assert.ok(plain.some((entry) => entry.method === 'GET' && entry.target === '/v2/_catalog' && entry.status === 301));
    assert.ok(plain.some((entry) => entry.method === 'POST' && entry.status === 400));
    assert.equal((await request(gw, 'GET', '/v2/')).status, 401);
  });
});

const dockerCli = (process.env.PATH ?? '').split(path.delimiter).map((dir) => path.join(dir, 'docker')).find((file) => existsSync(file));

describe('docker login falling back to plain HTTP on a loopback name', { skip: dockerCli ? false : 'the docker CLI is not on PATH' }, () => {
  for (const [mode, reason] of [['token', /unauthorized: incorrect username or password/], ['basic', /401 Unauthorized/]] as const) {
    test(`a wrong password (${mode} mode) reports why, not EOF`, async (t) => {
      const gw = await startTestGateway({ auth: mode });
      t.after(() => gw.close());
      const dockerConfig = path.join(gw.dir, 'docker-config');
      await mkdir(dockerConfig);
      const env = { PATH: process.env.PATH ?? '', DOCKER_CONFIG: dockerConfig, HOME: gw.dir };
      const login = runCommand(dockerCli!, ['login', gw.host, '-u', 'alice', '--password-stdin'], { label: 'docker login', env, stdin: 'wrong' });
      await assert.rejects(login, (error: Error) => {
        assert.match(error.message, reason);
        assert.doesNotMatch(error.message, /\bEOF\b/);
        return true;
      });
      // docker tried http://HOST:PORT after https (loopback names are insecure registries to it) and was sent back.
      const plain = gw.logLines.map((line) => JSON.parse(line)).filter((entry) => entry.msg === 'plain HTTP request on the TLS port');
      assert.ok(plain.some((entry) => entry.method === 'GET' && entry.target === '/v2/' && entry.status === 301), 'docker fell back to plain HTTP');
    });
  }
});

describe('plain HTTP with public_url set', () => {
  test('redirects to the public origin whatever the Host header says', async (t) => {
    const gw = await startTestGateway({ env: { GATEWAY_PUBLIC_URL: 'https://registry.example.test:8443' } });
    t.after(() => gw.close());
    const response = await sendRaw(gw.gateway.port, 'GET /v2/ HTTP/1.1\r\nHost: attacker.example\r\n\r\n');
    assert.equal(response.status, 301);
    assert.equal(response.headers.location, 'https://registry.example.test:8443/v2/');
  });
});

describe('the HTTPS server behind the first-byte check', () => {
  let server: RunningServer;
  let dir: string;
  let ca: Buffer;
  let cert: Buffer;
  let key: Buffer;
  let requests = 0;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plain-http-server-'));
    const files = await createCertificates({ dir: path.join(dir, 'certs'), hosts: ['localhost', '127.0.0.1'] });
    [ca, cert, key] = await Promise.all([readFile(files.caCert), readFile(files.serverCert), readFile(files.serverKey)]);
    server = await startHttpsServer(
      (_req, res) => {
        requests += 1;
        res.end('ok');
      },
      { cert, key, listen: { host: '127.0.0.1', port: 0 }, headersTimeoutMs: 300, redirectHost: (host) => host },
    );
  });

  test('a plain-HTTP head that never ends is closed by the header timeout, unanswered', { timeout: 20_000 }, async () => {
    const response = await sendRaw(server.address.port, 'GET /v2/ HTTP/1.1\r\nHost: local');
    assert.equal(response.raw, '');
  });

  test('a connection that sends nothing is closed by the header timeout', { timeout: 20_000 }, async () => {
    assert.equal((await sendRaw(server.address.port, '')).raw, '');
  });

  test('TLS keep-alive works across the hand-over: the second request reuses the connection', async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<{ body: string; reused: boolean }>((resolve, reject) => {
        const req = https.get({ host: '127.0.0.1', port: server.address.port, path: '/', ca, agent }, (res) => {
          let body = '';
          res.on('data', (chunk) => (body += chunk));
          res.on('end', () => resolve({ body, reused: req.reusedSocket }));
        });
        req.on('error', reject);
      });
    assert.deepEqual(await get(), { body: 'ok', reused: false });
    assert.deepEqual(await get(), { body: 'ok', reused: true });
    agent.destroy();
    assert.equal(requests, 2);
  });

  test('close() ends idle TLS connections and half-sent plain heads at once, without waiting for timeouts', { timeout: 20_000 }, async () => {
    const slow = await startHttpsServer((_req, res) => res.end('ok'), { cert, key, listen: { host: '127.0.0.1', port: 0 }, headersTimeoutMs: 60_000 });
    const agent = new https.Agent({ keepAlive: true });
    await new Promise<void>((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: slow.address.port, path: '/', ca, agent }, (res) => res.resume().on('end', resolve)).on('error', reject);
    });
    const half = net.connect(slow.address.port, '127.0.0.1');
    half.on('error', () => {});
    await once(half, 'connect');
    half.write('GET / HTTP/1.1\r\nHost: x');
    const halfClosed = new Promise((resolve) => half.on('close', resolve));
    await slow.close(60_000);
    await halfClosed;
    agent.destroy();
  });

  after(async () => {
    await server.close(1000);
    await rm(dir, { recursive: true, force: true });
  });
});
