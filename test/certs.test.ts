// Tests for the local CA, the server certificate and the token signing key: contents, real TLS, files.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey, sign, verify } from 'node:crypto';
import { promises as fs } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import {
  createCertificates,
  defaultHosts,
  ensureTokenSigningKey,
  validateHost,
  type CertificateFiles,
} from '../src/tls/certs.js';
import { CertificateError } from '../src/errors.js';
import { containerdHostsToml, trustInstructions } from '../src/tls/trust.js';

const execFileAsync = promisify(execFile);

const REQUESTED_HOSTS = ['localhost', '127.0.0.1', '::1', 'Registry.Example.test', '2001:db8::42'];
/** What the gateway reads; the CA key lives apart, in ca/ beside it. */
const FILE_NAMES = ['ca.crt', 'server.crt', 'server.key', 'token.crt', 'token.key'];
const DAY_MS = 24 * 60 * 60 * 1000;
const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';

let root: string;
let files: CertificateFiles;
let otherFiles: CertificateFiles;

/** A certificate folder of its own, with the default CA folder (ca/ beside it) of its own too. */
function certDir(name: string): string {
  return path.join(root, name, 'certs');
}

before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'gateway-certs-test-'));
  files = await createCertificates({ dir: certDir('main'), hosts: REQUESTED_HOSTS });
  otherFiles = await createCertificates({ dir: certDir('other'), hosts: ['localhost', '127.0.0.1'] });
});

after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

async function readCertificate(file: string): Promise<X509Certificate> {
  return new X509Certificate(await fs.readFile(file));
}

async function readAll(dir: string): Promise<Map<string, Buffer>> {
  const contents = new Map<string, Buffer>();
  for (const name of FILE_NAMES) contents.set(name, await fs.readFile(path.join(dir, name)));
  contents.set('ca.key', await fs.readFile(path.join(dir, '..', 'ca', 'ca.key')));
  return contents;
}

async function fileMode(file: string): Promise<number> {
  return (await fs.stat(file)).mode & 0o777;
}

/** Parses Node's "DNS:a, IP Address:b" form into typed entries, IPv6 in canonical short form. */
function subjectAltNames(cert: X509Certificate): { type: string; value: string }[] {
  return (cert.subjectAltName ?? '').split(', ').map((entry) => {
    const [type = '', value = ''] = entry.split(/:(.*)/s);
    const isIPv6 = type === 'IP Address' && value.includes(':');
    return { type, value: isIPv6 ? new URL(`http://[${value}]/`).hostname.slice(1, -1) : value };
  });
}

function isCertificateErrorMatching(expected: RegExp | string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof CertificateError, `expected a CertificateError, got ${String(error)}`);
    if (typeof expected === 'string') assert.ok(error.message.includes(expected), error.message);
    else assert.match(error.message, expected);
    return true;
  };
}

describe('createCertificates', () => {
  test('reports absolute paths of all six files, the CA key in ca/ beside the folder, and what it created', () => {
    assert.equal(files.dir, certDir('main'));
    assert.ok(path.isAbsolute(files.caCert));
    assert.equal(files.caCert, path.join(files.dir, 'ca.crt'));
    assert.equal(files.caKey, path.join(root, 'main', 'ca', 'ca.key'));
    assert.equal(files.serverKey, path.join(files.dir, 'server.key'));
    assert.equal(files.tokenCert, path.join(files.dir, 'token.crt'));
    assert.equal(files.movedCaKeyFrom, undefined);
    assert.deepEqual(
      { ca: files.createdCa, server: files.createdServer, token: files.createdToken },
      { ca: true, server: true, token: true },
    );
  });

  test('leaves exactly the five PEM files the gateway reads, the CA key apart, no temporary files', async () => {
    assert.deepEqual((await fs.readdir(files.dir)).sort(), [...FILE_NAMES].sort());
    assert.deepEqual(await fs.readdir(files.caDir), ['ca.key']);
  });

  test('the CA is a self-signed CA whose name carries this machine hostname', async () => {
    const ca = await readCertificate(files.caCert);
    assert.equal(ca.ca, true);
    assert.ok(ca.verify(ca.publicKey));
    assert.match(ca.subject, /CN=registry-gateway local CA/);
    assert.ok(ca.subject.includes(os.hostname()), ca.subject);
    assert.equal(ca.checkPrivateKey(createPrivateKey(await fs.readFile(files.caKey))), true);
  });

  test('the server certificate verifies against the CA key and not against another CA', async () => {
    const server = await readCertificate(files.serverCert);
    const ca = await readCertificate(files.caCert);
    const otherCa = await readCertificate(otherFiles.caCert);
    assert.equal(server.verify(ca.publicKey), true);
    assert.equal(server.checkIssued(ca), true);
    assert.equal(server.verify(otherCa.publicKey), false);
    assert.equal(server.checkPrivateKey(createPrivateKey(await fs.readFile(files.serverKey))), true);
  });

  test('the server certificate is a TLS server leaf with a positive random serial', async () => {
    const server = await readCertificate(files.serverCert);
    const otherServer = await readCertificate(otherFiles.serverCert);
    assert.equal(server.ca, false);
    assert.deepEqual(server.keyUsage, [SERVER_AUTH_OID]);
    assert.match(server.serialNumber, /^[0-7][0-9A-F]{31}$/);
    assert.notEqual(server.serialNumber, otherServer.serialNumber);
    assert.match(server.subject, /^CN=localhost$/);
  });

  test('the server certificate lasts 825 days counted from one hour in the past', async () => {
    const server = await readCertificate(files.serverCert);
    const validFrom = Date.parse(server.validFrom);
    const validTo = Date.parse(server.validTo);
    assert.equal(validTo - validFrom, 825 * DAY_MS);
    assert.ok(validFrom < Date.now() - 30 * 60 * 1000, `validFrom ${server.validFrom} is not back-dated`);
  });

  test('a shorter lifetime is honoured', async () => {
    const short = await createCertificates({ dir: certDir('short'), hosts: ['localhost'], validDays: 30 });
    const server = await readCertificate(short.serverCert);
    assert.equal(Date.parse(server.validTo) - Date.parse(server.validFrom), 30 * DAY_MS);
  });

  test('checkHost and checkIP accept every requested host and reject others', async () => {
    const server = await readCertificate(files.serverCert);
    assert.equal(server.checkHost('localhost'), 'localhost');
    assert.equal(server.checkHost('registry.example.test'), 'registry.example.test');
    assert.equal(server.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(server.checkIP('::1'), '::1');
    assert.equal(server.checkIP('2001:db8::42'), '2001:db8::42');

    assert.equal(server.checkHost('other.example.test'), undefined);
    assert.equal(server.checkIP('127.0.0.2'), undefined);
    assert.equal(server.checkIP('2001:db8::43'), undefined);
    // An address stored as a DNS name would match here.
    assert.equal(server.checkHost('127.0.0.1'), undefined);
  });

  test('subjectAltName holds DNS entries for names and IP entries for IPv4 and IPv6 addresses', async () => {
    const server = await readCertificate(files.serverCert);
    assert.deepEqual(subjectAltNames(server), [
      { type: 'DNS', value: 'localhost' },
      { type: 'IP Address', value: '127.0.0.1' },
      { type: 'IP Address', value: '::1' },
      { type: 'DNS', value: 'registry.example.test' },
      { type: 'IP Address', value: '2001:db8::42' },
    ]);
  });

  test('a wildcard name covers one label below it only', async () => {
    const wildcard = await createCertificates({ dir: certDir('wildcard'), hosts: ['*.apps.example.test'] });
    const server = await readCertificate(wildcard.serverCert);
    assert.equal(server.checkHost('shop.apps.example.test'), '*.apps.example.test');
    assert.equal(server.checkHost('a.b.apps.example.test'), undefined);
  });

  test('openssl verify accepts the server certificate for TLS server use with ca.crt only', async () => {
    const { stdout } = await execFileAsync('openssl', [
      'verify',
      '-purpose',
      'sslserver',
      '-CAfile',
      files.caCert,
      files.serverCert,
    ]);
    assert.equal(stdout.trim(), `${files.serverCert}: OK`);
    await assert.rejects(execFileAsync('openssl', ['verify', '-CAfile', otherFiles.caCert, files.serverCert]));
  });

  test('key files are mode 0600 and certificates 0644 even under a permissive umask', async () => {
    const previous = process.umask(0o000);
    let permissive: CertificateFiles;
    try {
      permissive = await createCertificates({ dir: certDir('umask'), hosts: ['localhost'] });
    } finally {
      process.umask(previous);
    }
    for (const key of [permissive.caKey, permissive.serverKey, permissive.tokenKey]) {
      assert.equal(await fileMode(key), 0o600, key);
    }
    for (const cert of [permissive.caCert, permissive.serverCert, permissive.tokenCert]) {
      assert.equal(await fileMode(cert), 0o644, cert);
    }
    assert.equal(await fileMode(permissive.caDir), 0o700, 'the CA folder is private');
    for (const key of [files.caKey, files.serverKey, files.tokenKey]) assert.equal(await fileMode(key), 0o600, key);
  });

  test('a second run without force is refused naming --force and changes nothing', async () => {
    const dir = certDir('twice');
    await createCertificates({ dir, hosts: ['localhost'] });
    const before = await readAll(dir);
    await assert.rejects(
      createCertificates({ dir, hosts: ['localhost', 'registry.example.test'] }),
      isCertificateErrorMatching(/server\.(crt|key).*--force/),
    );
    assert.deepEqual(await readAll(dir), before);
  });

  test('force replaces the server certificate but keeps the CA and the token key', async () => {
    const dir = certDir('force');
    const first = await createCertificates({ dir, hosts: ['localhost', 'registry.example.test'] });
    const before = await readAll(dir);
    const caBefore = await readCertificate(first.caCert);

    const second = await createCertificates({ dir, hosts: ['registry.example.test', 'localhost'], force: true });
    assert.deepEqual(
      { ca: second.createdCa, server: second.createdServer, token: second.createdToken },
      { ca: false, server: true, token: false },
    );
    const after = await readAll(dir);
    assert.notDeepEqual(after.get('server.crt'), before.get('server.crt'));
    assert.notDeepEqual(after.get('server.key'), before.get('server.key'));
    for (const name of ['ca.crt', 'ca.key', 'token.crt', 'token.key']) {
      assert.deepEqual(after.get(name), before.get(name), name);
    }
    const caAfter = await readCertificate(second.caCert);
    assert.equal(caAfter.fingerprint256, caBefore.fingerprint256);

    const server = await readCertificate(second.serverCert);
    assert.equal(server.verify(caAfter.publicKey), true);
    assert.equal(server.checkHost('registry.example.test'), 'registry.example.test');
  });

  test('a CA certificate without its key is refused, naming the missing file', async () => {
    const dir = certDir('half-ca');
    await fs.mkdir(dir, { recursive: true });
    await fs.copyFile(files.caCert, path.join(dir, 'ca.crt'));
    await assert.rejects(createCertificates({ dir, hosts: ['localhost'] }), isCertificateErrorMatching(/ca\/ca\.key/));
    assert.deepEqual(await fs.readdir(dir), ['ca.crt']);
    assert.deepEqual(await fs.readdir(path.dirname(dir)), ['certs']);
  });

  test('a CA key that does not belong to ca.crt is refused', async () => {
    const dir = certDir('mismatched-ca');
    await fs.mkdir(path.join(dir, '..', 'ca'), { recursive: true });
    await fs.mkdir(dir);
    await fs.copyFile(files.caCert, path.join(dir, 'ca.crt'));
    await fs.copyFile(otherFiles.caKey, path.join(dir, '..', 'ca', 'ca.key'));
    await assert.rejects(createCertificates({ dir, hosts: ['localhost'] }), isCertificateErrorMatching(/not the private key/));
    assert.deepEqual(await fs.readdir(dir), ['ca.crt']);
  });

  test('an invalid host is refused before anything is written', async () => {
    const dir = certDir('bad-host');
    await assert.rejects(
      createCertificates({ dir, hosts: ['localhost', 'bad host'] }),
      isCertificateErrorMatching(/"bad host"/),
    );
    await assert.rejects(fs.stat(dir), { code: 'ENOENT' });
  });
});

describe('TLS with the generated certificate', () => {
  let port: number;
  let server: https.Server;

  before(async () => {
    server = https.createServer(
      { key: await fs.readFile(files.serverKey), cert: await fs.readFile(files.serverCert) },
      (_request, response) => response.end('ok'),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  function fetchBody(ca: Buffer, servername?: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const request = https.get({ host: '127.0.0.1', port, path: '/', ca, servername, agent: false }, (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => resolve(body));
        response.on('error', reject);
      });
      request.on('error', reject);
    });
  }

  test('a client trusting only ca.crt connects with servername localhost', async () => {
    assert.equal(await fetchBody(await fs.readFile(files.caCert), 'localhost'), 'ok');
  });

  test('a client trusting only ca.crt connects by IP address', async () => {
    assert.equal(await fetchBody(await fs.readFile(files.caCert)), 'ok');
  });

  test('a client trusting a different CA is rejected', async () => {
    await assert.rejects(fetchBody(await fs.readFile(otherFiles.caCert), 'localhost'), {
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
  });

  test('a client asking for a name the certificate does not cover is rejected', async () => {
    await assert.rejects(fetchBody(await fs.readFile(files.caCert), 'other.example.test'), {
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
  });
});

describe('ensureTokenSigningKey', () => {
  test('creates a key and a self-signed certificate that match, in folders it creates', async () => {
    const keyPath = path.join(root, 'token', 'nested', 'token.key');
    const certPath = path.join(root, 'token', 'nested', 'token.crt');
    assert.deepEqual(await ensureTokenSigningKey(keyPath, certPath), { created: true });

    const certificate = await readCertificate(certPath);
    assert.match(certificate.subject, /^CN=registry-gateway token signer$/);
    assert.equal(certificate.verify(certificate.publicKey), true);
    assert.equal(Date.parse(certificate.validTo) - Date.parse(certificate.validFrom), 3650 * DAY_MS);

    const payload = Buffer.from('header.claims');
    const signature = sign('sha256', payload, await fs.readFile(keyPath));
    assert.equal(verify('sha256', payload, certificate.publicKey, signature), true);
    assert.equal(verify('sha256', Buffer.from('header.other'), certificate.publicKey, signature), false);
    assert.equal(await fileMode(keyPath), 0o600);
  });

  test('a second call leaves an existing pair unchanged', async () => {
    const keyPath = path.join(root, 'token-again', 'token.key');
    const certPath = path.join(root, 'token-again', 'token.crt');
    await ensureTokenSigningKey(keyPath, certPath);
    const key = await fs.readFile(keyPath);
    const cert = await fs.readFile(certPath);
    assert.deepEqual(await ensureTokenSigningKey(keyPath, certPath), { created: false });
    assert.deepEqual(await fs.readFile(keyPath), key);
    assert.deepEqual(await fs.readFile(certPath), cert);
  });

  test('a key without its certificate is refused, naming the missing file', async () => {
    const dir = path.join(root, 'token-half');
    await fs.mkdir(dir);
    await fs.copyFile(files.tokenKey, path.join(dir, 'token.key'));
    await assert.rejects(
      ensureTokenSigningKey(path.join(dir, 'token.key'), path.join(dir, 'token.crt')),
      isCertificateErrorMatching(/token\.crt/),
    );
  });
});

describe('validateHost', () => {
  const hostile = [
    ...['a b', 'https://x', 'x:443', '../x', '', 'x/y', 'under_score.example'],
    ...['1.2.3.256', 'fe80::1%eth0', '-x.example', '*'],
  ];
  for (const host of hostile) {
    test(`rejects ${JSON.stringify(host)} with a CertificateError naming it`, () => {
      assert.throws(() => validateHost(host), isCertificateErrorMatching(JSON.stringify(host)));
    });
  }

  test('lowercases DNS names, keeps wildcards, and accepts IPv4 and IPv6 addresses', () => {
    assert.equal(validateHost('Registry.Example.com'), 'registry.example.com');
    assert.equal(validateHost('*.Apps.Example.com'), '*.apps.example.com');
    assert.equal(validateHost('10.0.0.1'), '10.0.0.1');
    assert.equal(validateHost('2001:DB8:0:0::1'), '2001:db8::1');
    assert.equal(validateHost('[::1]'), '::1');
  });
});

describe('defaultHosts', () => {
  test('lists the loopback names and this machine hostname, lowercased and without duplicates', () => {
    const hosts = defaultHosts();
    assert.deepEqual(hosts.slice(0, 3), ['localhost', '127.0.0.1', '::1']);
    assert.equal(new Set(hosts).size, hosts.length);
    for (const host of hosts) assert.equal(validateHost(host), host);
    const hostname = os.hostname().toLowerCase();
    if (/^[a-z0-9.-]+$/.test(hostname)) assert.ok(hosts.includes(hostname), hosts.join(' '));
  });
});

describe('trustInstructions', () => {
  test('names the real CA and token paths and each client store for HOST:PORT', () => {
    const text = trustInstructions({ hostPort: 'registry.example.test:5443', caCert: files.caCert, tokenCert: files.tokenCert });
    assert.ok(text.includes(files.caCert));
    assert.ok(text.includes('/etc/docker/certs.d/registry.example.test:5443/ca.crt'));
    assert.ok(text.includes('/etc/containers/certs.d/registry.example.test:5443/ca.crt'));
    assert.ok(text.includes('--cert-dir'));
    assert.ok(text.includes('/usr/local/share/ca-certificates/'));
    assert.ok(text.includes('update-ca-certificates'));
    assert.ok(text.includes('rootcertbundle'));
    assert.ok(text.includes(files.tokenCert));
  });

  test('containerd: the hosts.toml to write, in full, and a ctr pull that reads it with --hosts-dir', () => {
    const text = trustInstructions({ hostPort: 'registry.example.test:5443', caCert: 'certs/ca.crt' });
    const folder = '/etc/containerd/certs.d/registry.example.test:5443';
    assert.ok(text.includes(`sudo tee ${folder}/hosts.toml >/dev/null <<'EOF'\n${containerdHostsToml('registry.example.test:5443', `${folder}/ca.crt`)}EOF\n`), text);
    assert.match(text, /sudo ctr images pull --hosts-dir \/etc\/containerd\/certs\.d --user NAME registry\.example\.test:5443\/REPOSITORY:TAG/);
    assert.match(containerdHostsToml('h:1', '/x/ca.crt'), /^\[host\."https:\/\/h:1"\]\n {2}capabilities = \["pull", "resolve", "push"\]\n {2}ca = "\/x\/ca\.crt"$/m);
  });
});
