// Webhooks end to end: skopeo pushes through a real gateway, real HTTP receivers that check the signature, fail, hang or are down, and a full queue.

import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { basic, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage, ociManifestMediaType, type TestImage } from '../helpers/oci-image.js';
import { skopeoCopy, skopeoLogin } from '../helpers/skopeo.js';

const secret = 'webhook-secret-for-the-integration-test';
const users = { alice: 'alice-password' };
const rules = 'rules:\n  - { users: [alice], repositories: ["app/**"], actions: ["*"] }\n';

interface Receiver {
  url: string;
  /** Every request, in arrival order, with whether its signature held. */
  received: { body: string; signed: boolean; attempt: string }[];
  /** Requests answered so far. */
  answered: number;
  close(): Promise<void>;
}

/** A real receiver that checks `X-Gateway-Signature` over `TIMESTAMP.BODY` as the README tells; `answer` gives the status, or never resolves (a hung receiver). */
async function startReceiver(answer: (count: number) => Promise<number> | number): Promise<Receiver> {
  const received: Receiver['received'] = [];
  const state = { answered: 0 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const timestamp = String(req.headers['x-gateway-timestamp']);
      const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`);
      const given = Buffer.from(String(req.headers['x-gateway-signature'] ?? ''));
      const fresh = Math.abs(Date.now() / 1000 - Number(timestamp)) <= 300;
      const signed = fresh && given.length === expected.length && timingSafeEqual(given, expected);
      received.push({ body, signed, attempt: String(req.headers['x-gateway-attempt']) });
      void Promise.resolve(signed ? answer(received.length) : 401).then((status) => {
        state.answered += 1;
        res.writeHead(status).end();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    get answered() {
      return state.answered;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function until(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`never happened: ${what}`);
}

const never = () => new Promise<number>(() => undefined);

describe('webhooks through a real gateway', () => {
  let work: string;
  let secretFile: string;
  let image: TestImage;
  let flaky: Receiver;
  let slow: Receiver;
  let down: string;
  let hooked: TestGateway;
  let plain: TestGateway;

  const push = async (gw: TestGateway, target: string): Promise<number> => {
    const authFile = path.join(work, `auth-${gw.host.replace(':', '-')}.json`);
    await skopeoLogin({ host: gw.host, user: 'alice', password: users.alice, certDir: gw.certDir, authFile });
    const started = process.hrtime.bigint();
    await skopeoCopy({ from: image.reference, to: `docker://${gw.host}/${target}`, certDir: gw.certDir, authFile });
    return Number(process.hrtime.bigint() - started) / 1e6;
  };

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'webhooks-it-'));
    secretFile = path.join(work, 'webhook-secret');
    await writeFile(secretFile, `${secret}\n`, { mode: 0o600 });
    image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 256 * 1024 }] });
    flaky = await startReceiver((count) => (count <= 2 ? 500 : 204));
    slow = await startReceiver(never);
    const gone = await startReceiver(() => 204);
    down = gone.url;
    await gone.close();
    const config = [
      'webhooks:',
      `  - { name: flaky, url: "${flaky.url}", secret_file: "${secretFile}", retry_seconds: 0.05, repositories: ["app/web"] }`,
      `  - { name: slow, url: "${slow.url}", secret_file: "${secretFile}", timeout_seconds: 120, queue: 1, events: [push], repositories: ["app/slow*"] }`,
      `  - { name: down, url: "${down}", secret_file: "${secretFile}", retry_seconds: 0.05, max_attempts: 2, events: [push] }`,
      '',
    ].join('\n');
    hooked = await startTestGateway({ auth: 'basic', users, access: rules, config });
    plain = await startTestGateway({ auth: 'basic', users, access: rules });
  });
  after(async () => {
    await hooked?.close();
    await plain?.close();
    await flaky?.close();
    await slow?.close();
    await rm(work, { recursive: true, force: true });
  });

  test('a skopeo push reaches a receiver that fails twice, then accepts: one accepted delivery after 3 signed attempts; a delete follows', async () => {
    await push(hooked, 'app/web:v1');
    await until('accepted', () => hooked.gateway.webhookStats().find((stats) => stats.name === 'flaky')!.delivered === 1);
    assert.deepEqual(flaky.received.map((entry) => [entry.attempt, entry.signed]), [['1', true], ['2', true], ['3', true]]);
    const event = JSON.parse(flaky.received[2]!.body) as { type: string; subject: string; specversion: string; data: Record<string, string> };
    assert.equal(event.specversion, '1.0');
    assert.equal(event.type, 'io.registry-gateway.manifest.pushed');
    assert.equal(event.subject, 'app/web:v1');
    assert.deepEqual(event.data, { repository: 'app/web', tag: 'v1', digest: image.manifestDigest, mediaType: ociManifestMediaType, user: 'alice' });

    const deleted = await request(hooked, 'DELETE', `/v2/app/web/manifests/${image.manifestDigest}`, { headers: { Authorization: basic('alice', users.alice) } });
    assert.equal(deleted.status, 202);
    await until('the delete delivered', () => hooked.gateway.webhookStats().find((stats) => stats.name === 'flaky')!.delivered === 2);
    const gone = JSON.parse(flaky.received.at(-1)!.body) as { type: string; subject: string; data: Record<string, string> };
    assert.equal(gone.type, 'io.registry-gateway.manifest.deleted');
    assert.deepEqual(gone.data, { repository: 'app/web', digest: image.manifestDigest, user: 'alice' });
    assert.equal(flaky.received.length, 4, 'the delete went through at the first attempt');
    await until('a dead letter for the receiver that is down', () => hooked.logLines.some((line) => line.includes('"webhook":"down"') && line.includes('dead letter')));
  });

  test('a receiver that hangs or is down never holds up or fails a push', async (t) => {
    const withHooks: number[] = [];
    const without: number[] = [];
    for (const n of [1, 2, 3]) {
      // Each push to a repository new to its registry, on both gateways alike.
      without.push(await push(plain, `app/slow${n}:v1`));
      withHooks.push(await push(hooked, `app/slow${n}:v1`));
      await until('the hanging receiver holds the delivery', () => slow.received.length === n);
      assert.equal(slow.answered, 0, 'each push completed while the receiver still held its delivery');
    }
    await until('dead letters for the receiver that is down', () => hooked.gateway.webhookStats().find((stats) => stats.name === 'down')!.failed >= 4);
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    t.diagnostic(`push time (skopeo, new repository, 256 KiB layer), median of 3: ${median(without).toFixed(0)} ms without webhooks, ${median(withHooks).toFixed(0)} ms with one receiver hanging and one down`);
  });

  test('a full queue drops the oldest waiting delivery, counted and logged; pushes go on', async () => {
    const manifest = await readFile(path.join(image.dir, 'blobs', 'sha256', image.manifestDigest.slice('sha256:'.length)));
    // `slow` holds three deliveries; one more fills its 4 in flight, 1 waits, and each one after that pushes the oldest waiting out.
    for (const n of [2, 3, 4, 5, 6, 7]) {
      const put = await request(hooked, 'PUT', `/v2/app/slow1/manifests/v${n}`, { headers: { Authorization: basic('alice', users.alice), 'Content-Type': ociManifestMediaType }, body: manifest });
      assert.equal(put.status, 201, put.body);
    }
    await until('four in flight', () => slow.received.length === 4);
    const stats = hooked.gateway.webhookStats().find((entry) => entry.name === 'slow')!;
    assert.deepEqual({ queued: stats.queued, inFlight: stats.inFlight, dropped: stats.dropped, delivered: stats.delivered }, { queued: 1, inFlight: 4, dropped: 4, delivered: 0 });
    const drops = hooked.logLines.filter((line) => line.includes('webhook queue full: dropped the oldest delivery')).map((line) => (JSON.parse(line) as { subject: string }).subject);
    assert.deepEqual(drops, ['app/slow1:v3', 'app/slow1:v4', 'app/slow1:v5', 'app/slow1:v6']);
  });
});
