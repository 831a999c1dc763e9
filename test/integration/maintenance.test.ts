// Read-only maintenance on a real gateway and registry: pushes refused with the message while pulls go on, and a write in flight at the switch finishes.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { fetchToken, request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import { eventually, waitForOutput } from '../helpers/processes.js';
import { runCli } from '../helpers/run-cli.js';
import { skopeoCopy, skopeoLogin } from '../helpers/skopeo.js';
import type { GatewayEvent } from '../../src/ops/events.js';

const cli = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
const user = 'alice';
const password = 'alice-password';
const repository = 'team/app';

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** GET with the body as bytes. */
function getBytes(gw: TestGateway, target: string, token: string): Promise<{ status: number; body: Buffer }> {
  const [hostname, port] = gw.host.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    https
      .get({ hostname, port: Number(port), path: target, ca: gw.ca, agent: false, headers: { Authorization: `Bearer ${token}` } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

describe('read-only maintenance', () => {
  let gw: TestGateway;
  let work: string;
  let first: TestImage;
  let second: TestImage;
  const events: GatewayEvent[] = [];
  const context = () => ({ certDir: gw.certDir, authFile: path.join(work, 'auth.json') });

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'maintenance-'));
    gw = await startTestGateway({ users: { [user]: password } });
    gw.gateway.events.on((event) => events.push(event));
    first = await buildOciImage({ dir: path.join(work, 'first'), tag: '1.0', layers: [{ sizeBytes: 256 * 1024 }] });
    second = await buildOciImage({ dir: path.join(work, 'second'), tag: '2.0', layers: [{ sizeBytes: 128 * 1024 }] });
    await skopeoLogin({ ...context(), host: gw.host, user, password });
    await skopeoCopy({ ...context(), from: first.reference, to: `docker://${gw.host}/${repository}:1.0` });
  });
  after(async () => {
    await gw?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const maintenance = (...args: string[]) => runCli(['maintenance', ...args], { cwd: gw.dir });

  test('while on, a push fails saying so and a pull of the same repository works byte for byte; /readyz shows it', async () => {
    const on = await maintenance('on', '--reason', 'storage cleanup', '--wait', '30');
    assert.equal(on.code, 0, on.stderr);
    assert.match(on.stdout, /read-only maintenance is ON/);
    assert.match(on.stdout, /1 gateway holds writes, none in flight/);
    assert.equal(gw.gateway.maintenanceStatus().on, true);
    assert.ok(events.some((event) => event.type === 'maintenance' && event.on && event.by?.startsWith('gateway maintenance on')), 'the switch is an event');

    await assert.rejects(skopeoCopy({ ...context(), from: second.reference, to: `docker://${gw.host}/${repository}:2.0` }), /read-only maintenance/);

    const token = await fetchToken(gw, user, password, [`repository:${repository}:pull,push,delete`]);
    const refused = await request(gw, 'POST', `/v2/${repository}/blobs/uploads/`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers['retry-after'], '60');
    const error = refused.json().errors[0];
    assert.equal(error.code, 'UNAVAILABLE');
    assert.match(error.message, /^the registry is in read-only maintenance \(storage cleanup\) since \d{4}-.*: pulls work, pushes and deletes are refused/);
    const deleted = await request(gw, 'DELETE', `/v2/${repository}/manifests/${first.manifestDigest}`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(deleted.status, 503, 'deletes are writes too');

    const pulled = path.join(work, 'pulled');
    await skopeoCopy({ ...context(), from: `docker://${gw.host}/${repository}:1.0`, to: `dir:${pulled}` });
    assert.equal(sha256(await readFile(path.join(pulled, 'manifest.json'))), first.manifestDigest);
    for (const digest of [first.configDigest, ...first.layerDigests]) {
      assert.equal(sha256(await readFile(path.join(pulled, digest.slice('sha256:'.length)))), digest);
    }

    const ready = await request(gw, 'GET', '/readyz');
    assert.equal(ready.status, 200, 'pulls go on: the gateway stays ready');
    assert.equal(ready.json().maintenance.on, true);

    const status = await maintenance('status');
    assert.match(status.stdout, /read-only maintenance: ON since .* \(storage cleanup\)/);
    assert.match(status.stdout, new RegExp(`gateway ${os.hostname()} pid ${process.pid}: in maintenance, 0 writes in flight`));

    const off = await maintenance('off');
    assert.equal(off.code, 0, off.stderr);
    assert.ok(await eventually(() => !gw.gateway.maintenanceStatus().on), 'the gateway sees it end');
    await skopeoCopy({ ...context(), from: second.reference, to: `docker://${gw.host}/${repository}:2.0` });
    assert.ok(events.some((event) => event.type === 'maintenance' && !event.on));
  });

  test('a push started before the switch completes: the chunk in flight finishes, `maintenance on --wait` waits for it', async () => {
    const token = await fetchToken(gw, user, password, [`repository:${repository}:pull,push`]);
    const started = await request(gw, 'POST', `/v2/${repository}/blobs/uploads/`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(started.status, 202, started.body);
    const location = new URL(String(started.headers.location), gw.url);
    const blob = randomBytes(300 * 1024);

    // A chunked PATCH held open: the first half is sent, the rest only after the switch.
    const [hostname, port] = gw.host.split(':') as [string, string];
    let patchRequest: http.ClientRequest | undefined;
    const patched = new Promise<{ status: number; location: string }>((resolve, reject) => {
      const req = https.request(
        { hostname, port: Number(port), method: 'PATCH', path: `${location.pathname}${location.search}`, ca: gw.ca, agent: false, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, location: String(res.headers.location) }));
        },
      );
      req.on('error', reject);
      req.write(blob.subarray(0, blob.length / 2));
      patchRequest = req;
    });
    assert.ok(await eventually(() => gw.gateway.maintenanceStatus().writesInFlight === 1), 'the PATCH is in flight');

    const switching = spawn(process.execPath, [cli, 'maintenance', 'on', '--wait', '60'], { cwd: gw.dir, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => switching.once('exit', resolve));
    await waitForOutput(switching, 'stderr', new RegExp(`waiting: ${os.hostname()} pid ${process.pid} has 1 write in flight`));

    const refused = await request(gw, 'POST', `/v2/${repository}/blobs/uploads/`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(refused.status, 503, 'a new write is refused meanwhile');

    patchRequest!.end(blob.subarray(blob.length / 2));
    const patch = await patched;
    assert.equal(patch.status, 202, 'the write in flight at the switch finished');
    const drained = waitForOutput(switching, 'stdout', /1 gateway holds writes, none in flight/);
    assert.equal(await exited, 0);
    await drained;

    // The upload's next step is a new write: it waits for the end of maintenance, and the upload survives it.
    const next = new URL(patch.location, gw.url);
    next.searchParams.set('digest', sha256(blob));
    const target = `${next.pathname}${next.search}`;
    assert.equal((await request(gw, 'PUT', target, { headers: { Authorization: `Bearer ${token}`, 'Content-Length': '0' } })).status, 503);
    assert.equal((await maintenance('off')).code, 0);
    assert.ok(await eventually(() => !gw.gateway.maintenanceStatus().on));
    const done = await request(gw, 'PUT', target, { headers: { Authorization: `Bearer ${token}`, 'Content-Length': '0' } });
    assert.equal(done.status, 201, done.body);
    const fetched = await getBytes(gw, `/v2/${repository}/blobs/${sha256(blob)}`, token);
    assert.equal(fetched.status, 200);
    assert.ok(fetched.body.equals(blob), 'the blob is whole');
  });
});
