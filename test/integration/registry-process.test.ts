// Tests the embedded registry supervisor against the real registry binary: start, stop, restart, failures.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { pino, type Logger } from 'pino';
import { parse } from 'yaml';
import { ConfigError } from '../../src/errors.js';
import {
  RegistryProcess,
  findRegistryBinary,
  parseRegistryLine,
  registryConfig,
  registryInstallHint,
} from '../../src/registry/registry-process.js';
import { freePort } from '../helpers/ports.js';
import { skopeoLogin } from '../helpers/skopeo.js';

const registryBinary = findRegistryBinary(process.env.GATEWAY_REGISTRY_BIN, process.env.PATH);

function requireRegistryBinary(): string {
  if (!registryBinary) assert.fail(registryInstallHint);
  return registryBinary;
}

interface CapturedLog {
  logger: Logger;
  entries: { level: number; msg: string; component?: string }[];
}

function captureLogger(): CapturedLog {
  const entries: CapturedLog['entries'] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void entries.push(JSON.parse(line)) });
  return { logger, entries };
}

const silentLogger = pino({ level: 'silent' });

/** False once the process is gone or a zombie (an orphan may wait for a reaper that never comes). */
async function isAlive(pid: number): Promise<boolean> {
  try {
    const status = await readFile(`/proc/${pid}/stat`, 'utf8');
    return status.slice(status.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function waitUntilDead(pid: number): Promise<boolean> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    if (!(await isAlive(pid))) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

async function writeScript(path: string, body: string): Promise<string> {
  await writeFile(path, body);
  await chmod(path, 0o755);
  return path;
}

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'registry-process-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  return mkdtemp(join(scratch, `${name}-`));
}

describe('registryConfig', () => {
  test('listens on loopback only, signs uploads with the secret and stores under the root directory', () => {
    const config = registryConfig({ port: 5123, httpSecret: 'shh-secret', rootDirectory: '/data/registry' });
    assert.equal(config.version, '0.1');
    assert.deepEqual(config.http, { addr: '127.0.0.1:5123', secret: 'shh-secret' });
    assert.deepEqual((config.storage as Record<string, unknown>).filesystem, { rootdirectory: '/data/registry' });
    assert.deepEqual((config.storage as Record<string, unknown>).delete, { enabled: true });
    assert.deepEqual(config.log, { level: 'info', formatter: 'text', accesslog: { disabled: true } });
    assert.deepEqual(config.health, { storagedriver: { enabled: true, interval: '10s', threshold: 3 } });
  });

  test('a storage override replaces the filesystem driver but keeps delete and upload purging', () => {
    const swift = { swift: { authurl: 'http://127.0.0.1:8080/auth/v1.0', container: 'c' }, redirect: { disable: true } };
    const storage = registryConfig({ port: 1, httpSecret: 's', rootDirectory: '/unused', storage: swift })
      .storage as Record<string, unknown>;
    assert.equal(storage.filesystem, undefined);
    assert.deepEqual(storage.swift, swift.swift);
    assert.deepEqual(storage.redirect, { disable: true });
    assert.deepEqual(storage.delete, { enabled: true });
    assert.ok(storage.maintenance, 'upload purging stays configured');
  });

  test('extra config is merged deeply, so adding an http option keeps the address and secret', () => {
    const auth = { htpasswd: { realm: 'test', path: '/tmp/htpasswd' } };
    const config = registryConfig({
      port: 7,
      httpSecret: 'kept',
      rootDirectory: '/r',
      extraConfig: { auth, http: { relativeurls: true } },
    });
    assert.deepEqual(config.auth, auth);
    assert.deepEqual(config.http, { addr: '127.0.0.1:7', secret: 'kept', relativeurls: true });
  });
});

describe('findRegistryBinary', () => {
  test('prefers an executable explicit path', async () => {
    const dir = await freshDir('bin-explicit');
    const explicit = await writeScript(join(dir, 'my-registry'), '#!/bin/sh\n');
    assert.equal(findRegistryBinary(explicit, '/usr/bin'), explicit);
  });

  test('an explicit choice is final: a non-executable path finds nothing rather than another binary', async () => {
    const dir = await freshDir('bin-path');
    const notExecutable = join(dir, 'plain-file');
    await writeFile(notExecutable, '');
    const first = await freshDir('bin-first');
    const second = await freshDir('bin-second');
    const registry = await writeScript(join(first, 'registry'), '#!/bin/sh\n');
    const dockerRegistry = await writeScript(join(second, 'docker-registry'), '#!/bin/sh\n');
    const pathEnv = `${first}:${second}`;
    assert.equal(findRegistryBinary(notExecutable, pathEnv), undefined);
    assert.equal(findRegistryBinary('registry', pathEnv), registry, 'a bare explicit name is looked up on PATH');
    assert.equal(findRegistryBinary(undefined, pathEnv), dockerRegistry, 'docker-registry is preferred');
    assert.equal(findRegistryBinary(undefined, first), registry);
  });

  test('finds nothing when no candidate exists, ignoring relative PATH entries', async () => {
    const empty = await freshDir('bin-none');
    assert.equal(findRegistryBinary(undefined, `${empty}::.:relative`), undefined);
    assert.equal(findRegistryBinary(undefined, undefined), undefined);
    assert.equal(findRegistryBinary(join(empty, 'missing'), empty), undefined);
  });

  test('the install hint names the Debian package and the upstream alternative', () => {
    assert.match(registryInstallHint, /apt-get install docker-registry/);
    assert.match(registryInstallHint, /GATEWAY_UPSTREAM/);
  });
});

describe('parseRegistryLine', () => {
  test('reads level and message from logrus text lines', () => {
    const line =
      'time="2026-01-01T00:00:00Z" level=info msg="listening on 127.0.0.1:5000" go.version=go1.19.8 instance.id=abc version=2.8.2';
    assert.deepEqual(parseRegistryLine(line), { level: 'info', message: 'listening on 127.0.0.1:5000' });
    assert.equal(parseRegistryLine('level=warning msg=slow').level, 'warn');
    assert.equal(parseRegistryLine('level=fatal msg="bad config"').level, 'error');
  });

  test('request lines drop to debug unless the registry answered with a server error', () => {
    const notFound = 'level=error msg="response completed with error" err.code="manifest unknown" http.response.status=404';
    const broken = 'level=error msg="response completed with error" err.code=unknown http.response.status=500';
    assert.equal(parseRegistryLine(notFound).level, 'debug');
    assert.equal(parseRegistryLine(broken).level, 'warn');
    assert.match(parseRegistryLine(broken).fields ?? '', /http\.response\.status=500/);
  });

  test('unstructured output passes through, panics as errors', () => {
    assert.deepEqual(parseRegistryLine('panic: runtime error'), { level: 'error', message: 'panic: runtime error' });
    assert.deepEqual(parseRegistryLine('some text'), { level: 'info', message: 'some text' });
  });
});

describe('RegistryProcess with the real registry', () => {
  test('starts, answers /v2/ with 200, writes its config and secret, and stops for good', async (t) => {
    const dataDir = await freshDir('start-stop');
    const { logger, entries } = captureLogger();
    const registry = new RegistryProcess({
      binary: requireRegistryBinary(),
      dataDir,
      logger: logger.child({ component: 'registry' }),
    });
    t.after(() => registry.stop());
    await registry.start();

    assert.match(registry.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const response = await fetch(`${registry.url}/v2/`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('docker-distribution-api-version'), 'registry/2.0');

    const secret = (await readFile(join(dataDir, 'http-secret'), 'utf8')).trim();
    assert.match(secret, /^[0-9a-f]{64}$/);
    assert.equal((await stat(join(dataDir, 'http-secret'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dataDir, 'registry.yml'))).mode & 0o777, 0o600);
    const written = parse(await readFile(join(dataDir, 'registry.yml'), 'utf8')) as Record<string, unknown>;
    const port = Number(new URL(registry.url).port);
    assert.deepEqual(written, registryConfig({ port, httpSecret: secret, rootDirectory: join(dataDir, 'registry') }));

    assert.ok(
      entries.some((entry) => entry.component === 'registry' && entry.level === 30 && /listening on/.test(entry.msg)),
      'the registry output reaches the logger',
    );

    const pid = registry.pid;
    assert.ok(pid);
    await registry.stop();
    await registry.stop();
    assert.equal(await isAlive(pid), false);
    await assert.rejects(fetch(`${registry.url}/v2/`));
  });

  test('keeps the http secret across runs and honours an explicit port and secret', async (t) => {
    const dataDir = await freshDir('secret');
    const first = new RegistryProcess({ binary: requireRegistryBinary(), dataDir, logger: silentLogger });
    t.after(() => first.stop());
    await first.start();
    await first.stop();
    const secret = await readFile(join(dataDir, 'http-secret'), 'utf8');

    const port = await freePort();
    const second = new RegistryProcess({ binary: requireRegistryBinary(), dataDir, logger: silentLogger, port });
    t.after(() => second.stop());
    await second.start();
    assert.equal(second.url, `http://127.0.0.1:${port}`);
    assert.equal(await readFile(join(dataDir, 'http-secret'), 'utf8'), secret);
    const config = parse(await readFile(join(dataDir, 'registry.yml'), 'utf8')) as { http: { secret: string } };
    assert.equal(config.http.secret, secret.trim());

    const explicitDir = await freshDir('explicit-secret');
    const third = new RegistryProcess({
      binary: requireRegistryBinary(),
      dataDir: explicitDir,
      logger: silentLogger,
      httpSecret: 'given-secret',
    });
    t.after(() => third.stop());
    await third.start();
    const thirdConfig = parse(await readFile(join(explicitDir, 'registry.yml'), 'utf8')) as { http: { secret: string } };
    assert.equal(thirdConfig.http.secret, 'given-secret');
    await assert.rejects(stat(join(explicitDir, 'http-secret')), { code: 'ENOENT' });
  });

  test('a registry with auth from extraConfig is ready on its 401 and checks logins', async (t) => {
    const dataDir = await freshDir('auth');
    const htpasswdFile = join(dataDir, 'htpasswd');
    await writeFile(htpasswdFile, `carol:${bcrypt.hashSync('carol-password', 5)}\n`);
    const registry = new RegistryProcess({
      binary: requireRegistryBinary(),
      dataDir,
      logger: silentLogger,
      extraConfig: { auth: { htpasswd: { realm: 'test', path: htpasswdFile } } },
    });
    t.after(() => registry.stop());
    await registry.start();
    assert.equal((await fetch(`${registry.url}/v2/`)).status, 401);

    const host = new URL(registry.url).host;
    const certDir = await freshDir('auth-certs');
    const authFile = join(dataDir, 'auth.json');
    await skopeoLogin({ host, user: 'carol', password: 'carol-password', certDir, authFile, plainHttp: true });
    const saved = JSON.parse(await readFile(authFile, 'utf8')) as { auths: Record<string, { auth: string }> };
    assert.equal(Buffer.from(saved.auths[host]?.auth ?? '', 'base64').toString(), 'carol:carol-password');

    const wrongAuthFile = join(dataDir, 'wrong-auth.json');
    await assert.rejects(
      skopeoLogin({ host, user: 'carol', password: 'wrong', certDir, authFile: wrongAuthFile, plainHttp: true }),
      /skopeo login failed.*invalid username\/password/,
    );
    await assert.rejects(stat(wrongAuthFile), { code: 'ENOENT' });
  });

  test('a registry killed with SIGKILL comes back exactly as first started, whatever happened to its config file', { timeout: 30_000 }, async (t) => {
    const dataDir = await freshDir('restart');
    const { logger, entries } = captureLogger();
    const registry = new RegistryProcess({ binary: requireRegistryBinary(), dataDir, logger, restartDelayMs: 20 });
    t.after(() => registry.stop());
    await registry.start();
    const url = registry.url;
    const firstPid = registry.pid;
    assert.ok(firstPid);
    const configFile = join(dataDir, 'registry.yml');
    const firstConfig = await readFile(configFile, 'utf8');

    // Another process rewrites the file with another port (as a second gateway once did).
    const elsewhere = await freePort();
    await writeFile(configFile, firstConfig.replace(/addr: 127\.0\.0\.1:\d+/, `addr: 127.0.0.1:${elsewhere}`));
    process.kill(firstPid, 'SIGKILL');

    let answered = false;
    for (let attempt = 0; attempt < 200 && !answered; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      answered = registry.pid !== firstPid && (await fetch(`${url}/v2/`).then((response) => response.status === 200, () => false));
    }
    assert.ok(answered, `the registry answers again on ${url}`);
    assert.equal(registry.url, url);
    assert.notEqual(registry.pid, firstPid);
    assert.equal(await readFile(configFile, 'utf8'), firstConfig, 'the config file is as first written');
    await assert.rejects(fetch(`http://127.0.0.1:${elsewhere}/v2/`), 'nothing listens on the other port');
    assert.ok(entries.some((entry) => /was killed by SIGKILL unexpectedly; restarting/.test(entry.msg)), 'the crash is logged');
  });

  test('start() with a binary that does not exist rejects with a clear message', async () => {
    const dataDir = await freshDir('bogus');
    const binary = join(dataDir, 'no-such-registry');
    const registry = new RegistryProcess({ binary, dataDir, logger: silentLogger });
    await assert.rejects(registry.start(), (error: Error) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /cannot run .*ENOENT/);
      assert.ok(error.message.includes(binary), error.message);
      return true;
    });
    await registry.stop();
  });

  test('start() with a registry that exits at once rejects with its last output', async () => {
    const dataDir = await freshDir('crash');
    const binary = await writeScript(
      join(dataDir, 'crashing-registry'),
      '#!/bin/sh\necho \'level=fatal msg="configuration error: storage driver missing"\' >&2\nexit 3\n',
    );
    const registry = new RegistryProcess({ binary, dataDir, logger: silentLogger });
    await assert.rejects(registry.start(), (error: Error) => {
      assert.match(error.message, /exited with code 3/);
      assert.match(error.message, /configuration error: storage driver missing/);
      return true;
    });
    await registry.stop();
  });

  test('start() gives up on a registry that never answers, and kills it', async () => {
    const dataDir = await freshDir('silent');
    const binary = await writeScript(join(dataDir, 'silent-registry'), '#!/bin/sh\nexec sleep 60\n');
    const registry = new RegistryProcess({ binary, dataDir, logger: silentLogger, startTimeoutMs: 300 });
    await assert.rejects(registry.start(), /did not answer on http:\/\/127\.0\.0\.1:\d+\/v2\/ within 300 ms/);
    const pid = registry.pid;
    assert.ok(pid);
    assert.equal(await isAlive(pid), false);
    await registry.stop();
  });

  test('the child gets the given environment without AWS_CA_BUNDLE', async (t) => {
    const dataDir = await freshDir('env');
    const envFile = join(dataDir, 'child-env.txt');
    const binary = await writeScript(
      join(dataDir, 'env-recording-registry'),
      `#!/bin/sh\n/usr/bin/env > '${envFile}'\nexec '${requireRegistryBinary()}' "$@"\n`,
    );
    const registry = new RegistryProcess({
      binary,
      dataDir,
      logger: silentLogger,
      env: { PATH: '/usr/bin:/bin', AWS_CA_BUNDLE: '/odd/bundle.pem', SWIFT_MARKER: 'passed' },
    });
    t.after(() => registry.stop());
    await registry.start();
    const childEnv = await readFile(envFile, 'utf8');
    assert.match(childEnv, /^SWIFT_MARKER=passed$/m);
    assert.doesNotMatch(childEnv, /AWS_CA_BUNDLE/);
  });

  test('stop() kills a registry that ignores SIGTERM', async (t) => {
    const dataDir = await freshDir('stubborn');
    // Answers /v2/ like a registry but ignores SIGTERM.
    const binary = await writeScript(
      join(dataDir, 'stubborn-registry'),
      `#!${process.execPath}
const { readFileSync } = require('node:fs');
const port = Number(/127\\.0\\.0\\.1:(\\d+)/.exec(readFileSync(process.argv[3], 'utf8'))[1]);
process.on('SIGTERM', () => console.log('level=info msg="ignoring SIGTERM"'));
require('node:http')
  .createServer((req, res) => res.setHeader('Docker-Distribution-Api-Version', 'registry/2.0').end('{}'))
  .listen(port, '127.0.0.1');
`,
    );
    const registry = new RegistryProcess({ binary, dataDir, logger: silentLogger, stopTimeoutMs: 200 });
    t.after(() => registry.stop());
    await registry.start();
    const pid = registry.pid;
    assert.ok(pid);
    await registry.stop();
    assert.equal(await isAlive(pid), false);
  });

  test('a parent that exits without stop() takes its registry down with it', { timeout: 30_000 }, async (t) => {
    const dataDir = await freshDir('orphan');
    const projectRoot = fileURLToPath(new URL('../../../', import.meta.url));
    const moduleUrl = new URL('../../src/registry/registry-process.js', import.meta.url).href;
    const script = `
      import { pino } from 'pino';
      import { RegistryProcess } from ${JSON.stringify(moduleUrl)};
      const registry = new RegistryProcess({
        binary: ${JSON.stringify(requireRegistryBinary())},
        dataDir: ${JSON.stringify(dataDir)},
        logger: pino({ level: 'silent' }),
      });
      await registry.start();
      console.log(JSON.stringify({ pid: registry.pid }));
      process.exit(0);
    `;
    const parent = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: projectRoot,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    parent.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const [exitCode] = await once(parent, 'exit');
    assert.equal(exitCode, 0);
    const { pid } = JSON.parse(stdout) as { pid: number };
    assert.ok(pid > 0);
    t.after(async () => {
      if (await isAlive(pid)) process.kill(pid, 'SIGKILL');
    });
    assert.equal(await waitUntilDead(pid), true, `registry ${pid} outlived its parent`);
  });
});
