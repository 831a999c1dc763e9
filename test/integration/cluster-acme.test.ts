// ACME with two workers: the primary orders once from a real ACME CA (pebble), the tls-alpn-01 challenge is answered on the workers' port, and every worker serves the certificate.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { servedCertificate } from '../helpers/acme.js';
import { startPebble, type RunningPebble } from '../helpers/pebble.js';
import { freePort } from '../helpers/ports.js';
import { ServedGateway } from '../helpers/served.js';

const domain = 'registry.gateway.test';

/** GET /readyz on a new connection, trusting `root` only. */
function readyz(port: number, root: string): Promise<{ certificate?: { state: string; notAfter: string } }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, servername: domain, path: '/readyz', ca: root, agent: false, headers: { host: `${domain}:${port}` } }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      res.on('end', () => resolve(JSON.parse(body)));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('ACME with two workers', () => {
  let work: string;
  let pebble: RunningPebble;
  let root: string;
  let tlsPort: number;
  let served: ServedGateway;

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'cluster-acme-'));
    tlsPort = await freePort();
    pebble = await startPebble({ tlsPort, httpPort: await freePort() });
    const caFile = path.join(work, 'pebble-listener-ca.pem');
    await writeFile(caFile, pebble.caBundle);
    root = await pebble.root();
    served = new ServedGateway(work, {
      GATEWAY_WORKERS: '2',
      GATEWAY_LISTEN: `127.0.0.1:${tlsPort}`,
      GATEWAY_METRICS_LISTEN: '',
      GATEWAY_SHUTDOWN_GRACE: '1',
      GATEWAY_ACME: 'on',
      GATEWAY_ACME_DOMAINS: domain,
      GATEWAY_ACME_DIRECTORY: pebble.directoryUrl,
      GATEWAY_ACME_CA: caFile,
    });
  });
  after(async () => {
    await served?.stop();
    await pebble?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('the primary orders once, the challenge is answered on the shared port, and every new connection gets the certificate', { timeout: 120_000 }, async () => {
    const issued = await served.waitFor((entry) => entry.msg === 'ACME certificate issued');
    assert.equal(issued.worker, undefined, 'ordered by the primary');
    assert.equal(served.lines.filter((entry) => entry.msg?.startsWith('ACME certificate issued') || entry.msg?.startsWith('ACME: created the account key')).length, 2, 'one account, one order');
    assert.ok(served.lines.some((entry) => entry.msg?.includes('answering the tls-alpn-01 challenge')));
    for (let i = 0; i < 4; i++) {
      const certificate = await servedCertificate(tlsPort, domain, root);
      assert.equal(certificate.checkHost(domain), domain, `connection ${i} is shown the ACME certificate`);
      assert.equal(new Date(certificate.validTo).toISOString(), issued.notAfter);
    }
    for (let i = 0; i < 2; i++) {
      const ready = await readyz(tlsPort, root);
      assert.equal(ready.certificate?.state, 'valid', `connection ${i}: its worker reports the primary's certificate`);
    }
  });
});
