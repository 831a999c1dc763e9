// Webhooks against a real HTTP receiver: CloudEvents bodies, signatures a receiver can check, retries with backoff, dead letters, a full queue, filters, and the `webhooks:` section's errors.

import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { HTTP } from 'cloudevents';
import { pino } from 'pino';
import { loadConfig } from '../src/config/config.js';
import type { GatewayEvent } from '../src/ops/events.js';
import { Webhooks } from '../src/ops/webhooks.js';

const secret = 'a-shared-secret-of-some-length-0123';
const pushed = (repository: string, tag: string | undefined, n = 1): GatewayEvent => ({
  type: 'manifest.pushed',
  user: 'alice',
  remote: '192.0.2.1',
  repository,
  ...(tag !== undefined ? { tag } : {}),
  digest: `sha256:${String(n).padStart(64, '0')}`,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
});

interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A receiver as its owner would write it: checks the timestamp's age and the signature over `TIMESTAMP.BODY`. */
function verify(key: string, received: Received, nowSeconds = Math.floor(Date.now() / 1000)): boolean {
  const timestamp = String(received.headers['x-gateway-timestamp'] ?? '');
  const given = String(received.headers['x-gateway-signature'] ?? '');
  if (!/^\d+$/.test(timestamp) || Math.abs(nowSeconds - Number(timestamp)) > 300) return false;
  const expected = Buffer.from(`sha256=${createHmac('sha256', key).update(`${timestamp}.${received.body}`).digest('hex')}`);
  return given.length === expected.length && timingSafeEqual(Buffer.from(given), expected);
}

/** A real HTTP server on loopback; `answer` decides each request's status (or holds it). */
async function receiver(answer: (received: Received, count: number) => number | Promise<number>): Promise<{ url: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const entry = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      received.push(entry);
      void Promise.resolve(answer(entry, received.length)).then((status) => res.writeHead(status).end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function capturedLogger(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n').filter((text) => text.length > 0)) lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

async function until(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`never happened: ${what}`);
}

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'webhooks-unit-'));
  await writeFile(path.join(dir, 'secret'), `${secret}\n`, { mode: 0o600 });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The `webhooks:` section as the settings file gives it (secret_file: secret, beside it). */
function configured(yaml: string) {
  const file = path.join(dir, `gateway-${Math.random().toString(36).slice(2)}.yaml`);
  return writeFile(file, yaml).then(() => loadConfig({ file, env: {}, cwd: dir }).config.webhooks ?? []);
}

const hook = (url: string, extra = '') => `webhooks:\n  - name: ci\n    url: ${url}\n    secret_file: secret\n    retry_seconds: 0.01\n${extra}`;

describe('webhook deliveries', () => {
  it('a receiver that fails twice then succeeds gets one accepted delivery after 3 attempts, signed, as a CloudEvent', async () => {
    const server = await receiver((received, count) => (verify(secret, received) ? (count <= 2 ? 500 : 204) : 401));
    const { logger, lines } = capturedLogger();
    const webhooks = new Webhooks(await configured(hook(server.url)), { logger, source: 'https://registry.example.com', userAgent: 'test' });
    try {
      webhooks.offer(pushed('app/web', 'v1'));
      await until('delivered', () => webhooks.stats()[0]!.delivered === 1);
      assert.deepEqual(webhooks.stats()[0], { name: 'ci', queued: 0, inFlight: 0, delivered: 1, retried: 2, failed: 0, dropped: 0 });
      assert.equal(server.received.length, 3);
      assert.ok(server.received.every((received) => verify(secret, received)), 'every attempt signed');
      assert.deepEqual(server.received.map((received) => received.headers['x-gateway-attempt']), ['1', '2', '3']);
      assert.equal(new Set(server.received.map((received) => received.body)).size, 1, 'the same event each time');

      const event = HTTP.toEvent({ headers: server.received[2]!.headers, body: server.received[2]!.body });
      const single = Array.isArray(event) ? event[0]! : event;
      assert.equal(server.received[2]!.headers['content-type'], 'application/cloudevents+json; charset=utf-8');
      assert.equal(single.specversion, '1.0');
      assert.equal(single.type, 'io.registry-gateway.manifest.pushed');
      assert.equal(single.source, 'https://registry.example.com');
      assert.equal(single.subject, 'app/web:v1');
      assert.equal(single.datacontenttype, 'application/json');
      assert.equal(server.received[2]!.headers['x-gateway-delivery'], single.id);
      assert.deepEqual(single.data, { repository: 'app/web', tag: 'v1', digest: `sha256:${'1'.padStart(64, '0')}`, mediaType: 'application/vnd.oci.image.manifest.v1+json', user: 'alice' });
      assert.equal(lines.filter((line) => line.msg === 'webhook attempt failed; trying again').length, 2);
    } finally {
      webhooks.close();
      await server.close();
    }
  });

  it('a receiver checking with another secret refuses the signature; a 4xx is not tried again and becomes a dead letter', async () => {
    const server = await receiver((received) => (verify('some-other-secret-entirely', received) ? 204 : 401));
    const { logger, lines } = capturedLogger();
    const webhooks = new Webhooks(await configured(hook(server.url)), { logger, source: 'urn:test', userAgent: 'test' });
    try {
      webhooks.offer({ type: 'manifest.deleted', user: 'bob', remote: '192.0.2.2', repository: 'app/web', reference: 'v2' });
      await until('given up', () => webhooks.stats()[0]!.failed === 1);
      assert.equal(server.received.length, 1);
      const dead = lines.find((line) => line.msg === 'webhook delivery failed for good (dead letter)');
      assert.ok(dead);
      assert.equal(dead.err, 'answered 401');
      assert.equal((dead.event as { subject: string }).subject, 'app/web:v2');
      assert.equal((dead.event as { type: string }).type, 'io.registry-gateway.manifest.deleted');
      assert.ok(!JSON.stringify(lines).includes(secret), 'never the secret');
    } finally {
      webhooks.close();
      await server.close();
    }
  });

  it('a receiver that is down: offer returns at once, attempts go on in the background up to max_attempts, then a dead letter', async () => {
    const server = await receiver(() => 204);
    const url = server.url;
    await server.close();
    const { logger, lines } = capturedLogger();
    const webhooks = new Webhooks(await configured(hook(url, '    max_attempts: 3\n')), { logger, source: 'urn:test', userAgent: 'test' });
    try {
      webhooks.offer(pushed('app/web', 'v1'));
      assert.equal(webhooks.stats()[0]!.delivered + webhooks.stats()[0]!.failed, 0, 'nothing was waited for');
      await until('given up', () => webhooks.stats()[0]!.failed === 1);
      assert.equal(webhooks.stats()[0]!.retried, 2);
      assert.match(String(lines.find((line) => line.msg === 'webhook delivery failed for good (dead letter)')?.err), /ECONNREFUSED/);
    } finally {
      webhooks.close();
    }
  });

  it('a slow receiver is let go after timeout_seconds and tried again', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<number>((resolve) => (release = () => resolve(204)));
    const server = await receiver((_received, count) => (count === 1 ? held : 204));
    const { logger, lines } = capturedLogger();
    const webhooks = new Webhooks(await configured(hook(server.url, '    timeout_seconds: 0.2\n')), { logger, source: 'urn:test', userAgent: 'test' });
    try {
      webhooks.offer(pushed('app/web', 'v1'));
      await until('delivered on the second attempt', () => webhooks.stats()[0]!.delivered === 1);
      assert.match(String(lines.find((line) => line.msg === 'webhook attempt failed; trying again')?.err), /no answer within 0.2 s/);
      assert.equal(server.received.length, 2);
    } finally {
      release();
      webhooks.close();
      await server.close();
    }
  });

  it('stopping: a delivery waiting out its backoff is tried once more at once; one still refused becomes a dead letter holding its event', async () => {
    // The first attempt of each event fails; then app/ok is accepted and app/bad refused.
    const server = await receiver((received, count) => (count <= 2 ? 500 : received.body.includes('app/ok') ? 204 : 503));
    const { logger, lines } = capturedLogger();
    const webhooks = new Webhooks(await configured(hook(server.url).replace('retry_seconds: 0.01', 'retry_seconds: 60')), { logger, source: 'urn:test', userAgent: 'test' });
    try {
      webhooks.offer(pushed('app/ok', 'v1'));
      webhooks.offer(pushed('app/bad', 'v1', 2));
      await until('both waiting for a retry a minute away', () => webhooks.stats()[0]!.retried === 2 && webhooks.stats()[0]!.inFlight === 0);
      await webhooks.close(5_000);
      assert.equal(server.received.length, 4, 'each was tried once more, without waiting out the backoff');
      assert.deepEqual({ ...webhooks.stats()[0], name: undefined }, { name: undefined, queued: 0, inFlight: 0, delivered: 1, retried: 2, failed: 1, dropped: 0 });
      const dead = lines.filter((line) => line.msg === 'webhook delivery failed for good (dead letter)');
      assert.equal(dead.length, 1);
      assert.match(String(dead[0]!.err), /answered 503; the gateway is stopping/);
      assert.equal((dead[0]!.event as { subject: string }).subject, 'app/bad:v1');
      webhooks.offer(pushed('app/late', 'v1', 3));
      assert.equal(server.received.length, 4, 'nothing is queued once stopping');
    } finally {
      await server.close();
    }
  });

  it('stopping: a delivery the receiver holds past the drain, and those queued with no drain at all, are dead letters', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<number>((resolve) => (release = () => resolve(204)));
    const server = await receiver(() => held);
    const { logger, lines } = capturedLogger();
    const webhooks = new Webhooks(await configured(hook(server.url)), { logger, source: 'urn:test', userAgent: 'test' });
    const second = new Webhooks(await configured(hook('http://127.0.0.1:9/')), { logger, source: 'urn:test', userAgent: 'test' });
    try {
      webhooks.offer(pushed('app/held', 'v1'));
      await until('in flight', () => server.received.length === 1);
      await webhooks.close(200);
      second.offer(pushed('app/queued', 'v1', 2));
      await second.close();
      const dead = lines.filter((line) => line.msg === 'webhook delivery failed for good (dead letter)');
      assert.deepEqual(dead.map((line) => (line.event as { subject: string }).subject).sort(), ['app/held:v1', 'app/queued:v1']);
      assert.ok(dead.every((line) => line.err === 'not delivered before the gateway stopped'));
      assert.equal(lines.filter((line) => String(line.msg).startsWith('gateway stopping: webhook deliveries not made')).length, 2);
    } finally {
      release();
      await server.close();
    }
  });

  it('a full queue drops the oldest waiting delivery, counted and logged', async () => {
    const releases: (() => void)[] = [];
    const server = await receiver(() => new Promise<number>((resolve) => releases.push(() => resolve(204))));
    const { logger, lines } = capturedLogger();
    const webhooks = new Webhooks(await configured(hook(server.url, '    queue: 2\n')), { logger, source: 'urn:test', userAgent: 'test' });
    try {
      // Four are sent at once (and held by the receiver); two more wait; each one after that pushes the oldest waiting out.
      for (let n = 1; n <= 8; n++) webhooks.offer(pushed('app/web', `t${n}`, n));
      await until('four held by the receiver', () => releases.length === 4);
      assert.deepEqual({ ...webhooks.stats()[0]!, name: undefined }, { name: undefined, queued: 2, inFlight: 4, delivered: 0, retried: 0, failed: 0, dropped: 2 });
      const drops = lines.filter((line) => line.msg === 'webhook queue full: dropped the oldest delivery');
      assert.deepEqual(drops.map((line) => line.subject), ['app/web:t5', 'app/web:t6']);
      for (const release of releases.splice(0)) release();
      await until('the rest delivered', () => {
        for (const release of releases.splice(0)) release();
        return webhooks.stats()[0]!.delivered === 6;
      });
      const subjects = server.received.map((received) => (JSON.parse(received.body) as { subject: string }).subject).sort();
      assert.deepEqual(subjects, ['app/web:t1', 'app/web:t2', 'app/web:t3', 'app/web:t4', 'app/web:t7', 'app/web:t8']);
    } finally {
      webhooks.close();
      await server.close();
    }
  });

  it('filters: events, repository globs and tag globs (a push by digest alone has no tag to match)', async () => {
    const server = await receiver(() => 204);
    const { logger } = capturedLogger();
    const yaml = `${hook(server.url)}    events: [push]\n    repositories: ["app/**", "base"]\n    tags: ["v*"]\n`;
    const webhooks = new Webhooks(await configured(yaml), { logger, source: 'urn:test', userAgent: 'test' });
    try {
      webhooks.offer(pushed('app/web', 'v1', 1));
      webhooks.offer(pushed('app/web', 'latest', 2));
      webhooks.offer(pushed('app/web', undefined, 3));
      webhooks.offer(pushed('other/web', 'v1', 4));
      webhooks.offer(pushed('base', 'v2', 5));
      webhooks.offer({ type: 'manifest.deleted', user: 'bob', remote: undefined, repository: 'app/web', reference: 'v1' });
      webhooks.offer({ type: 'login.failed', user: 'bob', remote: undefined, reason: 'wrong password' });
      await until('two delivered', () => webhooks.stats()[0]!.delivered === 2);
      assert.deepEqual(server.received.map((received) => (JSON.parse(received.body) as { subject: string }).subject).sort(), ['app/web:v1', 'base:v2']);
    } finally {
      webhooks.close();
      await server.close();
    }
  });
});

describe('the webhooks: section', () => {
  const fails = async (yaml: string, pattern: RegExp) => assert.rejects(configured(yaml), pattern);

  it('names the key and its line for each mistake', async () => {
    await fails('webhooks:\n  url: https://x.example\n', /gateway-\w+\.yaml:2:3: webhooks: must be a list/);
    await fails('webhooks:\n  - url: http://ci.example.com/hook\n    secret_file: secret\n', /:2:10: webhooks\[0\]\.url: must be https:\/\/ \(plain http only to a receiver on this machine/);
    await fails('webhooks:\n  - url: https://user:pw@ci.example.com/hook\n    secret_file: secret\n', /webhooks\[0\]\.url: must carry no credentials/);
    await fails('webhooks:\n  - url: https://ci.example.com/hook\n', /webhooks\[0\]\.secret_file:/);
    await fails('webhooks:\n  - url: https://ci.example.com/hook\n    secret_file: secret\n    events: [push, tag]\n', /:4:13: webhooks\[0\]\.events: unknown event "tag"; known: push, delete/);
    await fails('webhooks:\n  - url: https://ci.example.com/hook\n    secret_file: secret\n    repositories: ["App/*"]\n', /webhooks\[0\]\.repositories: "App\/\*" contains uppercase/);
    await fails('webhooks:\n  - url: https://ci.example.com/hook\n    secret_file: secret\n    retries: 3\n', /webhooks\[0\]: unknown key "retries"/);
    await fails('webhooks:\n  - url: https://ci.example.com/hook\n    secret_file: secret\n    timeout_seconds: 0\n', /:4:22: webhooks\[0\]\.timeout_seconds: must be a number from 0.05 to 300/);
    await fails('webhooks:\n  - { name: ci, url: "https://a.example/h", secret_file: secret }\n  - { name: ci, url: "https://b.example/h", secret_file: secret }\n', /webhooks\[1\]\.name: "ci" is already webhooks\[0\]/);
  });

  it('defaults: both events, every repository, 10 s, 6 attempts from 1 s, a queue of 1000; http allowed to loopback', async () => {
    const [config] = await configured('webhooks:\n  - url: http://127.0.0.1:9/hook\n    secret_file: secret\n');
    assert.ok(config);
    assert.deepEqual(
      { name: config.name, events: config.events, repositories: config.repositories, timeoutMs: config.timeoutMs, maxAttempts: config.maxAttempts, retryMs: config.retryMs, queueSize: config.queueSize, secretFile: config.secretFile },
      { name: 'webhook-1', events: ['push', 'delete'], repositories: [], timeoutMs: 10_000, maxAttempts: 6, retryMs: 1000, queueSize: 1000, secretFile: path.join(dir, 'secret') },
    );
  });

  it('a secret file that is missing or too short stops the start, naming the key and its line', async () => {
    await writeFile(path.join(dir, 'short'), 'tiny\n');
    const { logger } = capturedLogger();
    const options = { logger, source: 'urn:test', userAgent: 'test' };
    const missing = await configured('webhooks:\n  - url: https://ci.example.com/hook\n    secret_file: nowhere\n');
    assert.throws(() => new Webhooks(missing, options), /:3:18: webhooks\[0\]\.secret_file: cannot read .*nowhere \(ENOENT\)/);
    const short = await configured('webhooks:\n  - url: https://ci.example.com/hook\n    secret_file: short\n');
    assert.throws(() => new Webhooks(short, options), /webhooks\[0\]\.secret_file: .*short must hold a secret of at least 16 characters/);
  });
});
