// `gateway serve` with two workers: skopeo pushes and pulls, one count of wrong passwords for all, SIGHUP reaches every worker, a killed worker is replaced, SIGTERM drains.

import assert from 'node:assert/strict';
import { X509Certificate, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { basic, fetchToken, request, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage } from '../helpers/oci-image.js';
import { descendants, eventually, isAlive } from '../helpers/processes.js';
import { sha256 } from '../helpers/registry-api.js';
import { runCli } from '../helpers/run-cli.js';
import { ServedGateway, type LogEntry } from '../helpers/served.js';
import { skopeoCopy, skopeoLogin } from '../helpers/skopeo.js';

const repository = 'team/app';
const users = { alice: 'alice-password', carol: 'carol-password' };

/** The workers that answered the request lines from index `from` on. */
function workersOf(lines: LogEntry[]): Set<number> {
  return new Set(lines.map((entry) => entry.worker as number));
}

/** The certificate a fresh TLS connection is given. */
function servedCertificate(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca }, () => {
      const fingerprint = socket.getPeerX509Certificate()!.fingerprint256;
      socket.end();
      resolve(fingerprint);
    });
    socket.on('error', reject);
  });
}

/** One keep-alive connection: every request on it goes to the same worker. */
function connection(gw: Pick<TestGateway, 'host' | 'ca'>) {
  const [hostname, port] = gw.host.split(':') as [string, string];
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: gw.ca });
  const send = (method: string, target: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
      const req = https.request({ hostname, port: Number(port), method, path: target, agent, headers }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      });
      req.on('error', reject);
      req.end();
    });
  /** A chunked PATCH of a started upload, half sent: it stays in flight until finish(). */
  const heldUpload = async (token: string) => {
    const started = await send('POST', `/v2/${repository}/blobs/uploads/`, { Authorization: `Bearer ${token}` });
    assert.equal(started.status, 202);
    const location = new URL(String(started.headers.location), `https://${gw.host}`);
    let req: http.ClientRequest;
    const answered = new Promise<number>((resolve, reject) => {
      req = https.request({ hostname, port: Number(port), method: 'PATCH', path: `${location.pathname}${location.search}`, agent, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.write(randomBytes(1024));
    });
    return { answered, finish: () => (req.end(randomBytes(1024)), answered) };
  };
  return { send, heldUpload, close: () => agent.destroy() };
}

describe('gateway serve with two workers', () => {
  let dir: string;
  let work: string;
  let served: ServedGateway;
  let gw: Pick<TestGateway, 'host' | 'ca' | 'certDir'> & { port: number };
  let metricsPort: number;
  const workerPids = new Map<number, number>();

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cluster-'));
    work = await mkdtemp(path.join(os.tmpdir(), 'cluster-work-'));
    for (const [user, password] of Object.entries(users)) {
      const added = await runCli(['user', 'add', user, '--password-stdin', '--cost', '4'], { cwd: dir, input: password });
      assert.equal(added.code, 0, added.stderr);
    }
    served = new ServedGateway(dir, { GATEWAY_WORKERS: '2', GATEWAY_LISTEN: '127.0.0.1:0', GATEWAY_METRICS_LISTEN: '127.0.0.1:0', GATEWAY_SHUTDOWN_GRACE: '20' });
    const listening = await served.waitFor((entry) => entry.msg === 'gateway listening');
    assert.equal(listening.workers, 2);
    metricsPort = Number(/:(\d+)\/metrics$/.exec((await served.waitFor((entry) => entry.msg === 'metrics listening')).url)![1]);
    for (const entry of served.lines.filter((line) => line.msg === 'worker started')) workerPids.set(entry.worker, entry.pid);
    assert.equal(workerPids.size, 2, 'the primary names both workers and their pids');
    const port = Number(new URL(listening.url).port);
    const certDir = path.join(work, 'certs');
    await mkdir(certDir);
    const ca = await readFile(path.join(dir, 'certs', 'ca.crt'));
    await writeFile(path.join(certDir, 'ca.crt'), ca);
    gw = { host: `localhost:${port}`, ca, certDir, port };
  });
  after(async () => {
    await served?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('skopeo pushes and pulls byte for byte; both workers answer, and one scrape counts what both did', { timeout: 120_000 }, async () => {
    const image = await buildOciImage({ dir: path.join(work, 'image'), tag: '1.0', layers: [{ sizeBytes: 2 * 1024 * 1024 }, { sizeBytes: 64 * 1024 }] });
    const context = { certDir: gw.certDir, authFile: path.join(work, 'auth.json') };
    await skopeoLogin({ ...context, host: gw.host, user: 'alice', password: users.alice });
    await skopeoCopy({ ...context, from: image.reference, to: `docker://${gw.host}/${repository}:1.0` });
    const into = path.join(work, 'pulled');
    await skopeoCopy({ ...context, from: `docker://${gw.host}/${repository}:1.0`, to: `dir:${into}` });
    assert.equal(sha256(await readFile(path.join(into, 'manifest.json'))), image.manifestDigest);
    for (const digest of [image.configDigest, ...image.layerDigests]) assert.equal(sha256(await readFile(path.join(into, digest.slice(7)))), digest, `pulled ${digest}`);

    const from = served.mark();
    for (let i = 0; i < 4; i++) assert.equal((await request(gw, 'GET', '/v2/')).status, 401);
    assert.ok(await eventually(() => served.requests(from).length >= 4));
    assert.deepEqual([...workersOf(served.requests(from))].sort(), [...workerPids.keys()].sort(), 'new connections go to both workers');

    const logged = served.requests().length;
    const scrape = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const counted = scrape
      .split('\n')
      .filter((line) => line.startsWith('registry_gateway_requests_total{'))
      .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
    assert.equal(counted, logged, 'the requests of both workers, added up');
    assert.match(scrape, /^registry_gateway_upstream_up\{upstream="http:\/\/127\.0\.0\.1:\d+"\} 1$/m, 'a gauge both workers report is not added up');
  });

  test('the sixth wrong password for a user is held back as one gateway holds it, though the guesses go to both workers', { timeout: 60_000 }, async () => {
    const outcomes: { status: number; throttled: boolean; worker: number }[] = [];
    for (let i = 0; i < 6; i++) {
      const before = served.mark();
      const res = await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic('carol', `wrong guess ${i}`) } });
      const line = await served.waitFor((entry) => entry.msg === 'request' && entry.path === '/token' && entry.user === 'carol', before);
      outcomes.push({ status: res.status, throttled: line.throttled === true, worker: line.worker });
    }
    assert.deepEqual(outcomes.map((outcome) => outcome.status), [401, 401, 401, 401, 401, 401]);
    assert.deepEqual(outcomes.map((outcome) => outcome.throttled), [false, false, false, false, false, true]);
    assert.equal(new Set(outcomes.map((outcome) => outcome.worker)).size, 2, 'both workers took guesses');
    const right = await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic('carol', users.carol) } });
    assert.equal(right.status, 200, 'the right password still gets in');
  });

  test('SIGHUP reloads every worker: a new user and a new certificate on every connection', { timeout: 60_000 }, async () => {
    const added = await runCli(['user', 'add', 'dave', '--password-stdin', '--cost', '4'], { cwd: dir, input: 'dave-password' });
    assert.equal(added.code, 0, added.stderr);
    const replaced = await runCli(['certs', '--force', '--host', 'localhost', '--host', '127.0.0.1'], { cwd: dir });
    assert.equal(replaced.code, 0, replaced.stderr);
    const fresh = new X509Certificate(await readFile(path.join(dir, 'certs', 'server.crt'))).fingerprint256;
    const from = served.mark();
    served.child.kill('SIGHUP');
    await served.waitFor((entry) => entry.msg === 'reloaded in every worker', from);
    const seen = served.mark();
    for (let i = 0; i < 4; i++) assert.equal(await servedCertificate(gw.port, gw.ca), fresh, `connection ${i} gets the new certificate`);
    for (let i = 0; i < 4; i++) {
      const res = await request(gw, 'GET', '/token?service=registry-gateway', { headers: { Authorization: basic('dave', 'dave-password') } });
      assert.equal(res.status, 200, `connection ${i}: the new user gets in`);
    }
    assert.equal(workersOf(served.requests(seen)).size, 2, 'both workers were asked');
  });

  test('a worker killed mid-transfer loses its own connection only; the gateway serves on and another worker takes its place', { timeout: 120_000 }, async () => {
    // Connections until two are on different workers (new connections take turns, but not strictly).
    const opened: { conn: ReturnType<typeof connection>; worker: number }[] = [];
    for (let i = 0; i < 8 && new Set(opened.map((each) => each.worker)).size < 2; i++) {
      const conn = connection(gw);
      const from = served.mark();
      assert.equal((await conn.send('GET', '/v2/')).status, 401);
      opened.push({ conn, worker: (await served.waitFor((entry) => entry.msg === 'request' && entry.path === '/v2/', from)).worker as number });
    }
    const first = opened[0]!.conn;
    const firstWorker = opened[0]!.worker;
    const second = opened.find((each) => each.worker !== firstWorker)?.conn;
    try {
      assert.ok(second, 'connections reach both workers');

      const token = await fetchToken({ ...gw, url: `https://${gw.host}` }as unknown as TestGateway, 'alice', users.alice, [`repository:${repository}:push,pull`]);
      const doomed = await first.heldUpload(token);
      const spared = await second.heldUpload(token);
      const linesBefore = served.mark();
      const pid = workerPids.get(firstWorker)!;
      process.kill(pid, 'SIGKILL');
      await assert.rejects(doomed.answered, 'the upload on the killed worker is cut off');
      assert.equal(await spared.finish(), 202, 'the upload on the other worker goes through');
      const exited = await served.waitFor((entry) => entry.msg?.startsWith('worker exited') && entry.worker === firstWorker, linesBefore);
      assert.equal(exited.signal, 'SIGKILL');

      for (let i = 0; i < 3; i++) assert.equal((await request(gw, 'GET', '/v2/', { headers: { Authorization: `Bearer ${token}` } })).status, 200, 'still serving');
      const started = await served.waitFor((entry) => entry.msg === 'worker started', linesBefore);
      assert.notEqual(started.pid, pid);
      // A scrape while the new worker is still starting answers with what the others count, without waiting on it.
      const during = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      assert.equal(during.status, 200);
      assert.match(await during.text(), /^registry_gateway_requests_total\{/m);
      await served.waitFor((entry) => entry.msg === 'worker listening' && entry.worker === started.worker, linesBefore);
      workerPids.delete(firstWorker);
      workerPids.set(started.worker, started.pid);
      const seen = served.mark();
      for (let i = 0; i < 4; i++) assert.equal((await request(gw, 'GET', '/v2/', { headers: { Authorization: `Bearer ${token}` } })).status, 200);
      assert.ok(workersOf(served.requests(seen)).has(started.worker), 'the new worker answers');
    } finally {
      for (const { conn } of opened) conn.close();
    }
  });

  test('a worker that cannot start is tried again later and later, and serves once it can', { timeout: 120_000 }, async () => {
    const htpasswd = path.join(dir, 'htpasswd', 'htpasswd');
    await rename(htpasswd, `${htpasswd}.away`);
    const from = served.mark();
    try {
      const [workerId, pid] = [...workerPids][0]!;
      process.kill(pid, 'SIGKILL');
      const killed = await served.waitFor((entry) => entry.msg?.startsWith('worker exited') && entry.worker === workerId, from);
      const failed = await served.waitFor((entry) => entry.msg === 'worker could not start', from);
      assert.match(failed.err, /GATEWAY_HTPASSWD \(htpasswd\)/, 'what the worker would have printed');
      const again = await served.waitFor((entry) => entry.msg?.startsWith('worker exited') && entry.worker === failed.worker, from);
      assert.equal(again.code, 2);
      assert.equal(again.restartInMs, 2 * killed.restartInMs, 'each failure in a row waits twice as long');
      workerPids.delete(workerId);
    } finally {
      await rename(`${htpasswd}.away`, htpasswd);
    }
    const back = await served.waitFor((entry) => entry.msg === 'worker listening', from);
    workerPids.set(back.worker, served.lines.find((entry) => entry.msg === 'worker started' && entry.worker === back.worker)!.pid);
    const seen = served.mark();
    for (let i = 0; i < 4; i++) assert.equal((await request(gw, 'GET', '/v2/')).status, 401);
    assert.ok(await eventually(() => served.requests(seen).length >= 4));
    assert.equal(workersOf(served.requests(seen)).size, 2, 'two workers serve again');
  });

  test('SIGTERM lets a transfer in flight finish, stops every worker and the registry, and exits 0', { timeout: 120_000 }, async () => {
    const token = await fetchToken({ ...gw, url: `https://${gw.host}` }as unknown as TestGateway, 'alice', users.alice, [`repository:${repository}:push,pull`]);
    const held = connection(gw);
    try {
      const upload = await held.heldUpload(token);
      const processes = await descendants(served.child.pid!);
      assert.ok(processes.length >= 3, 'two workers and the registry');
      const from = served.mark();
      served.child.kill('SIGTERM');
      await served.waitFor((entry) => entry.msg === 'shutting down' && entry.worker !== undefined, from);
      assert.equal(await upload.finish(), 202, 'the upload in flight finished during the grace period');
      held.close();
      const { code } = await served.exited;
      assert.equal(code, 0);
      assert.ok(served.lines.slice(from).some((entry) => entry.msg === 'gateway stopped' && entry.worker === undefined));
      assert.ok(await eventually(async () => (await Promise.all(processes.map(isAlive))).every((alive) => !alive)), 'no worker or registry left behind');
      assert.equal(existsSync(path.join(dir, 'data', 'gateway.lock')), false, 'the data folder is let go');
    } finally {
      held.close();
    }
  });
});

describe('gateway serve with two workers on a port in use', () => {
  test('fails as one process does: the error once, exit 1, nothing left running', { timeout: 60_000 }, async (t) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cluster-port-'));
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    t.after(async () => {
      taken.close();
      await rm(dir, { recursive: true, force: true });
    });
    const port = (taken.address() as net.AddressInfo).port;
    const run = await runCli(['serve'], { cwd: dir, env: { GATEWAY_WORKERS: '2', GATEWAY_LISTEN: `127.0.0.1:${port}`, GATEWAY_METRICS_LISTEN: '' } });
    assert.equal(run.code, 1);
    assert.match(run.stderr, new RegExp(`\\ngateway: [^\\n]*EADDRINUSE[^\\n]*${port}[^\\n]*\\n$`));
    assert.equal(run.stderr.match(/EADDRINUSE/g)?.length, 2, 'said once (the message names the code twice)');
    assert.match(run.stdout, /"msg":"worker exited"/);
    assert.equal(existsSync(path.join(dir, 'data', 'gateway.lock')), false, 'the data folder is let go');
  });
});
