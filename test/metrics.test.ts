// Tests for the metrics: what each event counts, bounded labels, scrape-time sources, the listener's answers, the settings, and reload events.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { Registry } from 'prom-client';
import { UserStore } from '../src/auth/htpasswd.js';
import { pino } from 'pino';
import { loadConfig } from '../src/config/config.js';
import { UpstreamPool } from '../src/registry/upstreams.js';
import type { GatewayEvent, RequestFinished } from '../src/ops/events.js';
import { GatewayMetrics, otherLabel } from '../src/ops/metrics.js';
import { startMetricsListener } from '../src/ops/metrics-listener.js';
import { processMetrics, registerSourceMetrics } from '../src/ops/metrics-sources.js';
import { samplesOf, valueOf } from './helpers/prometheus.js';

function request(fields: Partial<RequestFinished> = {}): RequestFinished {
  return { type: 'request', user: 'alice', remote: '127.0.0.1', method: 'GET', route: 'manifest', repository: 'app/web', status: 200, bytesIn: 0, bytesOut: 0, durationMs: 1, completed: true, ...fields };
}

async function counted(events: GatewayEvent[], maxRepositories = 100): Promise<string> {
  const metrics = new GatewayMetrics({ maxRepositories });
  for (const event of events) metrics.observe(event);
  return metrics.render();
}

describe('metrics from events', () => {
  it('count requests by method, route kind and status class, with their duration and bytes', async () => {
    const text = await counted([
      request({ method: 'HEAD', status: 200, durationMs: 0.8 }),
      request({ method: 'PUT', route: 'upload', status: 201, bytesIn: 5000, durationMs: 90_000 }),
      request({ method: 'GET', route: 'blob', status: 200, bytesOut: 7000, durationMs: 12 }),
      request({ method: 'GET', route: 'blob', status: 404, durationMs: 2 }),
      request({ method: 'GET', route: 'blob', status: 307, durationMs: 3 }),
    ]);
    assert.equal(valueOf(text, 'registry_gateway_requests_total', { method: 'HEAD', route: 'manifest', status_class: '2xx' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_requests_total', { method: 'PUT', route: 'upload', status_class: '2xx' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_requests_total', { method: 'GET', route: 'blob', status_class: '4xx' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_requests_total', { method: 'GET', route: 'blob', status_class: '3xx' }), 1);
    // The 0.8 ms HEAD falls in the first bucket; the 90 s upload only from 120 s on.
    assert.equal(valueOf(text, 'registry_gateway_request_duration_seconds_bucket', { method: 'HEAD', route: 'manifest', le: '0.001' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_request_duration_seconds_bucket', { method: 'PUT', route: 'upload', le: '60' }), 0);
    assert.equal(valueOf(text, 'registry_gateway_request_duration_seconds_bucket', { method: 'PUT', route: 'upload', le: '120' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_request_duration_seconds_sum', { method: 'PUT', route: 'upload' }), 90);
    assert.equal(valueOf(text, 'registry_gateway_received_bytes_total', { route: 'upload' }), 5000);
    assert.equal(valueOf(text, 'registry_gateway_sent_bytes_total', { route: 'blob' }), 7000);
  });

  it('count a method outside the registry API as "other", and answers cut off', async () => {
    const text = await counted([request({ method: 'PROPFIND', route: 'other', status: 404 }), request({ route: 'blob', completed: false })]);
    assert.equal(valueOf(text, 'registry_gateway_requests_total', { method: 'other', route: 'other', status_class: '4xx' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_requests_cut_off_total', { route: 'blob' }), 1);
  });

  it('count a pull for each manifest GET answered 200 only, and pushes and deletes from their events', async () => {
    const text = await counted([
      request({ method: 'GET', status: 200 }),
      request({ method: 'GET', status: 200 }),
      request({ method: 'HEAD', status: 200 }),
      request({ method: 'GET', status: 404 }),
      request({ method: 'GET', route: 'blob', status: 200 }),
      { type: 'manifest.pushed', user: 'alice', remote: undefined, repository: 'app/web', tag: 'v1', digest: 'sha256:00' },
      { type: 'manifest.deleted', user: 'alice', remote: undefined, repository: 'app/api', reference: 'v1' },
    ]);
    assert.equal(valueOf(text, 'registry_gateway_pulls_total', { repository: 'app/web' }), 2);
    assert.equal(valueOf(text, 'registry_gateway_pushes_total', { repository: 'app/web' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_manifest_deletes_total', { repository: 'app/api' }), 1);
  });

  it('keep 500 repositories to the configured number of labels plus "(other)", losing no count', async () => {
    const events: GatewayEvent[] = [];
    for (let i = 0; i < 500; i++) {
      events.push({ type: 'manifest.pushed', user: 'ci', remote: undefined, repository: `load/r${i}`, digest: 'sha256:00' });
      events.push(request({ repository: `load/r${i}` }));
    }
    for (const max of [100, 7, 0]) {
      const text = await counted(events, max);
      for (const name of ['registry_gateway_pushes_total', 'registry_gateway_pulls_total']) {
        const samples = samplesOf(text, name);
        assert.equal(samples.length, max + 1, `${name} with ${max}`);
        assert.equal(samples.reduce((sum, sample) => sum + sample.value, 0), 500);
        assert.equal(valueOf(text, name, { repository: otherLabel }), 500 - max);
      }
      // The first repositories seen keep theirs, also for later counts.
      if (max > 0) assert.equal(valueOf(text, 'registry_gateway_pushes_total', { repository: 'load/r0' }), 1);
    }
  });

  it('count logins by outcome and authenticator: a failure follows its request, a success is a request with no failure after it', async () => {
    const text = await counted([
      request({ route: 'token', authenticator: 'htpasswd' }),
      request({ route: 'token', authenticator: 'htpasswd', status: 401 }),
      { type: 'login.failed', user: 'alice', remote: undefined, authenticator: 'htpasswd', reason: 'wrong password' },
      request({ route: 'token', status: 401 }),
      { type: 'login.failed', user: 'mallory', remote: undefined, reason: 'unknown user' },
      request({ route: 'token', authenticator: 'ci-tokens' }),
      request({ route: 'token', authenticator: 'ldap' }),
    ]);
    assert.equal(valueOf(text, 'registry_gateway_logins_total', { outcome: 'success', authenticator: 'htpasswd' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_logins_total', { outcome: 'failure', authenticator: 'htpasswd' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_logins_total', { outcome: 'failure', authenticator: 'none' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_logins_total', { outcome: 'success', authenticator: 'ci-tokens' }), 1);
    // The last one is settled when the metrics are read.
    assert.equal(valueOf(text, 'registry_gateway_logins_total', { outcome: 'success', authenticator: 'ldap' }), 1);
  });

  it('settle a success once the request\'s events are told, without a scrape', async () => {
    const metrics = new GatewayMetrics({ maxRepositories: 10 });
    metrics.observe(request({ route: 'token', authenticator: 'htpasswd' }));
    await Promise.resolve();
    const text = await metrics.registry.metrics();
    assert.equal(valueOf(text, 'registry_gateway_logins_total', { outcome: 'success', authenticator: 'htpasswd' }), 1);
  });

  it('count throttled requests, tokens, denials, refused tag moves, reloads and maintenance', async () => {
    const text = await counted([
      request({ route: 'token', status: 429 }),
      request({ route: 'token', status: 401, throttled: true }),
      { type: 'token.issued', user: 'alice', remote: undefined, scopes: ['repository:app/web:pull'] },
      { type: 'token.issued', user: 'alice', remote: undefined, scopes: [] },
      { type: 'access.denied', user: 'bob', remote: undefined, denied: [{ action: 'push', repository: 'app/web', rule: 'no rule allows it' }], method: 'PUT', route: 'manifest', repository: 'app/web' },
      { type: 'tag.move-refused', user: 'alice', remote: undefined, repository: 'app/web', tag: 'v1', reason: 'immutable' },
      { type: 'config.reloaded', file: '/etc/gw/htpasswd' },
      { type: 'config.rejected', file: '/etc/gw/access.yml', error: 'line 3: bad' },
      { type: 'maintenance', on: true, by: 'ops' },
    ]);
    assert.equal(valueOf(text, 'registry_gateway_throttled_requests_total', { outcome: 'refused' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_throttled_requests_total', { outcome: 'delayed' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_tokens_issued_total'), 2);
    assert.equal(valueOf(text, 'registry_gateway_access_denied_total', { route: 'manifest' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_tag_moves_refused_total'), 1);
    assert.equal(valueOf(text, 'registry_gateway_config_reloads_total', { file: '/etc/gw/htpasswd', result: 'reloaded' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_config_reloads_total', { file: '/etc/gw/access.yml', result: 'rejected' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_maintenance'), 1);
    assert.equal(valueOf(await counted([{ type: 'maintenance', on: true }, { type: 'maintenance', on: false }]), 'registry_gateway_maintenance'), 0);
  });

  it('never show a user name, a name tried or a reason', async () => {
    const text = await counted([
      request({ user: 'alice-the-user', authenticator: 'htpasswd' }),
      request({ user: 'hunter2-typed-as-name', status: 401 }),
      { type: 'login.failed', user: 'hunter2-typed-as-name', remote: '192.0.2.7', reason: 'unknown user' },
      { type: 'manifest.pushed', user: 'alice-the-user', remote: '192.0.2.7', repository: 'app/web', digest: 'sha256:00' },
      { type: 'ci-token.created', user: 'alice-the-user', remote: undefined, id: 'tok-id-1', owner: 'alice-the-user' },
    ]);
    for (const secret of ['alice-the-user', 'hunter2', '192.0.2.7', 'unknown user', 'tok-id-1']) assert.ok(!text.includes(secret), secret);
  });
});

describe('metrics read at scrape time', () => {
  it('show the bcrypt queue, upstream health, failovers, the certificate expiry, audit failures and webhook queues as the sources have them', async () => {
    const registry = new Registry();
    const state = { waiting: 3, healthy: true, failovers: 2, notAfter: Date.UTC(2030, 0, 1) as number | undefined, auditFailures: 0, dropped: 0 };
    registerSourceMetrics(registry, {
      passwordChecks: () => ({ waiting: state.waiting, running: 4 }),
      upstreams: () => [
        { url: new URL('http://registry-a:5000'), healthy: state.healthy },
        { url: new URL('http://registry-b:5000'), healthy: true },
      ],
      failovers: () => state.failovers,
      certificateNotAfter: () => (state.notAfter === undefined ? undefined : { notAfter: state.notAfter, source: 'acme' }),
      auditFailures: () => state.auditFailures,
      webhooks: () => [{ name: 'ci', queued: 7, inFlight: 1, delivered: 10, retried: 2, failed: 1, dropped: state.dropped }],
    });
    let text = await registry.metrics();
    assert.equal(valueOf(text, 'registry_gateway_password_checks_waiting'), 3);
    assert.equal(valueOf(text, 'registry_gateway_password_checks_running'), 4);
    assert.equal(valueOf(text, 'registry_gateway_upstream_up', { upstream: 'http://registry-a:5000' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_upstream_failovers_total'), 2);
    assert.equal(valueOf(text, 'registry_gateway_certificate_expiry_timestamp_seconds', { source: 'acme' }), Date.UTC(2030, 0, 1) / 1000);
    assert.equal(valueOf(text, 'registry_gateway_audit_write_failures_total'), 0);
    assert.equal(valueOf(text, 'registry_gateway_webhook_deliveries_total', { webhook: 'ci', result: 'delivered' }), 10);
    assert.equal(valueOf(text, 'registry_gateway_webhook_deliveries_total', { webhook: 'ci', result: 'failed' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_webhook_deliveries_total', { webhook: 'ci', result: 'dropped' }), 0);
    assert.equal(valueOf(text, 'registry_gateway_webhook_queue', { webhook: 'ci', state: 'queued' }), 7);
    assert.equal(valueOf(text, 'registry_gateway_webhook_queue', { webhook: 'ci', state: 'in_flight' }), 1);
    Object.assign(state, { waiting: 0, healthy: false, failovers: 5, notAfter: undefined, auditFailures: 3, dropped: 4 });
    text = await registry.metrics();
    assert.equal(valueOf(text, 'registry_gateway_password_checks_waiting'), 0);
    assert.equal(valueOf(text, 'registry_gateway_upstream_up', { upstream: 'http://registry-a:5000' }), 0);
    assert.equal(valueOf(text, 'registry_gateway_upstream_up', { upstream: 'http://registry-b:5000' }), 1);
    assert.equal(valueOf(text, 'registry_gateway_upstream_failovers_total'), 5);
    assert.equal(valueOf(text, 'registry_gateway_certificate_expiry_timestamp_seconds'), undefined);
    assert.equal(valueOf(text, 'registry_gateway_audit_write_failures_total'), 3);
    assert.equal(valueOf(text, 'registry_gateway_webhook_deliveries_total', { webhook: 'ci', result: 'dropped' }), 4);
  });
});

describe('the Grafana dashboard', () => {
  it('asks only for metrics the gateway exports', async () => {
    const dashboard = JSON.parse(readFileSync(new URL('../../deploy/grafana-dashboard.json', import.meta.url), 'utf8')) as { panels: { targets?: { expr: string }[] }[] };
    const registry = new Registry();
    registerSourceMetrics(registry, { passwordChecks: () => ({ waiting: 0, running: 0 }), upstreams: () => [], failovers: () => 0, certificateNotAfter: () => undefined, auditFailures: () => 0, webhooks: () => [] });
    const families = [...(await new GatewayMetrics({ maxRepositories: 1 }).registry.getMetricsAsJSON()), ...(await registry.getMetricsAsJSON()), ...(await processMetrics().getMetricsAsJSON())];
    const known = new Set(families.flatMap((family) => (String(family.type) === 'histogram' ? ['_bucket', '_sum', '_count'].map((suffix) => family.name + suffix) : [family.name])));
    const asked = dashboard.panels.flatMap((panel) => panel.targets ?? []).flatMap((target) => [...target.expr.matchAll(/\b((?:registry_gateway|process|nodejs)_[a-z0-9_]+)/g)].map((match) => match[1]!));
    assert.ok(asked.length >= 20);
    for (const name of asked) assert.ok(known.has(name), `${name} is exported`);
  });
});

describe('the upstream pool\'s failover count', () => {
  it('counts a pick that moves on after a registry failed, not a first pick', () => {
    const pool = new UpstreamPool([new URL('http://registry-a:5000'), new URL('http://registry-b:5000')], { logger: pino({ level: 'silent' }), checkIntervalMs: 0 });
    try {
      const first = pool.pick()!;
      pool.pick();
      assert.equal(pool.failovers, 0);
      pool.markDown(first, 'ECONNREFUSED');
      const second = pool.pick(new Set([first]));
      assert.notEqual(second, first);
      assert.equal(pool.failovers, 1);
      // Every registry tried: nothing left, no failover.
      assert.equal(pool.pick(new Set([first, second!])), undefined);
      assert.equal(pool.failovers, 1);
    } finally {
      pool.close();
    }
  });
});

function get(port: number, method: string, target: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: target, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('the metrics listener', () => {
  it('answers GET and HEAD /metrics and nothing else', async (t: TestContext) => {
    let failing = false;
    const listener = await startMetricsListener({
      listen: { host: '127.0.0.1', port: 0 },
      contentType: 'text/plain; version=0.0.4; charset=utf-8',
      render: async () => {
        if (failing) throw new Error('broken');
        return 'up 1\n';
      },
    });
    t.after(() => listener.close());
    const port = listener.address.port;
    const scraped = await get(port, 'GET', '/metrics');
    assert.equal(scraped.status, 200);
    assert.equal(scraped.body, 'up 1\n');
    assert.equal(scraped.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal((await get(port, 'GET', '/metrics?name[]=up')).status, 200);
    const head = await get(port, 'HEAD', '/metrics');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal((await get(port, 'GET', '/')).status, 404);
    assert.equal((await get(port, 'GET', '/v2/')).status, 404);
    assert.equal((await get(port, 'GET', '/metrics/')).status, 404);
    const post = await get(port, 'POST', '/metrics');
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    const withBody = await get(port, 'GET', '/metrics', { 'content-type': 'text/plain' }, 'x'.repeat(100));
    assert.equal(withBody.status, 400);
    failing = true;
    assert.equal((await get(port, 'GET', '/metrics')).status, 500);
  });

  it('rejects with the socket error when the address is taken', async (t: TestContext) => {
    const first = await startMetricsListener({ listen: { host: '127.0.0.1', port: 0 }, contentType: 'text/plain', render: async () => '' });
    t.after(() => first.close());
    await assert.rejects(startMetricsListener({ listen: { host: '127.0.0.1', port: first.address.port }, contentType: 'text/plain', render: async () => '' }), { code: 'EADDRINUSE' });
  });
});

describe('metrics settings', () => {
  const cwd = path.resolve('/srv/gateway');

  it('listen on 127.0.0.1:9443 by default, count 100 repositories, and know the address was not given', () => {
    const { config } = loadConfig({ env: {}, cwd });
    assert.deepEqual(config.metricsListen, { host: '127.0.0.1', port: 9443 });
    assert.equal(config.metricsListenGiven, false);
    assert.equal(config.metricsRepositories, 100);
  });

  it('turn off with an empty variable (unlike other settings), winning over the file, and with an empty YAML value', async (t: TestContext) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'metrics-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'gateway.yml');
    await writeFile(file, 'metrics_listen: 0.0.0.0:9100\n');
    assert.deepEqual(loadConfig({ env: {}, cwd, file }).config.metricsListen, { host: '0.0.0.0', port: 9100 });
    assert.equal(loadConfig({ env: {}, cwd, file }).config.metricsListenGiven, true);
    assert.equal(loadConfig({ env: { GATEWAY_METRICS_LISTEN: '' }, cwd, file }).config.metricsListen, undefined);
    await writeFile(file, 'metrics_listen: ""\n');
    assert.equal(loadConfig({ env: {}, cwd, file }).config.metricsListen, undefined);
    await writeFile(file, 'metrics_listen:\n');
    assert.equal(loadConfig({ env: {}, cwd, file }).config.metricsListen, undefined);
    // Other settings still take an empty variable as unset.
    assert.equal(loadConfig({ env: { GATEWAY_METRICS_LISTEN: '', GATEWAY_SERVICE: '' }, cwd }).config.service, 'registry-gateway');
  });

  it('refuse a bad address or repository count, naming the setting', () => {
    assert.throws(() => loadConfig({ env: { GATEWAY_METRICS_LISTEN: 'localhost' }, cwd }), /GATEWAY_METRICS_LISTEN \(metrics_listen\): "localhost" is not HOST:PORT/);
    assert.throws(() => loadConfig({ env: { GATEWAY_METRICS_LISTEN: '127.0.0.1:70000' }, cwd }), /GATEWAY_METRICS_LISTEN \(metrics_listen\): port 70000 is out of range/);
    assert.throws(() => loadConfig({ env: { GATEWAY_METRICS_REPOSITORIES: '10001' }, cwd }), /GATEWAY_METRICS_REPOSITORIES \(metrics_repositories\): must be a whole number from 0 to 10000/);
    assert.throws(() => loadConfig({ env: { GATEWAY_METRICS_REPOSITORIES: '-1' }, cwd }), /GATEWAY_METRICS_REPOSITORIES/);
    assert.equal(loadConfig({ env: { GATEWAY_METRICS_REPOSITORIES: '0' }, cwd }).config.metricsRepositories, 0);
  });
});

describe('reload events of a watched file', () => {
  it('tell each reload taken, and each refused with the reason', async (t: TestContext) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'metrics-reload-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'htpasswd');
    await writeFile(file, 'alice:$2y$05$abcdefghijklmnopqrstuuJ9Rr4Qm1YqgG0bM3gZ6b0nE8FJ0mW1e\n');
    const users = await UserStore.load(file);
    const told: [string, string | undefined][] = [];
    users.onReload((reloaded, error) => told.push([reloaded, error]));
    assert.equal(await users.reload(), true);
    await rm(file);
    assert.equal(await users.reload(), false);
    assert.equal(told.length, 2);
    assert.deepEqual(told[0], [file, undefined]);
    assert.equal(told[1]![0], file);
    assert.match(told[1]![1] ?? '', /is missing/);
  });
});
