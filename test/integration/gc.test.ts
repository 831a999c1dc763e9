// `gateway gc` on real registries: an image deleted through the gateway loses its blobs from storage while the other still pulls byte for byte, on the filesystem and on Swift.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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
import { envFileFromExample, renderCompose, serviceEnvironment, serviceMounts, startComposeRegistry, startSwift, type SwiftServer } from '../helpers/swift.js';

const cli = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
const user = 'alice';
const password = 'alice-password';
const repository = 'team/app';
const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

function blobPath(digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return `docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
}

interface Images {
  kept: TestImage;
  dropped: TestImage;
}

async function buildImages(work: string): Promise<Images> {
  return {
    kept: await buildOciImage({ dir: path.join(work, 'kept'), tag: '1.0', layers: [{ sizeBytes: 300 * 1024 }, { sizeBytes: 64 * 1024 }] }),
    dropped: await buildOciImage({ dir: path.join(work, 'dropped'), tag: '2.0', layers: [{ sizeBytes: 200 * 1024 }] }),
  };
}

/** Pushes both images, then deletes `dropped` through the gateway (by digest, as `docker` clients delete). */
async function pushBothDeleteOne(gw: TestGateway, images: Images, authFile: string): Promise<void> {
  const context = { certDir: gw.certDir, authFile };
  await skopeoLogin({ ...context, host: gw.host, user, password });
  await skopeoCopy({ ...context, from: images.kept.reference, to: `docker://${gw.host}/${repository}:1.0` });
  await skopeoCopy({ ...context, from: images.dropped.reference, to: `docker://${gw.host}/${repository}:2.0` });
  const token = await fetchToken(gw, user, password, [`repository:${repository}:delete`]);
  const deleted = await request(gw, 'DELETE', `/v2/${repository}/manifests/${images.dropped.manifestDigest}`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(deleted.status, 202, deleted.body);
}

/** Pulls `kept` through the gateway and checks every blob's digest. */
async function assertKeptPulls(gw: TestGateway, image: TestImage, authFile: string, into: string): Promise<void> {
  await skopeoCopy({ certDir: gw.certDir, authFile, from: `docker://${gw.host}/${repository}:1.0`, to: `dir:${into}` });
  assert.equal(sha256(await readFile(path.join(into, 'manifest.json'))), image.manifestDigest);
  for (const digest of [image.configDigest, ...image.layerDigests]) assert.equal(sha256(await readFile(path.join(into, digest.slice(7)))), digest, `pulled ${digest}`);
}

/** Every blob of an image: its manifest, config and layers. */
const blobsOf = (image: TestImage) => [image.manifestDigest, image.configDigest, ...image.layerDigests];

/** A PATCH of an upload, chunked, its first half sent: the write stays in flight until finish() sends the rest. */
async function heldUpload(gw: TestGateway, token: string): Promise<{ finish(): Promise<number> }> {
  const started = await request(gw, 'POST', `/v2/${repository}/blobs/uploads/`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(started.status, 202, started.body);
  const location = new URL(String(started.headers.location), gw.url);
  const [hostname, port] = gw.host.split(':') as [string, string];
  let req: http.ClientRequest | undefined;
  const answered = new Promise<number>((resolve, reject) => {
    req = https.request(
      { hostname, port: Number(port), method: 'PATCH', path: `${location.pathname}${location.search}`, ca: gw.ca, agent: false, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.write(randomBytes(1024));
  });
  assert.ok(await eventually(() => gw.gateway.maintenanceStatus().writesInFlight === 1), 'the PATCH is in flight');
  return {
    finish() {
      req!.end(randomBytes(1024));
      return answered;
    },
  };
}

describe('gateway gc: filesystem storage, registry named by GATEWAY_REGISTRY_CONFIG', () => {
  let gw: TestGateway;
  let work: string;
  let images: Images;
  let env: Record<string, string>;
  let storage: string;

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'gc-fs-'));
    gw = await startTestGateway({ users: { [user]: password } });
    images = await buildImages(work);
    await pushBothDeleteOne(gw, images, path.join(work, 'auth.json'));
    const dataDir = path.join(gw.dir, 'registry-data');
    storage = path.join(dataDir, 'registry');
    env = { GATEWAY_UPSTREAM: gw.registry!.url, GATEWAY_REGISTRY_CONFIG: path.join(dataDir, 'registry.yml'), GATEWAY_REGISTRY_BIN: '/usr/bin/docker-registry' };
  });
  after(async () => {
    await gw?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('without the registry config path the command says which setting is missing', async () => {
    const run = await runCli(['gc'], { cwd: gw.dir, env: { GATEWAY_UPSTREAM: gw.registry!.url } });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /GATEWAY_UPSTREAM \(upstream\) names a registry the gateway does not run, so `gateway gc` needs that registry's config file: set GATEWAY_REGISTRY_CONFIG \(registry_config\)/);
  });

  test('a dry run reports what would go and deletes nothing', async () => {
    const run = await runCli(['gc', '--dry-run'], { cwd: gw.dir, env });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^dry run: would remove 3 blobs \(.*bytes\)/);
    for (const digest of blobsOf(images.dropped)) assert.ok(existsSync(path.join(storage, blobPath(digest))), `${digest} still stored`);
  });

  test('two at once: the second refuses; the first waits for the write in flight, then removes the deleted image\'s blobs only', async () => {
    const token = await fetchToken(gw, user, password, [`repository:${repository}:pull,push`]);
    const upload = await heldUpload(gw, token);
    const firstGc = spawn(process.execPath, [cli, 'gc'], { cwd: gw.dir, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => firstGc.once('exit', resolve));
    let stdout = '';
    firstGc.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    await waitForOutput(firstGc, 'stderr', /waiting: .* has 1 write in flight/);

    const second = await runCli(['gc'], { cwd: gw.dir, env });
    assert.equal(second.code, 1);
    assert.match(second.stderr, /another `gateway gc` or `gateway retention` is running \(it holds .*maintenance\.json\.gc\.lock\); gateway gc did nothing/);

    assert.equal(await upload.finish(), 202, 'the write in flight finished');
    assert.equal(await exited, 0);
    assert.match(stdout, /^removed (\d+) blobs, .*bytes\)/);
    for (const digest of blobsOf(images.dropped)) assert.ok(!existsSync(path.join(storage, blobPath(digest))), `${digest} removed`);
    for (const digest of blobsOf(images.kept)) assert.ok(existsSync(path.join(storage, blobPath(digest))), `${digest} kept`);
    assert.ok(await eventually(() => !gw.gateway.maintenanceStatus().on), 'maintenance is off again');
    await assertKeptPulls(gw, images.kept, path.join(work, 'auth.json'), path.join(work, 'pulled-fs'));
  });

  test('a collector that fails: the command fails with its words, and maintenance is off again', async () => {
    const failing = path.join(work, 'failing-registry');
    await writeFile(failing, '#!/bin/sh\necho "failed to garbage collect: failed to mark: storage exploded" >&2\nexit 1\n');
    await chmod(failing, 0o755);
    const run = await runCli(['gc'], { cwd: gw.dir, env: { ...env, GATEWAY_REGISTRY_BIN: failing } });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /failed with exit code 1; its last output:\n {2}failed to garbage collect: failed to mark: storage exploded/);
    assert.match(run.stderr, /read-only maintenance off: writes are accepted again/);
    const state = JSON.parse(await readFile(path.join(gw.dir, 'maintenance', 'maintenance.json'), 'utf8')) as { on: boolean };
    assert.equal(state.on, false);
  });
});

describe('gateway gc: the embedded registry of `gateway serve`', () => {
  let dir: string;
  let work: string;
  let child: ReturnType<typeof spawn>;
  let gw: TestGateway;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gc-serve-'));
    work = await mkdtemp(path.join(os.tmpdir(), 'gc-serve-work-'));
    const added = await runCli(['user', 'add', user, '--password-stdin', '--cost', '4'], { cwd: dir, input: password });
    assert.equal(added.code, 0, added.stderr);
    child = spawn(process.execPath, [cli, 'serve'], { cwd: dir, env: { PATH: process.env.PATH ?? '', GATEWAY_LISTEN: '127.0.0.1:0', GATEWAY_SHUTDOWN_GRACE: '1', GATEWAY_WORKERS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const [listening] = await Promise.all([waitForOutput(child, 'stdout', /"url":"https:\/\/127\.0\.0\.1:(\d+)"[^\n]*"msg":"gateway listening"/)]);
    const ca = await readFile(path.join(dir, 'certs', 'ca.crt'));
    const certDir = path.join(work, 'certs');
    await (await import('node:fs/promises')).mkdir(certDir);
    await writeFile(path.join(certDir, 'ca.crt'), ca);
    const host = `localhost:${listening[1]}`;
    // Only what the helpers read: the gateway itself runs in the child process.
    gw = { dir, host, url: `https://${host}`, certDir, ca } as TestGateway;
  });
  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('gc finds the embedded registry by itself, holds writes through maintenance, removes only the deleted image', async () => {
    const images = await buildImages(work);
    await pushBothDeleteOne(gw, images, path.join(work, 'auth.json'));
    const run = await runCli(['gc'], { cwd: dir });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /read-only maintenance on/);
    assert.match(run.stderr, /1 gateway holds writes, none in flight; collecting/);
    assert.match(run.stderr, /read-only maintenance off/);
    const removed = /^removed (\d+) blobs, .*\((\d+) bytes\)/.exec(run.stdout);
    assert.ok(removed, run.stdout);
    assert.equal(Number(removed[1]), 3);
    const storage = path.join(dir, 'data', 'registry');
    for (const digest of blobsOf(images.dropped)) assert.ok(!existsSync(path.join(storage, blobPath(digest))), `${digest} removed`);
    for (const digest of blobsOf(images.kept)) assert.ok(existsSync(path.join(storage, blobPath(digest))), `${digest} kept`);
    await assertKeptPulls(gw, images.kept, path.join(work, 'auth.json'), path.join(work, 'pulled'));

    // Retention finds the embedded registry the same way (its address from data/registry.yml).
    await writeFile(path.join(dir, 'rules.yml'), 'retention:\n  - repositories: ["team/**"]\n    keep_newest: 0\n');
    const planned = await runCli(['retention', '--dry-run', '--verbose', '--config', 'rules.yml'], { cwd: dir });
    assert.equal(planned.code, 0, planned.stderr);
    assert.match(planned.stdout, /keep {3}team\/app:1\.0 {2}its image has no creation date/);
    assert.match(planned.stdout, /dry run: would delete 0 of 1 tags the rules govern in 1 repositories/);
  });
});

describe('gateway gc: Swift storage, configured as compose ships it', () => {
  let swift: SwiftServer;
  let work: string;

  before(async () => {
    swift = await startSwift();
    work = await mkdtemp(path.join(os.tmpdir(), 'gc-swift-'));
  });
  after(async () => {
    await swift?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('the deleted image\'s objects leave the container, the other pulls byte for byte; maintenance stays on until the registry restarts (blob cache)', async (t) => {
    const container = `registry-${randomBytes(4).toString('hex')}`;
    const envFile = path.join(work, '.env');
    await writeFile(
      envFile,
      await envFileFromExample({
        REGISTRY_HTTP_SECRET: randomBytes(16).toString('hex'),
        REGISTRY_STORAGE_SWIFT_AUTHURL: swift.authUrl,
        REGISTRY_STORAGE_SWIFT_USERNAME: swift.user,
        REGISTRY_STORAGE_SWIFT_PASSWORD: swift.key,
        REGISTRY_STORAGE_SWIFT_CONTAINER: container,
        REGISTRY_STORAGE_SWIFT_AUTHVERSION: '1',
        REGISTRY_STORAGE_SWIFT_PREFIX: '/registry',
        REGISTRY_STORAGE_REDIRECT_DISABLE: 'true',
      }),
    );
    const model = await renderCompose({ files: ['docker-compose.yml', 'deploy/compose.swift.yml'], envFile, home: work });
    const service = model.services.registry!;
    const configFile = serviceMounts(service).find((mount) => mount.target === '/etc/docker/registry/config.yml')!.source;
    const registryEnv = serviceEnvironment(service);
    const registry = await startComposeRegistry({ configFile, environment: registryEnv });
    t.after(() => registry.stop());
    const gw = await startTestGateway({ upstream: registry.url, users: { [user]: password } });
    t.after(() => gw.close());

    const images = await buildImages(work);
    await pushBothDeleteOne(gw, images, path.join(work, 'auth.json'));
    const objects = async () => new Set((await swift.listObjects(container, 'registry/files/')).map((object) => object.name.slice('registry/files/'.length)));
    for (const digest of blobsOf(images.dropped)) assert.ok((await objects()).has(blobPath(digest)), `${digest} stored before`);
    const storedBytes = async () => (await swift.listObjects(container)).reduce((sum, object) => sum + object.bytes, 0);
    const bytesBefore = await storedBytes();

    // The collector gets the registry's own environment (REGISTRY_STORAGE=swift and its credentials), as an operator sets it.
    const env = { ...registryEnv, GATEWAY_UPSTREAM: registry.url, GATEWAY_REGISTRY_CONFIG: configFile, GATEWAY_REGISTRY_BIN: '/usr/bin/docker-registry' };
    const run = await runCli(['gc'], { cwd: gw.dir, env });
    assert.equal(run.code, 3, run.stderr);
    assert.match(run.stdout, /^removed 3 blobs \(the swift driver's sizes are not measured\)/);
    assert.match(run.stderr, /read-only maintenance stays ON: the registry keeps a blob descriptor cache \(storage\.cache\.blobdescriptor: inmemory\)/);
    assert.equal(gw.gateway.maintenanceStatus().on, true);

    const after = await objects();
    for (const digest of blobsOf(images.dropped)) assert.ok(!after.has(blobPath(digest)), `${digest} removed from ${container}`);
    for (const digest of blobsOf(images.kept)) assert.ok(after.has(blobPath(digest)), `${digest} kept in ${container}`);
    const layerBytes = images.dropped.layerSizes.reduce((sum, size) => sum + size, 0);
    assert.ok(bytesBefore - (await storedBytes()) >= layerBytes, 'the layer\'s bytes (its segments too) left the container');
    await assertKeptPulls(gw, images.kept, path.join(work, 'auth.json'), path.join(work, 'pulled-swift'));
    assert.equal((await runCli(['maintenance', 'off'], { cwd: gw.dir })).code, 0);
  });
});

describe('deploy/compose.maintenance.yml', () => {
  test('mounts ./maintenance writable into the gateway, and its one-shot service switches the same folder, offline', async (t) => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'gc-compose-'));
    t.after(() => rm(work, { recursive: true, force: true }));
    const envFile = path.join(work, '.env');
    await writeFile(envFile, await envFileFromExample({ REGISTRY_HTTP_SECRET: randomBytes(16).toString('hex') }));
    const model = await renderCompose({ files: ['docker-compose.yml', 'deploy/compose.maintenance.yml'], envFile, home: work });
    const gatewayMount = serviceMounts(model.services.gateway!).find((mount) => mount.target === '/srv/gateway/maintenance');
    assert.ok(gatewayMount && !gatewayMount.readOnly, 'the gateway can write its report');
    const maintenance = model.services.maintenance!;
    assert.deepEqual(maintenance.profiles, ['setup'], 'never started by `up`');
    assert.equal(maintenance.network_mode, 'none');
    assert.equal(serviceMounts(maintenance).find((mount) => mount.target === '/srv/gateway/maintenance')?.source, gatewayMount.source);
    assert.equal(model.services.gateway!.user, maintenance.user);
  });
});

describe('gc_schedule: serve collects by itself', () => {
  test('a scheduled run holds writes through maintenance, collects the embedded registry and ends maintenance, all logged', async (t) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gc-schedule-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const served = spawn(process.execPath, [cli, 'serve'], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', GATEWAY_LISTEN: '127.0.0.1:0', GATEWAY_SHUTDOWN_GRACE: '1', GATEWAY_GC_SCHEDULE: '* * * * * *', GATEWAY_WORKERS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.after(async () => {
      if (served.exitCode !== null) return;
      const exited = new Promise((resolve) => served.once('exit', resolve));
      served.kill('SIGTERM');
      await exited;
    });
    await waitForOutput(served, 'stdout', /"schedule":"\* \* \* \* \* \*"[^\n]*"msg":"garbage collection scheduled"/);
    const run = await waitForOutput(
      served,
      'stdout',
      /"msg":"scheduled garbage collection starts"[\s\S]*?"msg":"read-only maintenance on[^"]*"[\s\S]*?"msg":"1 gateway holds writes, none in flight; collecting"[\s\S]*?"msg":"read-only maintenance off: writes are accepted again"[\s\S]*?"msg":"removed 0 blobs, 0 bytes; 0 blobs \(0 bytes\) remain in [^"]*"/,
    );
    assert.ok(run[0].includes('read-only maintenance is on: writes get 503'), 'the gateway itself switched to read-only for the run');
  });
});
