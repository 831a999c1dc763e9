// What the registry receives through the gateway, seen by a recording fake upstream: headers, streamed bodies, aborts.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  bodySha256: string;
  bodyBytes: number;
}

describe('the proxy, seen from the upstream', () => {
  let upstream: http.Server;
  let gw: TestGateway;
  let token: string;
  const seen: Seen[] = [];
  let downloadClosed: Promise<void>;
  let markDownloadClosed: () => void;

  before(async () => {
    downloadClosed = new Promise((resolve) => (markDownloadClosed = resolve));
    upstream = http.createServer((req, res) => {
      if (req.url === '/v2/') {
        res.setHeader('Docker-Distribution-Api-Version', 'registry/2.0');
        res.end('{}');
        return;
      }
      if (req.url?.startsWith('/v2/big/download/blobs/')) {
        // An endless slow blob: only a client hang-up ends it.
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        const timer = setInterval(() => res.write(randomBytes(64 * 1024)), 5);
        res.on('close', () => {
          clearInterval(timer);
          markDownloadClosed();
        });
        return;
      }
      const hash = createHash('sha256');
      let bytes = 0;
      req.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
      });
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, bodySha256: hash.digest('hex'), bodyBytes: bytes });
        // Like the registry: the upload location is built from the forwarded headers.
        const location = `${req.headers['x-forwarded-proto']}://${req.headers['x-forwarded-host']}/v2/x/blobs/uploads/some-id`;
        res.writeHead(req.method === 'HEAD' ? 200 : 202, { Location: location, 'Content-Length': req.method === 'HEAD' ? '1234' : '0', 'Docker-Distribution-Api-Version': 'registry/2.0' });
        res.end();
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const port = (upstream.address() as AddressInfo).port;
    gw = await startTestGateway({ upstream: `http://127.0.0.1:${port}` });
    token = await fetchToken(gw, 'alice', 'alice-password', ['repository:x:pull,push', 'repository:big/download:pull']);
  });
  after(async () => {
    await gw?.close();
    upstream.closeAllConnections();
    await new Promise((resolve) => upstream.close(resolve));
  });

  test('the client\'s Authorization and forwarding headers never reach the registry, with or without Expect', async () => {
    for (const expect of [undefined, '100-continue']) {
      seen.length = 0;
      const headers: Record<string, string> = {
        Authorization: `Bearer ${token}`,
        'X-Forwarded-Host': 'evil.example',
        'X-Forwarded-Proto': 'http',
        Forwarded: 'host=evil.example;proto=http',
        'X-Real-IP': '6.6.6.6',
      };
      if (expect) headers.Expect = expect;
      const res = await request(gw, 'POST', '/v2/x/blobs/uploads/', { headers });
      assert.equal(res.status, 202);
      assert.equal(res.headers.location, `https://${gw.host}/v2/x/blobs/uploads/some-id`, `with Expect: ${expect}`);
      const received = seen[0]!.headers;
      assert.equal(received.authorization, undefined);
      assert.equal(received.forwarded, undefined);
      assert.equal(received['x-real-ip'], undefined);
      assert.equal(received.expect, undefined);
      assert.equal(received['x-forwarded-host'], gw.host);
      assert.equal(received['x-forwarded-proto'], 'https');
      assert.equal(received['x-forwarded-for'], '127.0.0.1');
      // The test client sends Connection: close (no agent); that is about its own connection, and
      // passed on it would close the gateway's kept-alive socket to the registry after every request.
      assert.notEqual(received.connection, 'close');
    }
  });

  test('a chunked PATCH streams through whole, and HEAD keeps its Content-Length without a body', async () => {
    seen.length = 0;
    const body = randomBytes(8 * 1024 * 1024 + 17);
    const [host, port] = gw.host.split(':') as [string, string];
    const status = await new Promise<number>((resolve, reject) => {
      const req = https.request({ host, port: Number(port), method: 'PATCH', path: '/v2/x/blobs/uploads/some-id', ca: gw.ca, headers: { Authorization: `Bearer ${token}`, 'Transfer-Encoding': 'chunked' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      for (let offset = 0; offset < body.length; offset += 1024 * 1024) req.write(body.subarray(offset, offset + 1024 * 1024));
      req.end();
    });
    assert.equal(status, 202);
    assert.equal(seen[0]!.headers['transfer-encoding'], 'chunked');
    assert.equal(seen[0]!.bodyBytes, body.length);
    assert.equal(seen[0]!.bodySha256, createHash('sha256').update(body).digest('hex'));
    const head = await request(gw, 'HEAD', `/v2/x/blobs/sha256:${'a'.repeat(64)}`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '1234');
    assert.equal(head.body, '');
  });

  test('GET /v2/ is answered by the gateway itself once the caller is authenticated', async () => {
    seen.length = 0;
    const res = await request(gw, 'GET', '/v2/', { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.deepEqual(res.json(), {});
    assert.equal(seen.length, 0);
  });

  test('a client that hangs up mid-download ends the upstream response too', async () => {
    const [host, port] = gw.host.split(':') as [string, string];
    await new Promise<void>((resolve, reject) => {
      const req = https.get({ host, port: Number(port), path: `/v2/big/download/blobs/sha256:${'b'.repeat(64)}`, ca: gw.ca, headers: { Authorization: `Bearer ${token}` } }, (res) => {
        let received = 0;
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received > 1024 * 1024) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', (error) => ((error as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(error)));
    });
    await downloadClosed;
  });
});
