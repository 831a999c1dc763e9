// The ACME manager's schedule with no CA behind it: a certificate that comes due is ordered (never looked at over and over), a newer one on disk is taken instead.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import forge from 'node-forge';
import { pino } from 'pino';
import { AcmeChallenges } from '../src/tls/acme/challenges.js';
import { AcmeManager } from '../src/tls/acme/manager.js';
import { acmePaths, writeCertificate, type AcmePaths } from '../src/tls/acme/store.js';

const DAY_MS = 24 * 60 * 60 * 1000;
const domain = 'registry.example.test';
const T0 = Date.parse('2026-01-01T00:00:00Z');

/** A self-signed certificate for `domain`, valid from `from` for `days`. */
function certificate(from: number, days: number): { certPem: string; keyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  cert.serialNumber = `0${Math.floor(Math.random() * 1e12).toString(16)}`;
  cert.validity.notBefore = new Date(from);
  cert.validity.notAfter = new Date(from + days * DAY_MS);
  cert.setSubject([{ name: 'commonName', value: domain }]);
  cert.setIssuer([{ name: 'commonName', value: domain }]);
  cert.setExtensions([{ name: 'subjectAltName', altNames: [{ type: 2, value: domain }] }]);
  cert.sign(forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

describe('ACME manager schedule', () => {
  let dir: string;
  let directory: http.Server;
  let directoryRequests = 0;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'acme-manager-'));
    // Not an ACME server: every order fails at once, at its first request.
    directory = http.createServer((_req, res) => {
      directoryRequests += 1;
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => directory.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    await new Promise((resolve) => directory.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  /** A manager on its own certs/acme/ holding `served`, its clock at T0 until moved. */
  async function managerWith(name: string, served: { certPem: string; keyPem: string }) {
    const paths: AcmePaths = acmePaths(path.join(dir, name));
    await writeCertificate(paths, served.certPem, served.keyPem);
    const clock = { now: T0 };
    const installed: string[] = [];
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString('utf8'));
        callback();
      },
    });
    const manager = new AcmeManager({
      directoryUrl: `http://127.0.0.1:${(directory.address() as AddressInfo).port}/dir`,
      domains: [domain],
      challenge: 'tls-alpn-01',
      paths,
      challenges: new AcmeChallenges(),
      logger: pino(sink),
      install: (certPem) => installed.push(certPem),
      retryMs: 60 * 60 * 1000,
      now: () => clock.now,
    });
    assert.equal(await manager.loadFromDisk(), true);
    return { manager, paths, clock, installed, lines };
  }

  it('orders once the served certificate is due, though it is not yet due by the unjittered measure', async () => {
    const first = certificate(T0, 90);
    const { manager, clock, installed } = await managerWith('due', first);
    // Just past this manager's renewal time, which is spread up to 2% of the lifetime earlier.
    clock.now = Date.parse(manager.status().renewAt!) + 1;
    const asked = directoryRequests;
    await manager.checkNow();
    const status = manager.status();
    assert.equal(status.state, 'failing', 'an order was made (and failed), not a wait on the same file');
    assert.match(status.lastError ?? '', /404/);
    assert.ok(directoryRequests > asked, 'the ACME server was asked');
    assert.deepEqual(installed, [first.certPem], 'the served certificate stays');
    assert.ok(Date.parse(status.nextAttempt!) >= clock.now + 0.8 * 60 * 60 * 1000, 'the retry waits out its backoff');
    await manager.stop();
  });

  it('takes a newer certificate another gateway wrote, and orders nothing', async () => {
    const { manager, paths, clock, installed, lines } = await managerWith('renewed-elsewhere', certificate(T0, 90));
    clock.now = Date.parse(manager.status().renewAt!) + 1;
    const renewed = certificate(clock.now - 60_000, 90);
    await writeCertificate(paths, renewed.certPem, renewed.keyPem);
    const asked = directoryRequests;
    await manager.checkNow();
    assert.equal(manager.status().state, 'valid');
    assert.equal(installed.at(-1), renewed.certPem);
    assert.equal(directoryRequests, asked, 'no order');
    assert.ok(lines.some((line) => line.includes('ACME certificate loaded from disk')));
    assert.ok(Date.parse(manager.status().renewAt!) > clock.now + 50 * DAY_MS);
    await manager.stop();
  });

  it('does not make a certificate it just took from disk due by its spread alone', async () => {
    const { manager, paths, clock, installed } = await managerWith('ordered-together', certificate(T0, 90));
    clock.now = Date.parse(manager.status().renewAt!) + 1;
    // Ordered a second after the served one: due by an unlucky spread, not by the third left.
    const sibling = certificate(T0 + 1000, 90);
    await writeCertificate(paths, sibling.certPem, sibling.keyPem);
    const asked = directoryRequests;
    await manager.checkNow();
    assert.equal(installed.at(-1), sibling.certPem);
    assert.equal(directoryRequests, asked, 'no order');
    assert.ok(Date.parse(manager.status().renewAt!) > clock.now);
    await manager.stop();
  });

  it('does not trade the served certificate for one on disk that expires sooner', async () => {
    const { manager, paths, clock, installed } = await managerWith('older-on-disk', certificate(T0, 90));
    clock.now = Date.parse(manager.status().renewAt!) + 1;
    // Not due by its own lifetime (39 days), yet it expires a day before the served one.
    const shorter = certificate(T0 + 50 * DAY_MS, 39);
    await writeCertificate(paths, shorter.certPem, shorter.keyPem);
    const asked = directoryRequests;
    await manager.checkNow();
    assert.ok(directoryRequests > asked, 'an order was made');
    assert.ok(!installed.includes(shorter.certPem));
    await manager.stop();
  });
});
