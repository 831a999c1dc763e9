// `gateway certs` and `gateway certs show` as users run them: where the CA key goes, what is printed, how an old layout is moved.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startTestGateway } from '../helpers/gateway.js';

const cli = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function gateway(args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

async function mode(file: string): Promise<number> {
  return (await stat(file)).mode & 0o777;
}

describe('gateway certs', () => {
  let dir: string;
  let first: Run;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-certs-cli-'));
    first = await gateway(['certs', '--host', 'registry.example.test', '--host', '127.0.0.1'], dir);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('keeps the CA key out of certs/, which the gateway reads: it goes to ca/ (0700, key 0600)', async () => {
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual((await readdir(path.join(dir, 'certs'))).sort(), ['ca.crt', 'server.crt', 'server.key', 'token.crt', 'token.key']);
    assert.deepEqual(await readdir(path.join(dir, 'ca')), ['ca.key']);
    assert.equal(await mode(path.join(dir, 'ca')), 0o700);
    assert.equal(await mode(path.join(dir, 'ca', 'ca.key')), 0o600);
    assert.match(first.stdout, /created CA\s+certs\/ca\.crt \(key ca\/ca\.key, never read by the gateway\)/);
  });

  test('a second run is refused, pointing at `gateway certs show` and --force, without a stack trace', async () => {
    const again = await gateway(['certs', '--host', 'registry.example.test'], dir);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /server\.crt already exists: `gateway certs show` prints its names, expiry and how clients trust it; pass --force/);
    assert.doesNotMatch(again.stderr, /at .*\.js:\d+/);
  });

  test('show prints names, issuer, expiry with days left, the chain to ca.crt, the CA key and its limits', async () => {
    const shown = await gateway(['certs', 'show'], dir, { GATEWAY_LISTEN: '0.0.0.0:7443' });
    assert.equal(shown.code, 0, shown.stderr);
    const server = new X509Certificate(await readFile(path.join(dir, 'certs', 'server.crt')));
    const daysLeft = Math.floor((Date.parse(server.validTo) - Date.now()) / 86_400_000);
    assert.match(shown.stdout, /^server certificate\s+certs\/server\.crt$/m);
    assert.match(shown.stdout, /^names\s+registry\.example\.test, 127\.0\.0\.1$/m);
    assert.match(shown.stdout, /^issuer\s+CN=registry-gateway local CA \(/m);
    assert.match(shown.stdout, new RegExp(`^valid\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC to \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC \\((${daysLeft}|${daysLeft - 1}) days left\\)$`, 'm'));
    assert.match(shown.stdout, /^chain\s+signed by certs\/ca\.crt \(valid until /m);
    assert.match(shown.stdout, /^CA may sign for\s+registry\.example\.test \(and names below it\); 127\.0\.0\.1$/m);
    assert.match(shown.stdout, /^CA key\s+ca\/ca\.key \(never read by the gateway\)$/m);
  });

  test('show gives the trust steps for HOST:PORT from the first DNS name and the listen port, for every client', async () => {
    const { stdout } = await gateway(['certs', 'show'], dir, { GATEWAY_LISTEN: '0.0.0.0:7443' });
    const hostPort = 'registry.example.test:7443';
    assert.ok(stdout.includes(`sudo cp certs/ca.crt /etc/docker/certs.d/${hostPort}/ca.crt`), stdout);
    assert.ok(stdout.includes(`docker login ${hostPort}`));
    assert.ok(stdout.includes(`sudo cp certs/ca.crt /etc/containers/certs.d/${hostPort}/ca.crt`));
    assert.ok(stdout.includes(`sudo tee /etc/containerd/certs.d/${hostPort}/hosts.toml`));
    assert.ok(stdout.includes(`[host."https://${hostPort}"]\n  capabilities = ["pull", "resolve", "push"]\n  ca = "/etc/containerd/certs.d/${hostPort}/ca.crt"`));
    assert.ok(stdout.includes(`sudo ctr images pull --hosts-dir /etc/containerd/certs.d --user NAME ${hostPort}/REPOSITORY:TAG`));
    assert.ok(stdout.includes('update-ca-certificates'));
    assert.ok(stdout.includes('auth.token.rootcertbundle to certs/token.crt'));
  });

  test('show follows public_url (port 443 left out) and --port, and flags a certificate that does not name the public host', async () => {
    const covered = await gateway(['certs', 'show'], dir, { GATEWAY_PUBLIC_URL: 'https://registry.example.test' });
    assert.equal(covered.code, 0, covered.stderr);
    assert.ok(covered.stdout.includes('docker login registry.example.test\n'), covered.stdout);
    const port = await gateway(['certs', 'show', '--port', '8443'], dir);
    assert.ok(port.stdout.includes('docker login registry.example.test:8443\n'));
    const elsewhere = await gateway(['certs', 'show'], dir, { GATEWAY_PUBLIC_URL: 'https://other.example.test:5443' });
    assert.equal(elsewhere.code, 1);
    assert.match(elsewhere.stdout, /problem: the certificate does not name the public host other\.example\.test/);
  });

  test('show without a certificate names the file and the command that makes one', async () => {
    const empty = await mkdtemp(path.join(os.tmpdir(), 'gateway-certs-none-'));
    try {
      const shown = await gateway(['certs', 'show'], empty);
      assert.equal(shown.code, 1);
      assert.match(shown.stderr, /certs\/server\.crt does not exist: create it with `gateway certs`/);
      assert.doesNotMatch(shown.stderr, /at .*\.js:\d+/);
      const bad = await gateway(['certs', 'show', '--port', 'x'], dir);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--port/);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  test('show reports a server certificate without ca.crt beside it, and one that ca.crt did not sign', async () => {
    const other = await mkdtemp(path.join(os.tmpdir(), 'gateway-certs-other-'));
    try {
      assert.equal((await gateway(['certs', '--host', 'registry.example.test'], other)).code, 0);
      const otherCerts = path.join(other, 'certs');
      await rm(path.join(otherCerts, 'ca.crt'));
      const alone = await gateway(['certs', 'show', '--dir', otherCerts], dir);
      assert.equal(alone.code, 0, alone.stderr);
      assert.match(alone.stdout, /^chain\s+no .*ca\.crt: nothing to trust if a public CA issued the certificate$/m);
      await copyFile(path.join(dir, 'certs', 'ca.crt'), path.join(otherCerts, 'ca.crt'));
      const mixed = await gateway(['certs', 'show', '--dir', otherCerts], dir);
      assert.equal(mixed.code, 1);
      assert.match(mixed.stdout, /^chain\s+NOT signed by .*ca\.crt$/m);
      assert.match(mixed.stdout, /problem: clients that trust .*ca\.crt refuse this certificate/);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});

describe('an installation with the CA key in certs/ (the old layout)', () => {
  let dir: string;
  let caBefore: Buffer;
  let serverBefore: Buffer;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-certs-legacy-'));
    assert.equal((await gateway(['certs', '--host', 'registry.example.test'], dir)).code, 0);
    await rename(path.join(dir, 'ca', 'ca.key'), path.join(dir, 'certs', 'ca.key'));
    await rm(path.join(dir, 'ca'), { recursive: true });
    caBefore = await readFile(path.join(dir, 'certs', 'ca.crt'));
    serverBefore = await readFile(path.join(dir, 'certs', 'server.crt'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('show says the key sits where the gateway reads it, and how to move it', async () => {
    const shown = await gateway(['certs', 'show'], dir);
    assert.match(shown.stdout, /^CA key\s+certs\/ca\.key \(should be ca\/ca\.key\)$/m);
    assert.match(shown.stdout, /note: the CA key certs\/ca\.key sits in the folder the gateway reads: `gateway certs` moves it to ca\/ca\.key/);
  });

  test('`gateway certs` moves the key to ca/, says so, and keeps the CA and the server certificate', async () => {
    const moved = await gateway(['certs'], dir);
    assert.equal(moved.code, 0, moved.stderr);
    assert.match(moved.stdout, /moved\s+CA key\s+certs\/ca\.key to ca\/ca\.key/);
    assert.match(moved.stdout, /kept\s+server certificate\s+certs\/server\.crt/);
    assert.equal(existsSync(path.join(dir, 'certs', 'ca.key')), false);
    assert.equal(await mode(path.join(dir, 'ca', 'ca.key')), 0o600);
    assert.deepEqual(await readFile(path.join(dir, 'certs', 'ca.crt')), caBefore);
    assert.deepEqual(await readFile(path.join(dir, 'certs', 'server.crt')), serverBefore);

    const renewed = await gateway(['certs', '--force', '--host', 'registry.example.test'], dir);
    assert.equal(renewed.code, 0, renewed.stderr);
    assert.match(renewed.stdout, /kept\s+CA\s+certs\/ca\.crt/);
    const ca = new X509Certificate(caBefore);
    assert.equal(new X509Certificate(await readFile(path.join(dir, 'certs', 'server.crt'))).checkIssued(ca), true);
  });
});

describe('gateway serve on a first run', () => {
  test('creates the CA key outside the certificate folder it reads', async (t) => {
    const gw = await startTestGateway();
    t.after(() => gw.close());
    assert.equal(existsSync(path.join(gw.dir, 'certs', 'ca.key')), false);
    assert.equal(existsSync(path.join(gw.dir, 'certs', 'ca.crt')), true);
    assert.equal(await mode(path.join(gw.dir, 'ca', 'ca.key')), 0o600);
  });
});
