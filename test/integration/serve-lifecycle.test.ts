// One gateway per data folder, a supervised registry that comes back as it was, and `npm start` that stops on any usual signal.

import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { descendants, eventually, isAlive, portIsClosed, waitForOutput } from '../helpers/processes.js';

const projectRoot = fileURLToPath(new URL('../../../', import.meta.url));
const cli = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

/** The environment of a child gateway: PATH and HOME only, so nothing from the test run leaks in. */
function baseEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), ...extra };
}

function run(args: string[], options: { cwd: string; env: Record<string, string> }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { cwd: options.cwd, env: options.env, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('one gateway per data folder', () => {
  let dir: string;
  let port: number;
  let first: ChildProcess;
  let registryPid: number;
  let registryPort: number;
  const env = () => baseEnv({ GATEWAY_LISTEN: `127.0.0.1:${port}`, GATEWAY_SHUTDOWN_GRACE: '1' });

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-lock-'));
    port = await freePort();
    first = spawn(process.execPath, [cli, 'serve'], { cwd: dir, env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    const ready = waitForOutput(first, 'stdout', /"pid":(\d+)[^\n]*"msg":"registry is ready"|"msg":"registry is ready"[^\n]*"pid":(\d+)/);
    const started = waitForOutput(first, 'stdout', /"url":"http:\/\/127\.0\.0\.1:(\d+)"[^\n]*"msg":"embedded registry started"/);
    const listening = waitForOutput(first, 'stdout', /"msg":"gateway listening"/);
    const [readyMatch, startedMatch] = await Promise.all([ready, started, listening]);
    registryPid = Number(readyMatch[1] ?? readyMatch[2]);
    registryPort = Number(startedMatch[1]);
  });
  after(async () => {
    if (first.exitCode === null && first.signalCode === null) {
      const exited = new Promise((resolve) => first.once('exit', resolve));
      first.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });

  test('a second serve in the same folder fails at once, naming the folder, and leaves data/ as it was', async () => {
    const config = path.join(dir, 'data', 'registry.yml');
    const before = { text: await readFile(config, 'utf8'), mtimeMs: (await stat(config)).mtimeMs };
    const second = await run(['serve'], { cwd: dir, env: env() });
    assert.equal(second.code, 2, second.stderr);
    assert.match(second.stderr, /GATEWAY_DATA_DIR \(data_dir\): another gateway is running with its embedded registry in /);
    assert.ok(second.stderr.includes(path.join(dir, 'data')), second.stderr);
    assert.doesNotMatch(second.stderr, /EADDRINUSE/, 'refused before it tried the port');
    assert.doesNotMatch(second.stdout, /registry is ready|embedded registry started/, 'no second registry was started');
    assert.equal(await readFile(config, 'utf8'), before.text);
    assert.equal((await stat(config)).mtimeMs, before.mtimeMs);
  });

  test('config check says so too, without failing: the configuration itself is fine', async () => {
    const checked = await run(['config', 'check'], { cwd: dir, env: env() });
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stderr, /a gateway is running with .*data now/);
  });

  test('the first gateway\'s registry, killed, comes back on the same port and the gateway serves again', { timeout: 60_000 }, async () => {
    const ca = await readFile(path.join(dir, 'certs', 'ca.crt'));
    const gw = { host: `localhost:${port}`, ca };
    assert.equal((await request(gw, 'GET', '/readyz')).status, 200);
    process.kill(registryPid, 'SIGKILL');
    assert.ok(await eventually(async () => !(await isAlive(registryPid))), 'the registry died');
    const back = await eventually(async () => {
      const children = await descendants(first.pid!);
      return children.length > 0 && !children.includes(registryPid) && !(await portIsClosed(registryPort)) && (await request(gw, 'GET', '/readyz')).status === 200;
    }, 300);
    assert.ok(back, `a new registry answers on port ${registryPort} and the gateway is ready again`);
  });

  test('SIGTERM releases the folder: the next gateway starts there', { timeout: 60_000 }, async () => {
    const exited = new Promise<number | null>((resolve) => first.once('exit', (code) => resolve(code)));
    first.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.equal(existsSync(path.join(dir, 'data', 'gateway.lock')), false);
    const next = spawn(process.execPath, [cli, 'serve'], { cwd: dir, env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await waitForOutput(next, 'stdout', /"msg":"gateway listening"/);
    } finally {
      const gone = new Promise((resolve) => next.once('exit', resolve));
      next.kill('SIGTERM');
      await gone;
    }
  });
});

/**
 * `npm start` as users run it: npm runs the start script through sh, which must not stand between
 * npm (which passes SIGTERM and SIGINT on to its child) and the gateway.
 */
describe('npm start', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-npm-'));
    await writeFile(path.join(dir, 'access.yml'), 'rules:\n  - { users: [authenticated], repositories: ["**"], actions: ["*"] }\n');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function startWithNpm(name: string): Promise<{ npm: ChildProcess; port: number; registryPort: number; tree: number[]; exited: Promise<number | null> }> {
    const port = await freePort();
    const home = path.join(dir, name);
    // Everything the gateway reads or writes lives in the temp folder, not in the project.
    const env = baseEnv({
      GATEWAY_LISTEN: `127.0.0.1:${port}`,
      GATEWAY_DATA_DIR: path.join(home, 'data'),
      GATEWAY_TLS_CERT: path.join(home, 'certs', 'server.crt'),
      GATEWAY_TLS_KEY: path.join(home, 'certs', 'server.key'),
      GATEWAY_TOKEN_KEY: path.join(home, 'certs', 'token.key'),
      GATEWAY_TOKEN_CERT: path.join(home, 'certs', 'token.crt'),
      GATEWAY_HTPASSWD: path.join(home, 'htpasswd', 'htpasswd'),
      GATEWAY_CI_TOKENS: path.join(home, 'htpasswd', 'ci-tokens.json'),
      GATEWAY_ACCESS: path.join(dir, 'access.yml'),
      GATEWAY_SHUTDOWN_GRACE: '1',
    });
    // Its own process group, so that a Ctrl-C can be sent to the group as a terminal does.
    const npm = spawn('npm', ['start'], { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
    const started = waitForOutput(npm, 'stdout', /"url":"http:\/\/127\.0\.0\.1:(\d+)"[^\n]*"msg":"embedded registry started"/);
    const [startedMatch] = await Promise.all([started, waitForOutput(npm, 'stdout', /"msg":"gateway listening"/)]);
    const registryPort = Number(startedMatch[1]);
    const tree = await descendants(npm.pid!);
    return { npm, port, registryPort, tree, exited };
  }

  async function assertAllGone(started: { port: number; registryPort: number; tree: number[]; exited: Promise<number | null> }): Promise<void> {
    await started.exited;
    for (const pid of started.tree) assert.ok(await eventually(async () => !(await isAlive(pid))), `process ${pid} under npm is gone`);
    assert.equal(await portIsClosed(started.port), true, 'the gateway port is free');
    assert.equal(await portIsClosed(started.registryPort), true, 'the registry port is free');
  }

  test('SIGTERM to npm stops the gateway and its registry', { timeout: 120_000 }, async () => {
    const started = await startWithNpm('term');
    try {
      assert.ok(started.tree.length >= 2, `npm runs the gateway and the gateway the registry: ${started.tree.join(', ')}`);
      process.kill(started.npm.pid!, 'SIGTERM');
      await assertAllGone(started);
    } finally {
      for (const pid of started.tree) if (await isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
  });

  test('Ctrl-C (SIGINT to the whole process group) stops everything, gracefully', { timeout: 120_000 }, async () => {
    const started = await startWithNpm('int');
    const stopped = waitForOutput(started.npm, 'stdout', /"msg":"gateway stopped"/).then(
      () => true,
      () => false,
    );
    try {
      process.kill(-started.npm.pid!, 'SIGINT');
      await assertAllGone(started);
      assert.equal(await stopped, true, 'the gateway closed itself (not killed by a second signal)');
    } finally {
      for (const pid of started.tree) if (await isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
  });
});
