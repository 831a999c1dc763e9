// ACME lifecycle against pebble: a CA that is down at start, gateways sharing certs/, files on disk that must not be served, and `gateway certs --acme` / `--show`.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { servedCertificate, waitFor } from '../helpers/acme.js';
import { startPebble, type RunningPebble } from '../helpers/pebble.js';
import { freePort } from '../helpers/ports.js';
import { runCli } from '../helpers/run-cli.js';
import { startGatedForwarder, startTcpForwarder } from '../helpers/tunnels.js';

const domain = 'registry.gateway.test';
const DAY_MS = 24 * 60 * 60 * 1000;



const count = (gw: TestGateway, text: string) => gw.logLines.filter((line) => line.includes(text)).length;

describe('ACME lifecycle', () => {
  let work: string;
  let caFile: string;
  let pebble: RunningPebble;
  let root: string;
  let tlsPort: number;

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'acme-lifecycle-'));
    tlsPort = await freePort();
    pebble = await startPebble({ tlsPort });
    caFile = path.join(work, 'pebble-listener-ca.pem');
    await writeFile(caFile, pebble.caBundle);
    root = await pebble.root();
  });
  after(async () => {
    await pebble?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const acmeEnv = (directory: string, extra: Record<string, string> = {}) => ({
    GATEWAY_LISTEN: `127.0.0.1:${tlsPort}`,
    GATEWAY_ACME: 'on',
    GATEWAY_ACME_DOMAINS: domain,
    GATEWAY_ACME_DIRECTORY: directory,
    GATEWAY_ACME_CA: caFile,
    ...extra,
  });

  test('an ACME server down at start: the gateway serves, says why, backs off, and gets its certificate once the server answers', async (t) => {
    const directoryPort = await freePort();
    const directory = pebble.directoryUrl.replace(/:\d+\/dir$/, `:${directoryPort}/dir`);
    const gw = await startTestGateway({ auth: 'basic', env: acmeEnv(directory), gatewayOptions: { acmeRetryMs: 100, acmeMaxRetryMs: 300 } });
    t.after(() => gw.close());
    await waitFor('two failed attempts', () => count(gw, 'ACME certificate order failed') >= 2);
    const status = gw.gateway.acmeStatus()!;
    assert.equal(status.state, 'failing');
    assert.match(status.lastError ?? '', /could not be reached: .*ECONNREFUSED/, 'the real cause, not a TypeError');
    assert.doesNotMatch(status.lastError ?? '', /reading 'config'/);
    assert.ok(status.nextAttempt, 'a retry is scheduled');
    // Backoff: 100 ms then 200 ms, each ±20%, so the second wait is always the longer.
    const waits = gw.logLines
      .filter((line) => line.includes('ACME certificate order failed'))
      .slice(0, 2)
      .map((line) => JSON.parse(line) as { time: number; retryAt: string; attempt: number; serving: string })
      .map((failure, index) => {
        assert.equal(failure.attempt, index + 1);
        assert.equal(failure.serving, 'the local certificate');
        return Date.parse(failure.retryAt) - failure.time;
      });
    assert.ok(waits[0]! >= 70 && waits[0]! <= 130 && waits[1]! >= 150 && waits[1]! <= 250, `backoff waits ${waits.join(', ')} ms`);
    assert.equal((await fetchStatus(gw)).status, 200, 'the gateway serves meanwhile');

    // The directory comes up at the address the gateway was given.
    const forwarder = await startTcpForwarder(directoryPort, Number(new URL(pebble.directoryUrl).port));
    t.after(() => forwarder.close());
    await waitFor('the certificate after the server came back', () => gw.gateway.acmeStatus()?.state === 'valid');
    assert.equal((await servedCertificate(tlsPort, domain, root)).checkHost(domain), domain);
    assert.ok(count(gw, 'ACME certificate order failed') >= 1);
  });

  test('gateways sharing certs/: the second finds the first one\'s certificate on disk and orders nothing, also when renewal is due', async (t) => {
    const shared = path.join(work, 'shared-certs');
    await mkdir(shared, { recursive: true });
    const files = { GATEWAY_TLS_CERT: path.join(shared, 'server.crt'), GATEWAY_TLS_KEY: path.join(shared, 'server.key') };
    let firstClock = Date.now();
    let secondClock = Date.now();
    const orders = pebble.ordersAdded();
    const first = await startTestGateway({ auth: 'basic', env: acmeEnv(pebble.directoryUrl, files), gatewayOptions: { acmeNow: () => firstClock } });
    t.after(() => first.close());
    await waitFor('the first gateway\'s certificate', () => first.gateway.acmeStatus()?.state === 'valid');

    const secondPort = await freePort();
    const second = await startTestGateway({ auth: 'basic', env: { ...acmeEnv(pebble.directoryUrl, files), GATEWAY_LISTEN: `127.0.0.1:${secondPort}` }, gatewayOptions: { acmeNow: () => secondClock } });
    t.after(() => second.close());
    assert.equal(second.gateway.acmeStatus()?.state, 'valid', 'valid from the first connection on');
    assert.equal(count(second, 'ACME certificate issued'), 0);
    assert.equal(count(second, 'ACME certificate loaded from disk'), 1);
    assert.equal((await servedCertificate(secondPort, domain, root)).fingerprint256, (await servedCertificate(tlsPort, domain, root)).fingerprint256);
    assert.equal(pebble.ordersAdded() - orders, 1, 'one order at pebble');

    // Renewal comes due; the first gateway (whose port the CA validates) renews, then its clock is set back.
    const before = await servedCertificate(tlsPort, domain, root);
    firstClock = new Date(before.validTo).getTime() - DAY_MS;
    await first.gateway.acmeCheckNow();
    firstClock = Date.now();
    assert.equal(count(first, 'ACME certificate renewed'), 1);
    // The second comes due a moment later (each gateway's time is spread a little): it finds the renewed certificate on disk.
    secondClock = Date.parse(second.gateway.acmeStatus()!.renewAt!) + 1;
    await second.gateway.acmeCheckNow();
    assert.equal(count(second, 'ACME certificate renewed') + count(second, 'ACME: ordering'), 0, 'the second gateway ordered nothing');
    assert.equal(count(second, 'loaded from disk'), 2, second.logLines.filter((line) => line.includes('acme')).join('\n'));
    const renewed = await servedCertificate(secondPort, domain, root);
    assert.notEqual(renewed.serialNumber, before.serialNumber);
    assert.equal(renewed.fingerprint256, (await servedCertificate(tlsPort, domain, root)).fingerprint256);
    assert.equal(pebble.ordersAdded() - orders, 2, 'one order for the renewal too');
  });

  test('gateways starting together on one certs/ folder: one orders, the other waits its turn and takes that certificate from disk', async (t) => {
    // A folder of its own: the local CA's key folder sits beside the certificate folder.
    const shared = path.join(work, 'together', 'certs');
    await mkdir(shared, { recursive: true });
    const files = { GATEWAY_TLS_CERT: path.join(shared, 'server.crt'), GATEWAY_TLS_KEY: path.join(shared, 'server.key') };
    // The validator reaches the first gateway through a gate on the CA's tls-alpn-01 port: its order
    // stays in progress (holding the order lock) until the second gateway has started and checked.
    const firstPort = await freePort();
    const gate = await startGatedForwarder(tlsPort, firstPort);
    t.after(() => gate.close());
    const orders = pebble.ordersAdded();
    const first = await startTestGateway({ auth: 'basic', env: { ...acmeEnv(pebble.directoryUrl, files), GATEWAY_LISTEN: `127.0.0.1:${firstPort}` } });
    t.after(() => first.close());
    await waitFor('the CA validating the first gateway', () => gate.held > 0);
    assert.equal(count(first, 'ACME: ordering'), 1);

    const secondPort = await freePort();
    const second = await startTestGateway({ auth: 'basic', upstream: first.registry!.url, env: { ...acmeEnv(pebble.directoryUrl, files), GATEWAY_LISTEN: `127.0.0.1:${secondPort}` } });
    t.after(() => second.close());
    // The check its start began (or one begun here): it waits for the first gateway's order.
    const secondCheck = second.gateway.acmeCheckNow();
    assert.equal(second.gateway.acmeStatus()?.state, 'waiting');
    gate.open();
    await secondCheck;
    assert.equal(second.gateway.acmeStatus()?.state, 'valid');
    assert.equal(first.gateway.acmeStatus()?.state, 'valid');
    assert.equal(count(first, 'ACME certificate issued'), 1);
    assert.equal(count(second, 'ACME certificate loaded from disk (ordered by another gateway)'), 1);
    assert.equal(count(second, 'ACME: ordering') + count(second, 'ACME certificate issued'), 0, 'the second gateway ordered nothing');
    assert.equal(pebble.ordersAdded() - orders, 1, 'one order at pebble');
    const served = await servedCertificate(firstPort, domain, root);
    assert.equal((await servedCertificate(secondPort, domain, root)).fingerprint256, served.fingerprint256);
  });

  test('a certificate on disk that does not match its key, or names another host, is ignored with a log line and never served', async (t) => {
    // A valid pebble certificate for another name, with a key that is not its own.
    const setup = await startTestGateway({ auth: 'basic', env: acmeEnv(pebble.directoryUrl, { GATEWAY_ACME_DOMAINS: 'other.gateway.test' }) });
    await waitFor('a certificate for another host', () => setup.gateway.acmeStatus()?.state === 'valid');
    const otherCert = await readFile(path.join(setup.dir, 'certs', 'acme', 'certificate.crt'), 'utf8');
    const otherKey = await readFile(path.join(setup.dir, 'certs', 'acme', 'certificate.key'), 'utf8');
    const accountKey = await readFile(path.join(setup.dir, 'certs', 'acme', 'account.key'), 'utf8');
    await setup.close();

    const reasons: Record<string, RegExp> = {
      'another host': /does not name registry\.gateway\.test/,
      'a key that is not its own': /key does not belong/,
      'a file that does not parse': /certificate does not parse/,
    };
    for (const [name, cert, key] of [
      ['another host', otherCert, otherKey],
      ['a key that is not its own', otherCert, accountKey],
      ['a file that does not parse', otherCert.replace(/^[A-Za-z0-9+/]{64}$/m, 'A'.repeat(64)), otherKey],
    ] as const) {
      // Each in a folder of its own: the local CA's key folder sits beside the certificate folder.
      const shared = path.join(work, `planted-${name.replaceAll(' ', '-')}`, 'certs');
      await mkdir(path.join(shared, 'acme'), { recursive: true });
      await writeFile(path.join(shared, 'acme', 'certificate.crt'), cert);
      await writeFile(path.join(shared, 'acme', 'certificate.key'), key, { mode: 0o600 });
      const gw = await startTestGateway({ auth: 'basic', env: acmeEnv(pebble.directoryUrl, { GATEWAY_TLS_CERT: path.join(shared, 'server.crt'), GATEWAY_TLS_KEY: path.join(shared, 'server.key') }) });
      t.after(() => gw.close());
      const ignored = gw.logLines.find((line) => line.includes('ACME certificate on disk ignored'));
      assert.ok(ignored, name);
      assert.match(ignored, reasons[name]!, ignored);
      await waitFor(`a fresh certificate (${name})`, () => gw.gateway.acmeStatus()?.state === 'valid');
      const served = await servedCertificate(tlsPort, domain, root);
      assert.notEqual(served.fingerprint256, new X509Certificate(otherCert).fingerprint256, name);
      assert.equal(served.checkHost(domain), domain);
      await gw.close();
    }
  });

  test('`gateway certs --acme` issues in the foreground, printing each step; `--show` prints names and expiry; a CA that is down is named', async () => {
    const dir = path.join(work, 'cli');
    await mkdir(dir, { recursive: true });
    const env = acmeEnv(pebble.directoryUrl);
    const issued = await runCli(['certs', '--acme'], { cwd: dir, env });
    assert.equal(issued.code, 0, `${issued.stdout}\n${issued.stderr}`);
    assert.match(issued.stdout, /acme: registering an account/);
    assert.match(issued.stdout, /acme: registry\.gateway\.test: answering the tls-alpn-01 challenge/);
    assert.match(issued.stdout, /acme: certificate issued/);
    assert.match(issued.stdout, /names: +registry\.gateway\.test/);
    const onDisk = new X509Certificate(await readFile(path.join(dir, 'certs', 'acme', 'certificate.crt')));
    assert.equal(onDisk.checkHost(domain), domain);

    const shown = await runCli(['certs', '--show'], { cwd: dir, env });
    assert.match(shown.stdout, /ACME certificate \(served\): certs\/acme\/certificate\.crt/);
    assert.ok(shown.stdout.includes(`expires: ${new Date(onDisk.validTo).toISOString()}`), shown.stdout);
    assert.match(shown.stdout, /registry\.gateway\.test/);

    const downPort = await freePort();
    const down = await runCli(['certs', '--acme'], { cwd: dir, env: { ...env, GATEWAY_ACME_DIRECTORY: `https://127.0.0.1:${downPort}/dir` } });
    assert.equal(down.code, 1);
    assert.match(down.stderr, new RegExp(`ACME account failed: the ACME server https://127\\.0\\.0\\.1:${downPort} could not be reached: .*ECONNREFUSED`));
    assert.doesNotMatch(down.stderr, /at .*\.js:\d+/, 'no stack trace');
  });
});

function fetchStatus(gw: TestGateway): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: gw.gateway.port, servername: 'localhost', ca: gw.ca }, () => {
      socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    });
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('end', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0) }));
    socket.on('error', reject);
  });
}
