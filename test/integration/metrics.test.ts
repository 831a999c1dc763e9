// Metrics end to end: a real Prometheus scrapes a real gateway and counts skopeo's pushes and pulls; the listener's switch, secrets, label bounds, reloads and maintenance.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { addUser } from '../../src/auth/htpasswd.js';
import { requireCommand } from '../helpers/clients.js';
import { basic, fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage, ociConfigMediaType, ociManifestMediaType, type TestImage } from '../helpers/oci-image.js';
import { freePort } from '../helpers/ports.js';
import { eventually, portIsClosed } from '../helpers/processes.js';
import { samplesOf, startPrometheus, valueOf, type RunningPrometheus } from '../helpers/prometheus.js';
import { sha256 } from '../helpers/registry-api.js';
import { runCli } from '../helpers/run-cli.js';
import { skopeoCopy, skopeoLogin } from '../helpers/skopeo.js';

const user = 'metrics-user-q7z';
const password = 'metrics-password-x93kd';

async function scrape(gw: TestGateway): Promise<string> {
  const port = gw.gateway.metricsPort;
  assert.ok(port !== undefined, 'the metrics listener is on');
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(response.status, 200);
  return response.text();
}

/** The one value of an instant query, or undefined while Prometheus has none. */
async function single(prometheus: RunningPrometheus, expression: string): Promise<number | undefined> {
  const result = await prometheus.query(expression);
  assert.ok(result.length <= 1, `${expression} gave ${result.length} series`);
  return result[0]?.value;
}

/** The manifest GETs the gateway answered 200 for `repository`, from its own access log. */
function manifestGets(gw: TestGateway, repository: string): number {
  return gw.logLines
    .map((line) => JSON.parse(line) as { msg?: string; method?: string; path?: string; status?: number })
    .filter((entry) => entry.msg === 'request' && entry.method === 'GET' && entry.status === 200 && entry.path?.startsWith(`/v2/${repository}/manifests/`)).length;
}

describe('metrics scraped by a real Prometheus', () => {
  let work: string;
  let gw: TestGateway;
  let prometheus: RunningPrometheus;
  let image: TestImage;
  let authFile: string;

  before(async () => {
    await requireCommand('prometheus', 'prometheus');
    work = await mkdtemp(path.join(os.tmpdir(), 'metrics-test-'));
    gw = await startTestGateway({ users: { [user]: password }, env: { GATEWAY_METRICS_LISTEN: '127.0.0.1:0' } });
    prometheus = await startPrometheus(`127.0.0.1:${gw.gateway.metricsPort}`);
    image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 64 * 1024 }] });
    authFile = path.join(work, 'auth.json');
    await skopeoLogin({ host: gw.host, user, password, certDir: gw.certDir, authFile });
  });
  after(async () => {
    await prometheus?.close();
    await gw?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('counts the pushes and pulls skopeo made, read back through the Prometheus HTTP API', async () => {
    const context = { certDir: gw.certDir, authFile };
    await skopeoCopy({ ...context, from: image.reference, to: `docker://${gw.host}/team/app:v1` });
    await skopeoCopy({ ...context, from: image.reference, to: `docker://${gw.host}/team/app:v2` });
    await skopeoCopy({ ...context, from: `docker://${gw.host}/team/app:v1`, to: `oci:${path.join(work, 'pulled')}:v1` });
    await skopeoCopy({ ...context, from: `docker://${gw.host}/team/app:v2`, to: `oci:${path.join(work, 'pulled')}:v2` });
    const pulls = manifestGets(gw, 'team/app');
    assert.ok(pulls >= 2, `two pulls answered (the access log shows ${pulls})`);

    const seen = await eventually(async () => {
      const pushed = await single(prometheus, 'registry_gateway_pushes_total{repository="team/app"}');
      const pulled = await single(prometheus, 'registry_gateway_pulls_total{repository="team/app"}');
      return pushed === 2 && pulled === pulls;
    }, 300);
    const state = {
      pushes: await single(prometheus, 'registry_gateway_pushes_total{repository="team/app"}'),
      pulls: await single(prometheus, 'registry_gateway_pulls_total{repository="team/app"}'),
      target: await prometheus.targetHealth(),
    };
    assert.ok(seen, `Prometheus shows 2 pushes and ${pulls} pulls of team/app; it has ${JSON.stringify(state)}\n${prometheus.output()}`);

    assert.equal(await single(prometheus, 'up{job="gateway"}'), 1);
    assert.ok((await single(prometheus, 'sum(registry_gateway_requests_total{route="manifest",method="PUT",status_class="2xx"})'))! >= 2);
    assert.ok((await single(prometheus, 'sum(registry_gateway_received_bytes_total{route="upload"})'))! >= 64 * 1024, 'the layer came in');
    assert.ok((await single(prometheus, 'sum(registry_gateway_sent_bytes_total{route="blob"})'))! >= 64 * 1024, 'and went out');
    assert.ok((await single(prometheus, 'registry_gateway_logins_total{outcome="success",authenticator="htpasswd"}'))! >= 1);
    assert.ok((await single(prometheus, 'registry_gateway_tokens_issued_total'))! >= 1);
    assert.ok((await single(prometheus, 'sum(registry_gateway_requests_total{route="token",status_class="2xx"})'))! >= 1, 'token requests have their route kind');
    // The challenge before each login: refused before the gate noted its route, counted on its own route still.
    assert.ok((await single(prometheus, 'sum(registry_gateway_requests_total{route="base",status_class="4xx"})'))! >= 1, 'a refused /v2/ is a base request');
    assert.ok((await single(prometheus, 'sum(registry_gateway_request_duration_seconds_count{route="manifest"})'))! >= 4);
    assert.ok((await single(prometheus, 'process_cpu_seconds_total'))! > 0, 'process metrics');
    const expiry = await single(prometheus, 'registry_gateway_certificate_expiry_timestamp_seconds{source="tls_cert"}');
    const served = new X509Certificate(await readFile(path.join(gw.dir, 'certs', 'server.crt')));
    assert.equal(expiry, Math.floor(Date.parse(served.validTo) / 1000));
    assert.equal(await single(prometheus, `registry_gateway_upstream_up{upstream="${gw.gateway.upstreams[0]!.origin}"}`), 1);
  });

  test('every query of the Grafana dashboard runs on what Prometheus scraped', async () => {
    const dashboard = JSON.parse(await readFile(new URL('../../../deploy/grafana-dashboard.json', import.meta.url), 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
    const mustShow = new Set(['Requests / s', 'Certificate days left', 'Upstream registries up', 'Maintenance', 'Requests by route kind', 'Bytes in / out', 'Logins by outcome and authenticator', 'Pushes and pulls by repository (top 10)', 'bcrypt queue', 'CPU']);
    for (const panel of dashboard.panels) {
      for (const target of panel.targets ?? []) {
        const expression = target.expr.replaceAll('$job', '.*').replaceAll('$instance', '.*');
        // Every query is valid PromQL; a rate needs two scrapes of a series before it shows.
        const shows = await eventually(async () => (await prometheus.query(expression)).length > 0 || !mustShow.has(panel.title), 100);
        assert.ok(shows, `"${panel.title}" shows data: ${expression}`);
      }
    }
    const daysLeft = await single(prometheus, 'min((registry_gateway_certificate_expiry_timestamp_seconds - time()) / 86400)');
    assert.ok(daysLeft !== undefined && daysLeft > 300, `the local certificate has about a year left (${daysLeft})`);
  });

  test('never shows a user name, a password, a token or a name tried', async () => {
    const token = await fetchToken(gw, user, password, ['repository:team/app:pull']);
    const tried = 'Typed-Password-As-Name-5512';
    const refused = await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic(tried, 'whatever-secret-771') } });
    assert.equal(refused.status, 401);
    assert.equal((await request(gw, 'GET', '/v2/team/app/manifests/v1', { headers: { Authorization: `Bearer ${token}`, Accept: ociManifestMediaType } })).status, 200);
    let text = '';
    assert.ok(await eventually(async () => {
      text = await scrape(gw);
      return (valueOf(text, 'registry_gateway_logins_total', { outcome: 'failure', authenticator: 'none' }) ?? 0) >= 1;
    }), 'the failed login is counted');
    for (const secret of [user, password, tried, 'whatever-secret-771', token, token.split('.')[2]!]) {
      assert.ok(!text.includes(secret), `the metrics text must not contain ${secret.slice(0, 12)}…`);
    }
  });

  test('counts a reload of htpasswd, a refused one, and the TLS certificate read again on SIGHUP', async () => {
    await addUser(gw.htpasswd, 'carol', 'carol-password', 5);
    const reloaded = () => scrape(gw).then((text) => valueOf(text, 'registry_gateway_config_reloads_total', { file: gw.htpasswd, result: 'reloaded' }) ?? 0);
    assert.ok(await eventually(async () => (await reloaded()) >= 1), 'the change was picked up and counted');
    await rm(gw.htpasswd);
    const rejected = () => scrape(gw).then((text) => valueOf(text, 'registry_gateway_config_reloads_total', { file: gw.htpasswd, result: 'rejected' }) ?? 0);
    assert.ok(await eventually(async () => (await rejected()) >= 1), 'the missing file was refused and counted');
    await addUser(gw.htpasswd, user, password, 5);
    await gw.gateway.reload();
    const text = await scrape(gw);
    assert.equal(valueOf(text, 'registry_gateway_config_reloads_total', { file: path.join(gw.dir, 'certs', 'server.crt'), result: 'reloaded' }), 1);
  });

  test('shows read-only maintenance while it is on', async () => {
    const maintenance = (...args: string[]) => runCli(['maintenance', ...args], { cwd: gw.dir });
    assert.equal(valueOf(await scrape(gw), 'registry_gateway_maintenance'), 0);
    assert.equal((await maintenance('on', '--reason', 'metrics test')).code, 0);
    assert.ok(await eventually(async () => valueOf(await scrape(gw), 'registry_gateway_maintenance') === 1), 'the gauge shows maintenance on');
    assert.equal((await maintenance('off')).code, 0);
    assert.ok(await eventually(async () => valueOf(await scrape(gw), 'registry_gateway_maintenance') === 0), 'and off again');
  });
});

describe('the metrics listener setting', () => {
  test('an empty GATEWAY_METRICS_LISTEN turns the listener off, even when the file names an address', async () => {
    const port = await freePort();
    const config = `metrics_listen: 127.0.0.1:${port}\n`;
    const on = await startTestGateway({ config });
    try {
      assert.equal(on.gateway.metricsPort, port);
      assert.equal(await portIsClosed(port), false);
    } finally {
      await on.close();
    }
    const off = await startTestGateway({ config, env: { GATEWAY_METRICS_LISTEN: '' } });
    try {
      assert.equal(off.gateway.metricsPort, undefined);
      assert.equal(await portIsClosed(port), true);
    } finally {
      await off.close();
    }
  });

  test('an address given and taken stops the start naming the setting; the default taken only warns', async () => {
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const taken = (holder.address() as { port: number }).port;
    try {
      await assert.rejects(startTestGateway({ env: { GATEWAY_METRICS_LISTEN: `127.0.0.1:${taken}` } }), /GATEWAY_METRICS_LISTEN \(metrics_listen\): cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\)/);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
    // The default address, held by this test. Other gateways on this machine may hold it for a while
    // (it is every gateway's default): wait for a turn, so that nobody frees it under the test.
    const defaultHolder: Server = createServer();
    let held = false;
    for (let attempt = 0; attempt < 300 && !held; attempt++) {
      held = await new Promise<boolean>((resolve) => {
        defaultHolder.once('error', () => resolve(false));
        defaultHolder.listen(9443, '127.0.0.1', () => resolve(true));
      });
      if (!held) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(held, '127.0.0.1:9443 came free within 30 s');
    try {
      const gw = await startTestGateway();
      try {
        assert.equal(gw.gateway.metricsPort, undefined);
        assert.ok(gw.logLines.some((line) => line.includes('no metrics: the default metrics address is taken')), 'a warning says so');
      } finally {
        await gw.close();
      }
    } finally {
      await new Promise((resolve) => defaultHolder.close(resolve));
    }
  });
});

describe('label cardinality with 500 repositories', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({ auth: 'basic', env: { GATEWAY_METRICS_LISTEN: '127.0.0.1:0' } });
  });
  after(async () => {
    await gw?.close();
  });

  test('pushes to 500 repositories give 100 repository labels and "(other)" for the rest, none lost', async () => {
    const headers = { Authorization: basic('alice', 'alice-password') };
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
    const digest = sha256(config);
    const started = await request(gw, 'POST', '/v2/load/base/blobs/uploads/', { headers });
    assert.equal(started.status, 202, started.body);
    const location = new URL(String(started.headers.location), gw.url);
    location.searchParams.set('digest', digest);
    const uploaded = await request(gw, 'PUT', `${location.pathname}${location.search}`, { headers: { ...headers, 'Content-Type': 'application/octet-stream', 'Content-Length': String(config.length) }, body: config });
    assert.equal(uploaded.status, 201, uploaded.body);
    const manifest = (i: number) =>
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: ociManifestMediaType, config: { mediaType: ociConfigMediaType, digest, size: config.length }, layers: [], annotations: { i: String(i) } }));
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < 500; i = next++) {
        const mounted = await request(gw, 'POST', `/v2/load/r${i}/blobs/uploads/?mount=${digest}&from=load/base`, { headers });
        assert.equal(mounted.status, 201, `mount into load/r${i}: ${mounted.body}`);
        const body = manifest(i);
        const put = await request(gw, 'PUT', `/v2/load/r${i}/manifests/latest`, { headers: { ...headers, 'Content-Type': ociManifestMediaType, 'Content-Length': String(body.length) }, body });
        assert.equal(put.status, 201, `push to load/r${i}: ${put.body}`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    let text = '';
    assert.ok(await eventually(async () => {
      text = await scrape(gw);
      return samplesOf(text, 'registry_gateway_pushes_total').reduce((sum, sample) => sum + sample.value, 0) === 500;
    }), 'every push is counted');
    const pushes = samplesOf(text, 'registry_gateway_pushes_total');
    assert.equal(pushes.length, 101);
    assert.equal(valueOf(text, 'registry_gateway_pushes_total', { repository: '(other)' }), 400);
    assert.ok(pushes.every((sample) => sample.labels.repository === '(other)' || /^load\/r\d+$/.test(sample.labels.repository!)));
    // Every other family stays small too: no label takes a value per repository.
    const series = new Map<string, number>();
    for (const line of text.split('\n')) if (line && !line.startsWith('#')) series.set(line.split(/[{ ]/)[0]!, (series.get(line.split(/[{ ]/)[0]!) ?? 0) + 1);
    for (const [name, count] of series) assert.ok(count <= 120 || name.endsWith('_bucket'), `${name} has ${count} series`);
    assert.ok(text.split('\n').length < 2000, `${text.split('\n').length} lines in all`);
  });
});
