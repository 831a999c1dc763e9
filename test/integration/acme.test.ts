// ACME against a real ACME CA (pebble): first issuance by tls-alpn-01 and http-01, clients trusting only the CA's root, renewal under a live push, and what failures leave behind.

import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { basic, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage } from '../helpers/oci-image.js';
import { servedCertificate, waitFor } from '../helpers/acme.js';
import { startPebble, type RunningPebble } from '../helpers/pebble.js';
import { freePort } from '../helpers/ports.js';
import { startConnectProxy, type Tunnel } from '../helpers/tunnels.js';

const domain = 'registry.gateway.test';
const DAY_MS = 24 * 60 * 60 * 1000;



function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { env: { PATH: process.env.PATH ?? '', HOME: os.tmpdir(), ...env }, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args[0]} failed: ${stderr.trim() || error.message}`));
      else resolve({ stdout, stderr });
    });
  });
}

interface AcmeGateway {
  gw: TestGateway;
  port: number;
  files: string;
}

/** A gateway on `port` with ACME on against `pebble`; its certs/acme/ path is returned as `files`. */
async function startAcmeGateway(pebble: RunningPebble, port: number, caFile: string, extra: Record<string, string> = {}, hooks = {}): Promise<AcmeGateway> {
  const gw = await startTestGateway({
    auth: 'basic',
    env: {
      GATEWAY_LISTEN: `127.0.0.1:${port}`,
      GATEWAY_ACME: 'on',
      GATEWAY_ACME_DOMAINS: domain,
      GATEWAY_ACME_DIRECTORY: pebble.directoryUrl,
      GATEWAY_ACME_CA: caFile,
      GATEWAY_ACME_EMAIL: 'ops@gateway.test',
      ...extra,
    },
    gatewayOptions: { acmeRetryMs: 200, acmeMaxRetryMs: 1000, ...hooks },
  });
  return { gw, port, files: path.join(extra.GATEWAY_TLS_CERT ? path.dirname(extra.GATEWAY_TLS_CERT) : path.join(gw.dir, 'certs'), 'acme') };
}

describe('ACME certificates from pebble', () => {
  let work: string;
  let caFile: string;
  let rootFile: string;
  let pebble: RunningPebble;
  let root: string;
  let proxy: Tunnel;
  let tlsPort: number;
  let httpPort: number;

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'acme-test-'));
    tlsPort = await freePort();
    httpPort = await freePort();
    pebble = await startPebble({ tlsPort, httpPort });
    caFile = path.join(work, 'pebble-listener-ca.pem');
    await writeFile(caFile, pebble.caBundle);
    root = await pebble.root();
    rootFile = path.join(work, 'root.pem');
    await writeFile(rootFile, root);
    proxy = await startConnectProxy();
  });
  after(async () => {
    await proxy?.close();
    await pebble?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('tls-alpn-01 on the HTTPS port: curl and skopeo trust the gateway through the CA root alone', async (t) => {
    const { gw, files } = await startAcmeGateway(pebble, tlsPort, caFile);
    t.after(() => gw.close());
    await waitFor('the ACME certificate', () => gw.gateway.acmeStatus()?.state === 'valid');
    assert.ok(gw.logLines.some((line) => line.includes('ACME certificate issued')));
    assert.ok(gw.logLines.some((line) => line.includes('tls-alpn-01')));

    const served = await servedCertificate(tlsPort, domain, root);
    assert.equal(served.checkHost(domain), domain);
    for (const [file, mode] of [['account.key', 0o600], ['certificate.key', 0o600], ['certificate.crt', 0o644]] as const) {
      assert.equal((await stat(path.join(files, file))).mode & 0o777, mode, file);
    }
    assert.equal(new X509Certificate(await readFile(path.join(files, 'certificate.crt'))).fingerprint256, served.fingerprint256);

    const health = await run('curl', ['-sS', '--fail', '--cacert', rootFile, '--resolve', `${domain}:${tlsPort}:127.0.0.1`, `https://${domain}:${tlsPort}/readyz`]);
    const ready = JSON.parse(health.stdout) as { certificate: { state: string; notAfter: string; domains: string[] } };
    assert.equal(ready.certificate.state, 'valid');
    assert.equal(new Date(ready.certificate.notAfter).getTime(), new Date(served.validTo).getTime());
    assert.deepEqual(ready.certificate.domains, [domain]);

    // skopeo through a CONNECT proxy (no /etc/hosts), with a cert dir holding only pebble's root.
    const certDir = path.join(work, 'skopeo-certs');
    await run('mkdir', ['-p', certDir]);
    await writeFile(path.join(certDir, 'ca.crt'), root);
    const image = await buildOciImage({ dir: path.join(work, 'image'), layers: [{ sizeBytes: 64 * 1024 }] });
    const env = { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}`, REGISTRY_AUTH_FILE: path.join(work, 'auth.json') };
    const target = `docker://${domain}:${tlsPort}/acme/app:v1`;
    await run('skopeo', ['copy', '--dest-cert-dir', certDir, '--dest-creds', 'alice:alice-password', image.reference, target], env);
    const inspected = await run('skopeo', ['inspect', '--raw', '--cert-dir', certDir, '--creds', 'alice:alice-password', target], env);
    assert.equal(`sha256:${createHash('sha256').update(inspected.stdout).digest('hex')}`, image.manifestDigest);
    // And pulled back, every blob verified by skopeo against its digest.
    const pulled = path.join(work, 'pulled');
    await run('skopeo', ['copy', '--preserve-digests', '--src-cert-dir', certDir, '--src-creds', 'alice:alice-password', target, `oci:${pulled}:v1`], env);
    const index = JSON.parse(await readFile(path.join(pulled, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    assert.deepEqual(index.manifests.map((manifest) => manifest.digest), [image.manifestDigest]);
    const layer = await readFile(path.join(pulled, 'blobs', 'sha256', image.layerDigests[0]!.slice('sha256:'.length)));
    assert.equal(`sha256:${createHash('sha256').update(layer).digest('hex')}`, image.layerDigests[0]);
    assert.ok(proxy.requested.includes(`${domain}:${tlsPort}`), 'skopeo went by the name, through the proxy');
    // Without the root, the same client refuses: nothing else vouches for the certificate.
    await assert.rejects(run('skopeo', ['inspect', '--raw', '--creds', 'alice:alice-password', target], env), /certificate|x509/);
  });

  test('http-01 on the plain-HTTP listener, which redirects everything else to https', async (t) => {
    const { gw } = await startAcmeGateway(pebble, tlsPort, caFile, { GATEWAY_HTTP_LISTEN: `127.0.0.1:${httpPort}`, GATEWAY_PUBLIC_URL: `https://${domain}:${tlsPort}` });
    t.after(() => gw.close());
    await waitFor('the ACME certificate', () => gw.gateway.acmeStatus()?.state === 'valid');
    assert.ok(gw.logLines.some((line) => line.includes('answering the http-01 challenge')));
    assert.equal((await servedCertificate(tlsPort, domain, root)).checkHost(domain), domain);
    const redirect = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', `http://127.0.0.1:${httpPort}/v2/`, '-H', `Host: ${domain}`]);
    assert.equal(redirect.stdout, `301 https://${domain}:${tlsPort}/v2/`);
    const unknownToken = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${httpPort}/.well-known/acme-challenge/not-a-pending-token`]);
    assert.equal(unknownToken.stdout, '404');
  });

  test('renewal swaps the certificate for new connections while a 64 MiB upload on an open connection completes', async (t) => {
    let clock = Date.now();
    const { gw } = await startAcmeGateway(pebble, tlsPort, caFile, {}, { acmeNow: () => clock });
    t.after(() => gw.close());
    await waitFor('the first certificate', () => gw.gateway.acmeStatus()?.state === 'valid');
    const first = await servedCertificate(tlsPort, domain, root);

    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: root, servername: domain });
    t.after(() => agent.destroy());
    const call = (method: string, target: string, headers: Record<string, string | number> = {}) =>
      https.request({ host: '127.0.0.1', port: tlsPort, servername: domain, agent, method, path: target, headers: { Authorization: basic('alice', 'alice-password'), ...headers } });
    /** The answer to `req`; the request is ended here unless the caller streams its body itself. */
    const answer = (req: ReturnType<typeof call>, streamed = false) =>
      new Promise<{ status: number; headers: Record<string, unknown> }>((resolve, reject) => {
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
        });
        req.on('error', reject);
        if (!streamed) req.end();
      });
    const started = await answer(call('POST', '/v2/acme/big/blobs/uploads/'));
    assert.equal(started.status, 202);
    const location = String(started.headers.location);

    const chunk = Buffer.alloc(1024 * 1024, 7);
    const total = 64;
    const digest = createHash('sha256');
    const patch = call('PATCH', new URL(location, `https://${domain}`).pathname + new URL(location, `https://${domain}`).search, { 'Content-Type': 'application/octet-stream', 'Content-Length': total * chunk.length });
    const patched = answer(patch, true);
    let tlsSocket: tls.TLSSocket | undefined;
    patch.on('socket', (socket) => (tlsSocket = socket as tls.TLSSocket));
    for (let i = 0; i < total / 2; i++) {
      digest.update(chunk);
      if (!patch.write(chunk)) await new Promise((resolve) => patch.once('drain', resolve));
    }
    // Half sent: the certificate is due (a third of its life left) and gets renewed.
    clock = new Date(first.validTo).getTime() - DAY_MS;
    await gw.gateway.acmeCheckNow();
    assert.ok(gw.logLines.some((line) => line.includes('ACME certificate renewed')));
    const second = await servedCertificate(tlsPort, domain, root);
    assert.notEqual(second.serialNumber, first.serialNumber, 'new connections get the new certificate');
    assert.equal(tlsSocket?.getPeerX509Certificate()?.serialNumber, first.serialNumber, 'the open connection keeps the old one');

    for (let i = total / 2; i < total; i++) {
      digest.update(chunk);
      if (!patch.write(chunk)) await new Promise((resolve) => patch.once('drain', resolve));
    }
    patch.end();
    const done = await patched;
    assert.equal(done.status, 202);
    const blobDigest = `sha256:${digest.digest('hex')}`;
    const next = new URL(String(done.headers.location), `https://${domain}`);
    next.searchParams.set('digest', blobDigest);
    assert.equal((await answer(call('PUT', next.pathname + next.search, { 'Content-Length': 0 }))).status, 201);
    const head = await answer(call('HEAD', `/v2/acme/big/blobs/${blobDigest}`));
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers['content-length']), total * chunk.length);
  });

  test('a domain that fails validation: the failure is logged with pebble\'s reason, retried, and nothing is written or served', async (t) => {
    const failing = 'unreachable.gateway.test';
    await pebble.addA(failing, '127.0.0.2');
    t.after(() => pebble.clearA(failing));
    const gw = await startTestGateway({
      auth: 'basic',
      env: { GATEWAY_LISTEN: `127.0.0.1:${tlsPort}`, GATEWAY_ACME: 'on', GATEWAY_ACME_DOMAINS: failing, GATEWAY_ACME_DIRECTORY: pebble.directoryUrl, GATEWAY_ACME_CA: caFile },
      gatewayOptions: { acmeRetryMs: 100, acmeMaxRetryMs: 200 },
    });
    t.after(() => gw.close());
    await waitFor('two failed attempts', () => gw.logLines.filter((line) => line.includes('ACME certificate order failed')).length >= 2);
    const status = gw.gateway.acmeStatus();
    assert.equal(status?.state, 'failing');
    assert.match(status?.lastError ?? '', /validation for unreachable\.gateway\.test/);
    const logged = JSON.parse(gw.logLines.find((line) => line.includes('ACME certificate order failed'))!) as { domains: string[]; reason: string; serving: string };
    assert.deepEqual(logged.domains, [failing]);
    // pebble's own words: the address the name led to, and the challenge.
    assert.match(logged.reason, new RegExp(`Failed to connect to 127\\.0\\.0\\.2:${tlsPort} for the tls-alpn-01 challenge`), logged.reason);
    assert.equal(logged.serving, 'the local certificate');
    await assert.rejects(stat(path.join(gw.dir, 'certs', 'acme', 'certificate.crt')), { code: 'ENOENT' });
    // The gateway goes on serving with its local certificate.
    const local = await new Promise<X509Certificate>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: tlsPort, servername: 'localhost', ca: gw.ca }, () => {
        resolve(socket.getPeerX509Certificate()!);
        socket.end();
      });
      socket.on('error', reject);
    });
    assert.equal(local.checkHost('localhost'), 'localhost');
  });
  test('a renewal that fails keeps the previous certificate in service, says why, and is retried until it succeeds', async (t) => {
    let clock = Date.now();
    const { gw, files } = await startAcmeGateway(pebble, tlsPort, caFile, {}, { acmeNow: () => clock });
    t.after(() => gw.close());
    await waitFor('the first certificate', () => gw.gateway.acmeStatus()?.state === 'valid');
    const first = await servedCertificate(tlsPort, domain, root);
    await pebble.setServfail(domain);
    t.after(() => pebble.clearServfail(domain));

    clock = Date.parse(gw.gateway.acmeStatus()!.renewAt!) + 1;
    await gw.gateway.acmeCheckNow();
    const status = gw.gateway.acmeStatus()!;
    assert.equal(status.state, 'failing');
    assert.match(status.lastError ?? '', new RegExp(`validation for ${domain.replaceAll('.', '\\.')}: .*Could not resolve`));
    const logged = JSON.parse(gw.logLines.find((line) => line.includes('ACME certificate order failed'))!) as { reason: string; serving: string };
    assert.match(logged.reason, /Could not resolve/, 'pebble says why');
    assert.equal(logged.serving, `the previous certificate, valid until ${new Date(first.validTo).toISOString()}`);
    assert.equal((await servedCertificate(tlsPort, domain, root)).serialNumber, first.serialNumber, 'still served');
    assert.equal(new X509Certificate(await readFile(path.join(files, 'certificate.crt'))).serialNumber, first.serialNumber, 'still on disk');

    // The name resolves again: a later retry (the manager's own timer) renews.
    await pebble.clearServfail(domain);
    await waitFor('the renewed certificate', () => gw.gateway.acmeStatus()?.state === 'valid');
    assert.ok(gw.logLines.some((line) => line.includes('ACME certificate renewed')));
    assert.notEqual((await servedCertificate(tlsPort, domain, root)).serialNumber, first.serialNumber);
  });
});
