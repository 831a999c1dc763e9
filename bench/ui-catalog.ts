// Measures the web UI on a 10,000-repository catalog: server time of the first list page and a search, and chromium's load time.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import type { Page } from 'playwright-core';
import { RegistryProcess } from '../src/registry/registry-process.js';
import { signIn, startBrowser, type TestBrowser } from '../test/helpers/browser.js';
import { freePort } from '../test/helpers/ports.js';
import { repositoryName, seedRegistry } from './ui-seed.js';

const cliPath = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const targetMs = 1000;
const user = 'bench';
const password = 'bench-password';
/**
 * bench pulls everything except the ns-00 to ns-09 namespaces (a tenth), so the list is filtered for real;
 * anonymous visitors pull ns-90 to ns-99 only.
 */
const accessRules = `rules:
  - users: [${user}]
    repositories: ["**"]
    actions: [pull]
  - users: [${user}]
    repositories: ["ns-0?/**"]
    actions: [pull]
    effect: deny
  - users: [anonymous]
    repositories: ["ns-9?/**"]
    actions: [pull]
`;

function setting(name: string, fallback: number, max: number): number {
  const raw = process.env[name] ?? String(fallback);
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > max) throw new Error(`${name} must be a whole number from 1 to ${max}, got "${raw}"`);
  return value;
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const ms = (value: number): string => `${value.toFixed(1)} ms`;

function run(file: string, args: string[], cwd: string, stdin: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { cwd, timeout: 60_000 }, (error, _stdout, stderr) => (error ? reject(new Error(stderr.trim() || error.message)) : resolve()));
    child.stdin?.end(stdin);
  });
}

/** One HTTPS GET on a kept-alive connection; resolves with the status, the body length and the time to the last byte. */
function timedGet(agent: https.Agent, url: string, ca: Buffer, cookie: string): Promise<{ status: number; bytes: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const request = https.get(url, { agent, ca, headers: { cookie, accept: 'text/html' }, timeout: 30_000 }, (response) => {
      let bytes = 0;
      response.on('data', (chunk: Buffer) => (bytes += chunk.length));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, bytes, ms: performance.now() - started }));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${url} timed out`)));
    request.on('error', reject);
  });
}

/** `gateway serve` as a separate process (so this one's client work does not share its event loop); resolves once /healthz answers. */
async function startGateway(dir: string, upstream: string): Promise<{ origin: string; ca: Buffer; child: ChildProcess }> {
  const port = await freePort();
  const origin = `https://localhost:${port}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GATEWAY_')));
  const settings = { GATEWAY_LISTEN: `127.0.0.1:${port}`, GATEWAY_UPSTREAM: upstream, GATEWAY_PUBLIC_URL: origin, GATEWAY_LOG_LEVEL: 'warn', GATEWAY_SHUTDOWN_GRACE: '1', GATEWAY_METRICS_LISTEN: '' };
  const child = spawn(process.execPath, [cliPath, 'serve'], { cwd: dir, env: { ...env, ...settings }, stdio: ['ignore', 'ignore', 'inherit'] });
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`gateway exited with code ${child.exitCode}`);
    try {
      const ca = await readFile(path.join(dir, 'certs', 'ca.crt'));
      const probe = await timedGet(new https.Agent(), `${origin}/healthz`, ca, '');
      if (probe.status === 200) return { origin, ca, child };
    } catch {
      // Not up yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  child.kill('SIGKILL');
  throw new Error('gateway did not answer /healthz within 120 s');
}

/** The registry alone, for comparison: what one list page asks it (the tag lists of 50 repositories, 8 at a time). */
async function registryTagLists(registryUrl: string, rounds: number): Promise<number> {
  const times: number[] = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  try {
    for (let round = 0; round < rounds; round += 1) {
      const started = performance.now();
      const names = Array.from({ length: 50 }, (_, i) => repositoryName(1000 + round * 50 + i));
      await Promise.all(
        names.map(
          (name) =>
            new Promise<void>((resolve, reject) => {
              http.get(`${registryUrl}/v2/${name}/tags/list`, { agent }, (response) => response.resume().on('end', resolve).on('error', reject)).on('error', reject);
            }),
        ),
      );
      times.push(performance.now() - started);
    }
  } finally {
    agent.destroy();
  }
  return median(times);
}

/** The registry alone reading its whole catalog in pages of 1000 (what a cold list page waits for). */
async function registryCatalog(registryUrl: string): Promise<{ ms: number; names: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const started = performance.now();
  let names = 0;
  let last = '';
  try {
    for (;;) {
      const page = await new Promise<string[]>((resolve, reject) => {
        http.get(`${registryUrl}/v2/_catalog?n=1000${last === '' ? '' : `&last=${encodeURIComponent(last)}`}`, { agent }, (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => resolve((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { repositories: string[] }).repositories ?? []));
          response.on('error', reject);
        }).on('error', reject);
      });
      names += page.length;
      if (page.length < 1000) break;
      last = page[page.length - 1]!;
    }
  } finally {
    agent.destroy();
  }
  return { ms: performance.now() - started, names };
}

/** chromium's navigation to the load event, cache off, from the Navigation Timing entry. */
async function loadTime(page: Page, url: string): Promise<number> {
  const response = await page.goto(url, { waitUntil: 'load' });
  if (response?.status() !== 200) throw new Error(`${url} answered ${response?.status()}`);
  return page.evaluate(() => (performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming).loadEventEnd);
}

async function main(): Promise<void> {
  const count = setting('BENCH_UI_REPOS', 10_000, 100_000);
  const rounds = setting('BENCH_UI_ROUNDS', 15, 200);
  const concurrency = setting('BENCH_UI_CONCURRENCY', 16, 256);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-ui-bench-'));
  const logger = pino({ level: 'warn' });
  const registry = new RegistryProcess({ binary: '/usr/bin/docker-registry', dataDir: path.join(dir, 'registry-data'), logger, extraConfig: { log: { level: 'warn' } } });
  let gateway: ChildProcess | undefined;
  let browser: TestBrowser | undefined;
  const stop = async () => {
    await browser?.close();
    if (gateway && gateway.exitCode === null) {
      const exited = new Promise((resolve) => gateway!.once('exit', resolve));
      gateway.kill('SIGTERM');
      await exited;
    }
    await registry.stop();
    await rm(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void stop().finally(() => process.exit(130)));
  try {
    await registry.start();
    const seeded = await seedRegistry(registry.url, count, concurrency, (done) => process.stderr.write(`seeded ${done}/${count}\n`));
    console.log(`seeded ${seeded.repositories} repositories in ${seeded.seconds.toFixed(1)} s (${Math.round(seeded.repositories / seeded.seconds)}/s, ${concurrency} at a time)`);

    await writeFile(path.join(dir, 'access.yml'), accessRules);
    await run(process.execPath, [cliPath, 'user', 'add', user, '--password-stdin', '--htpasswd', 'htpasswd/htpasswd'], dir, `${password}\n`);
    const started = await startGateway(dir, registry.url);
    gateway = started.child;
    const { origin, ca } = started;

    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const results: Record<string, unknown> = {};
    // The very first page after the start, before anyone signed in: whatever the UI reads or caches, it does here.
    const cold = await timedGet(agent, `${origin}/`, ca, '');
    results['cold first page (anonymous)'] = Number(cold.ms.toFixed(1));
    console.log(`first request after start (anonymous): ${ms(cold.ms)} (status ${cold.status}, ${cold.bytes} bytes)`);

    browser = await startBrowser();
    const context = await browser.newContext();
    const page = await signIn(context, origin, user, password);
    const cookie = (await context.cookies(origin)).map((c) => `${c.name}=${c.value}`).join('; ');
    const searchTerm = 'app-0424';
    const targets = { 'first page': '/', search: `/?q=${searchTerm}`, 'page 50': '/?page=50', 'prefix search': '/?q=ns-42' };

    for (const [name, target] of Object.entries(targets)) {
      const times: number[] = [];
      let last = { status: 0, bytes: 0 };
      for (let round = 0; round < rounds; round += 1) {
        const answer = await timedGet(agent, `${origin}${target}`, ca, cookie);
        times.push(answer.ms);
        last = answer;
      }
      if (last.status !== 200) throw new Error(`${target} answered ${last.status}`);
      results[`server ${name}`] = Number(median(times).toFixed(1));
      console.log(`server  ${name.padEnd(14)} ${target.padEnd(16)} median ${ms(median(times))}  max ${ms(Math.max(...times))}  (${last.bytes} bytes)`);
    }

    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    for (const [name, target] of Object.entries({ 'first page': '/', search: `/?q=${searchTerm}` })) {
      const times: number[] = [];
      for (let round = 0; round < rounds; round += 1) times.push(await loadTime(page, `${origin}${target}`));
      const rows = await page.getByRole('row').count();
      results[`chromium ${name}`] = Number(median(times).toFixed(1));
      console.log(`chromium ${name.padEnd(13)} ${target.padEnd(16)} load event median ${ms(median(times))}  max ${ms(Math.max(...times))}  (${rows} table rows, cache off)`);
    }
    const direct = await registryTagLists(registry.url, rounds);
    results['registry 50 tag lists'] = Number(direct.toFixed(1));
    console.log(`registry alone: the 50 tag lists of one page (8 at a time) median ${ms(direct)}`);
    const catalog = await registryCatalog(registry.url);
    results['registry whole catalog'] = Number(catalog.ms.toFixed(1));
    console.log(`registry alone: the whole catalog (${catalog.names} names, pages of 1000) ${ms(catalog.ms)}`);
    const first = results['chromium first page'] as number;
    console.log(`target: first page loaded in under ${targetMs} ms: ${first < targetMs ? 'met' : 'NOT met'} (${repositoryName(count - 1)} is the last of ${count})`);
    console.log(JSON.stringify({ repositories: count, rounds, load: os.loadavg()[0], ...results }));
  } finally {
    await stop();
  }
}

main().catch((error: unknown) => {
  console.error(`ui bench failed: ${(error as Error).stack ?? error}`);
  process.exitCode = 1;
});
