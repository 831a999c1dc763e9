// The local CA: five years, name constraints that real verifiers (openssl, curl, Node, skopeo) enforce, and its key kept out of the certificate folder.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createCertificates, type CertificateFiles } from '../../src/tls/certs.js';
import { CertificateError } from '../../src/errors.js';
import { requireCommand, runCommand } from '../helpers/clients.js';

const execFileAsync = promisify(execFile);
const DAY_MS = 24 * 60 * 60 * 1000;

let root: string;
let files: CertificateFiles;

before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'gateway-ca-test-'));
  files = await createCertificates({ dir: path.join(root, 'main', 'certs'), hosts: ['localhost', '127.0.0.1', '::1', 'registry.example.test'] });
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

async function opensslText(certFile: string): Promise<string> {
  return (await execFileAsync('openssl', ['x509', '-in', certFile, '-noout', '-text'])).stdout;
}

/** A certificate for `san` signed with the CA's key, as someone holding ca.key could make one. */
async function signWithCa(name: string, san: string): Promise<{ cert: string; key: string }> {
  const dir = path.join(root, 'rogue', name);
  await fs.mkdir(dir, { recursive: true });
  const key = path.join(dir, 'server.key');
  const csr = path.join(dir, 'server.csr');
  const cert = path.join(dir, 'server.crt');
  const ext = path.join(dir, 'ext.cnf');
  await execFileAsync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-subj', `/CN=${name}`, '-out', csr]);
  await fs.writeFile(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n`);
  await execFileAsync('openssl', ['x509', '-req', '-in', csr, '-CA', files.caCert, '-CAkey', files.caKey, '-set_serial', '7', '-days', '30', '-extfile', ext, '-out', cert]);
  return { cert, key };
}

async function opensslVerify(certFile: string): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await execFileAsync('openssl', ['verify', '-purpose', 'sslserver', '-CAfile', files.caCert, certFile]);
    return { ok: true, output: stdout + stderr };
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string };
    return { ok: false, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

describe('the local CA', () => {
  test('lives five years and may sign for nothing else: pathlen 0 and critical name constraints listing exactly its hosts', async () => {
    const ca = new X509Certificate(await fs.readFile(files.caCert));
    assert.equal(Date.parse(ca.validTo) - Date.parse(ca.validFrom), 5 * 365 * DAY_MS);
    const text = await opensslText(files.caCert);
    assert.match(text, /CA:TRUE, pathlen:0/);
    assert.match(text, /X509v3 Name Constraints: critical\n\s+Permitted:\n\s+DNS:localhost\n\s+DNS:registry\.example\.test\n\s+IP:127\.0\.0\.1\/255\.255\.255\.255\n\s+IP:0:0:0:0:0:0:0:1\/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF\n/);
  });

  test('the server certificate it signs never outlives it', async () => {
    const ca = new X509Certificate(await fs.readFile(files.caCert));
    const server = new X509Certificate(await fs.readFile(files.serverCert));
    assert.ok(Date.parse(server.validTo) <= Date.parse(ca.validTo));
  });

  test('openssl verify accepts its server certificate and refuses certificates it signed for other names or addresses', async () => {
    assert.equal((await opensslVerify(files.serverCert)).ok, true);
    assert.equal((await opensslVerify((await signWithCa('below', 'DNS:mirror.registry.example.test')).cert)).ok, true, 'names below a permitted name are permitted');
    for (const [name, san] of [['other-name', 'DNS:bank.example'], ['other-ipv4', 'IP:127.0.0.2'], ['other-ipv6', 'IP:::2'], ['suffix-trick', 'DNS:evilregistry.example.test']]) {
      const verdict = await opensslVerify((await signWithCa(name!, san!)).cert);
      assert.equal(verdict.ok, false, `${san} must be refused`);
      assert.match(verdict.output, /permitted subtree violation/);
    }
  });

  test('a CA for DNS names only permits no IP address, one for addresses only no DNS name', async () => {
    const dnsOnly = await createCertificates({ dir: path.join(root, 'dns-only', 'certs'), hosts: ['registry.example.test'] });
    assert.match(await opensslText(dnsOnly.caCert), /Excluded:\n\s+IP:0\.0\.0\.0\/0\.0\.0\.0\n\s+IP:0:0:0:0:0:0:0:0\/0:0:0:0:0:0:0:0/);
    const ipOnly = await createCertificates({ dir: path.join(root, 'ip-only', 'certs'), hosts: ['10.1.2.3'] });
    assert.match(await opensslText(ipOnly.caCert), /Permitted:\n\s+DNS:invalid\n\s+IP:10\.1\.2\.3\/255\.255\.255\.255/);
    // Its server certificate's common name must not read as a DNS name, which the constraints would refuse.
    assert.match(new X509Certificate(await fs.readFile(ipOnly.serverCert)).subject, /^CN=registry-gateway$/);
    const { stdout } = await execFileAsync('openssl', ['verify', '-CAfile', ipOnly.caCert, ipOnly.serverCert]);
    assert.match(stdout, /: OK/);
  });

  test('a new server certificate for a host the CA may not sign for is refused, and nothing changes', async () => {
    const dir = path.join(root, 'narrow', 'certs');
    const first = await createCertificates({ dir, hosts: ['localhost'] });
    const before = await fs.readFile(first.serverCert);
    await assert.rejects(createCertificates({ dir, hosts: ['localhost', 'other.example.test'], force: true }), (error) => {
      assert.ok(error instanceof CertificateError);
      assert.match(error.message, /may only sign for localhost .*not for other\.example\.test.*make a new CA/);
      return true;
    });
    assert.deepEqual(await fs.readFile(first.serverCert), before);
    const narrower = await createCertificates({ dir, hosts: ['api.localhost'], force: true });
    assert.equal(new X509Certificate(await fs.readFile(narrower.serverCert)).checkHost('api.localhost'), 'api.localhost');
  });
});

describe('clients enforce the name constraints', () => {
  const servers: https.Server[] = [];
  let realPort: number;
  let roguePort: number;
  let caOnly: string;

  async function serve(cert: string, key: string, host: string): Promise<number> {
    const server = https.createServer({ cert: await fs.readFile(cert), key: await fs.readFile(key) }, (_req, res) => {
      res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}');
    });
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    servers.push(server);
    return (server.address() as AddressInfo).port;
  }

  before(async () => {
    realPort = await serve(files.serverCert, files.serverKey, '127.0.0.1');
    // Linux routes all of 127/8 to loopback: an address the CA was not made for, on this machine.
    const rogue = await signWithCa('rogue-server', 'IP:127.0.0.2');
    roguePort = await serve(rogue.cert, rogue.key, '127.0.0.2');
    caOnly = path.join(root, 'ca-only');
    await fs.mkdir(caOnly);
    await fs.copyFile(files.caCert, path.join(caOnly, 'ca.crt'));
  });
  after(async () => {
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('curl (OpenSSL) trusting ca.crt reaches the real certificate and refuses the rogue one', async () => {
    await requireCommand('curl', 'curl');
    const curl = (url: string) => runCommand('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', files.caCert, url], { label: 'curl' });
    assert.equal((await curl(`https://127.0.0.1:${realPort}/v2/`)).stdout, '404');
    await assert.rejects(curl(`https://127.0.0.2:${roguePort}/v2/`), /SSL certificate problem: permitted subtree violation/);
  });

  test('Node TLS trusting ca.crt refuses the rogue certificate', async () => {
    const caPem = await fs.readFile(files.caCert);
    const get = (port: number, host: string) =>
      new Promise<number>((resolve, reject) => {
        https.get({ host, port, path: '/v2/', ca: caPem, agent: false }, (res) => resolve(res.statusCode ?? 0)).on('error', reject);
      });
    assert.equal(await get(realPort, '127.0.0.1'), 404);
    await assert.rejects(get(roguePort, '127.0.0.2'), /permitted subtree violation/);
  });

  test('skopeo (Go crypto/x509) trusting ca.crt refuses the rogue certificate for lack of permission to sign for it', async () => {
    await requireCommand('skopeo', 'skopeo');
    const inspect = (hostPort: string) => runCommand('skopeo', ['inspect', '--raw', '--cert-dir', caOnly, `docker://${hostPort}/team/app:v1`], { label: 'skopeo inspect', env: { ...process.env, REGISTRY_AUTH_FILE: path.join(root, 'no-auth.json') } });
    await fs.writeFile(path.join(root, 'no-auth.json'), '{"auths":{}}');
    // The real one gets past TLS to the registry's own 404.
    await assert.rejects(inspect(`127.0.0.1:${realPort}`), (error: Error) => !/x509/.test(error.message) && /manifest unknown|NAME_UNKNOWN|404|not found/i.test(error.message));
    await assert.rejects(inspect(`127.0.0.2:${roguePort}`), /x509: .*(not authorized to sign for this name|not permitted)/);
  });
});
