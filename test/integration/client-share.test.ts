// One caller cannot take the registry away from everyone: a fair share of upstream requests per address, stalled bodies cut off.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { ClientShare } from '../../src/registry/client-share.js';
import { fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawConnect, rawExchange } from '../helpers/raw-tls.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.js';
import { RegistryApi, sha256 } from '../helpers/registry-api.js';

const users = { alice: 'alice-password' };

/** A GET through the gateway from a chosen local address; resolves with status and the whole body. */
function getFrom(gw: TestGateway, localAddress: string, target: string, token: string): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  const port = Number(gw.host.split(':')[1]);
  return new Promise((resolve, reject) => {
    const req = https.get({ host: 'localhost', port, localAddress, path: target, ca: gw.ca, agent: false, headers: { Authorization: `Bearer ${token}`, Accept: 'application/vnd.oci.image.manifest.v1+json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** Retries `attempt` until it reports done; bounded, so a failure ends the test instead of hanging it. */
async function eventually(attempt: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await attempt()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`${what} never happened`);
}

describe('ClientShare', () => {
  test('counts per address group, refuses beyond the share, and releases once per slot', () => {
    const share = new ClientShare(2);
    const a = share.acquire('10.0.0.1')!;
    const b = share.acquire('::ffff:10.0.0.1')!;
    assert.equal(share.acquire('10.0.0.1'), undefined);
    assert.ok(share.acquire('10.0.0.2'));
    const v6 = [share.acquire('2001:db8::1'), share.acquire('2001:db8::ffff:2')];
    assert.ok(v6.every(Boolean));
    assert.equal(share.acquire('2001:db8:0:0:1::3'), undefined, 'the same /64');
    assert.ok(share.acquire('2001:db8:0:1::1'), 'another /64');
    a.release();
    a.release();
    assert.equal(share.inFlight('10.0.0.1'), 1);
    b.release();
    assert.equal(share.inFlight('10.0.0.1'), 0);
  });
});

describe('a fair share of upstream requests per client address (real registry)', () => {
  let gw: TestGateway;
  let token: string;
  let blob: { digest: string; size: number };
  let manifest: { body: Buffer; digest: string };
  const held: TLSSocket[] = [];

  before(async () => {
    gw = await startTestGateway({ users, env: { GATEWAY_UPSTREAM_PER_CLIENT: '4' } });
    token = await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/app:pull,push']);
    const api = new RegistryApi(gw, token);
    // Larger than every buffer between registry, gateway and client, so an unread download stays in flight.
    blob = await api.uploadBlob('alice/app', randomBytes(64 * 1024 * 1024));
    manifest = await api.makeManifest('alice/app', 'share');
    assert.equal((await api.putManifest('alice/app', 'latest', manifest.body)).status, 201);
  });
  after(async () => {
    for (const socket of held) socket.destroy();
    await gw?.close();
  });

  test('one address holding its share gets 429 for more, another address still pulls, and the share comes back', async () => {
    for (let i = 0; i < 4; i++) {
      const socket = await rawConnect(gw, '127.0.0.1');
      held.push(socket);
      const headers = new Promise<string>((resolve) => {
        let text = '';
        const onData = (chunk: Buffer) => {
          text += chunk.toString('latin1');
          if (!text.includes('\r\n\r\n')) return;
          socket.off('data', onData);
          // Never read further: the download stays in flight, holding its upstream request.
          socket.pause();
          resolve(text);
        };
        socket.on('data', onData);
      });
      socket.write(`GET /v2/alice/app/blobs/${blob.digest} HTTP/1.1\r\nHost: ${gw.host}\r\nAuthorization: Bearer ${token}\r\n\r\n`);
      assert.match(await headers, /^HTTP\/1\.1 200 /);
    }

    const refused = await getFrom(gw, '127.0.0.1', '/v2/alice/app/manifests/latest', token);
    assert.equal(refused.status, 429);
    assert.equal(refused.headers['retry-after'], '1');
    assert.equal(JSON.parse(refused.body.toString()).errors[0].code, 'TOOMANYREQUESTS');

    const pulledManifest = await getFrom(gw, '127.0.0.2', '/v2/alice/app/manifests/latest', token);
    assert.equal(pulledManifest.status, 200);
    assert.equal(sha256(pulledManifest.body), manifest.digest);
    const pulledBlob = await getFrom(gw, '127.0.0.2', `/v2/alice/app/blobs/${blob.digest}`, token);
    assert.equal(pulledBlob.status, 200);
    assert.equal(sha256(pulledBlob.body), blob.digest);

    for (const socket of held.splice(0)) socket.destroy();
    await eventually(async () => (await getFrom(gw, '127.0.0.1', '/v2/alice/app/manifests/latest', token)).status === 200, 'the share coming back after the clients hung up');
  });
});

describe('request bodies that stall, and clients that leave mid-upload (recording upstream)', () => {
  let upstream: RecordingUpstream;
  let gw: TestGateway;
  let token: string;
  const session = '/v2/alice/app/blobs/uploads/u-1?_state=s';

  before(async () => {
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({ upstream: upstream.url, users, env: { GATEWAY_BODY_IDLE_TIMEOUT: '1', GATEWAY_UPSTREAM_PER_CLIENT: '1' } });
    token = await fetchToken(gw, 'alice', 'alice-password', ['repository:alice/app:pull,push']);
  });
  after(async () => {
    await gw?.close();
    await upstream?.close();
  });

  const head = (framing: string) => `PATCH ${session} HTTP/1.1\r\nHost: ${gw.host}\r\nAuthorization: Bearer ${token}\r\n${framing}\r\n`;

  test('an upload that sends nothing is cut off on both sides, logged, and its share released', async () => {
    for (const framing of ['Transfer-Encoding: chunked\r\n', 'Content-Length: 1000\r\n']) {
      const cut = upstream.cutShort();
      const answer = await rawExchange(gw, head(framing), { methods: ['PATCH'] });
      assert.ok(answer.closedByGateway);
      assert.deepEqual(answer.statuses, []);
      await upstream.waitForCutShort(cut + 1);
      assert.ok(gw.logLines.some((line) => line.includes('request body stalled')));
      // The one request this address may have in flight is free again.
      await eventually(async () => (await request(gw, 'GET', '/v2/alice/app/tags/list', { headers: { Authorization: `Bearer ${token}` } })).status === 200, 'the share released');
    }
  });

  test('a slow upload that keeps sending is never cut off', async () => {
    const socket = await rawConnect(gw);
    const chunks = 12;
    const answer = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
        if (text.includes('\r\n\r\n{}')) resolve(text);
      });
      socket.on('close', () => resolve(text));
    });
    socket.write(head('Transfer-Encoding: chunked\r\n'));
    for (let i = 0; i < chunks; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      socket.write('1\r\nx\r\n');
    }
    socket.write('0\r\n\r\n');
    assert.match(await answer, /^HTTP\/1\.1 200 /);
    socket.destroy();
    const patch = upstream.requests.at(-1)!;
    assert.equal(patch.method, 'PATCH');
    assert.equal(patch.body.toString(), 'x'.repeat(chunks));
  });

  test('a client that leaves mid-upload leaves the upstream request cut short, never ended', async () => {
    for (const [framing, partial] of [
      ['Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n'],
      ['Content-Length: 1000\r\n', 'x'.repeat(500)],
    ] as const) {
      const cut = upstream.cutShort();
      const count = upstream.requests.length;
      const socket = await rawConnect(gw);
      const arrived = upstream.waitForPartial(partial);
      socket.write(head(framing) + partial);
      await arrived;
      socket.destroy();
      await upstream.waitForCutShort(cut + 1);
      assert.equal(upstream.requests.length, count, `${framing.trim()}: no complete request reached the registry`);
    }
  });
});
