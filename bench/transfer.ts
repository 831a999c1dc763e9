// Measures what the gateway costs: skopeo push/pull through it versus the bare registry, and GET /v2/ rates.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { RegistryProcess } from '../src/registry/registry-process.js';
import { buildOciImage, type TestImage } from '../test/helpers/oci-image.js';
import { freePort } from '../test/helpers/ports.js';
import { skopeoCopy, skopeoLogin, type PlainHttp, type SkopeoContext } from '../test/helpers/skopeo.js';

const mib = 1024 * 1024;
const targetRatio = 1.1;
const registryBinary = '/usr/bin/docker-registry';
const cliPath = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const benchUser = 'bench';
const wrkArgs = ['-t2', '-c32', '-d10s'];
/** wrk runs 10 s; anything much longer means it hangs. */
const wrkTimeoutMs = 60_000;
/** The first gateway start generates a CA, a server certificate and a token key. */
const gatewayStartTimeoutMs = 120_000;
const stopTimeoutMs = 10_000;
/** Linux reports process CPU times in clock ticks of 1/100 s. */
const clockTicksPerSecond = 100;

type PathName = 'direct' | 'gateway';

interface Settings {
  layerMiB: number;
  rounds: number;
  /** A transfer slower than 1 MiB/s (plus a minute) is treated as hung. */
  transferTimeoutMs: number;
}

function wholeNumberSetting(env: NodeJS.ProcessEnv, name: string, fallback: number, max: number): number {
  const raw = env[name] ?? String(fallback);
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > max) throw new Error(`${name} must be a whole number from 1 to ${max}, got "${raw}"`);
  return value;
}

/** BENCH_LAYER_MIB (default 512) and BENCH_ROUNDS (default 3); a bad value stops the run before anything starts. */
function readSettings(env: NodeJS.ProcessEnv): Settings {
  const layerMiB = wholeNumberSetting(env, 'BENCH_LAYER_MIB', 512, 16_384);
  return { layerMiB, rounds: wholeNumberSetting(env, 'BENCH_ROUNDS', 3, 20), transferTimeoutMs: 60_000 + layerMiB * 1000 };
}

/** Undo steps run last-in first-out, once, whether the run succeeded, failed or was interrupted. */
class Teardown {
  readonly #steps: { what: string; undo: () => Promise<unknown> }[] = [];
  #running: Promise<void> | undefined;

  add(what: string, undo: () => Promise<unknown>): void {
    this.#steps.push({ what, undo });
  }

  run(): Promise<void> {
    this.#running ??= (async () => {
      for (const step of this.#steps.reverse()) {
        try {
          await step.undo();
        } catch (error) {
          process.stderr.write(`cleanup: could not ${step.what}: ${(error as Error).message}\n`);
        }
      }
    })();
    return this.#running;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with a message naming `what` if `work` takes longer than `ms`. */
async function withTimeout<T>(what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)} s`)), ms);
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs a program to completion; resolves with its stdout, or rejects with its stderr. */
function run(file: string, args: string[], options: { cwd?: string; stdin?: string; timeoutMs?: number; okExitCodes?: number[] } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { cwd: options.cwd, timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * mib }, (error, stdout, stderr) => {
      const code = typeof error?.code === 'number' ? error.code : undefined;
      if (error && !(code !== undefined && options.okExitCodes?.includes(code))) {
        reject(new Error(`${path.basename(file)} ${args[0] ?? ''} failed: ${stderr.trim() || error.message}`));
        return;
      }
      resolve(stdout);
    });
    child.stdin?.end(options.stdin ?? '');
  });
}

// ---------------------------------------------------------------------------------------------
// Machine

interface Machine {
  cpus: number;
  cpuModel: string;
  os: string;
  node: string;
  skopeo: string;
  wrk: string | null;
  /** 1-minute load average when the run started: above the CPU count, other work skews the figures. */
  loadAtStart: number;
}

async function versionOf(file: string, args: string[]): Promise<string | null> {
  try {
    return (await run(file, args, { timeoutMs: 10_000, okExitCodes: [1] })).split('\n')[0]!.trim();
  } catch {
    return null;
  }
}

async function describeMachine(): Promise<Machine> {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    skopeo: (await versionOf('skopeo', ['--version']))?.replace(/^skopeo version /, '') ?? 'missing',
    // `wrk -v` prints its version and exits with status 1.
    wrk: (await versionOf('wrk', ['-v']))?.replace(/^wrk /, '').replace(/ Copyright.*$/, '') ?? null,
    loadAtStart: round2(os.loadavg()[0]!),
  };
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc, to show where the time goes

/** User plus system CPU seconds of a running process, or undefined if /proc cannot tell. */
function cpuSecondsOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond;
  } catch {
    return undefined;
  }
}

/** CPU seconds of this process's finished children (skopeo, once it has exited). */
function reapedChildrenCpuSeconds(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[13]) + Number(fields[14])) / clockTicksPerSecond;
  } catch {
    return undefined;
  }
}

interface CpuSample {
  client?: number;
  gateway?: number;
  registry?: number;
}

function sampleCpu(gatewayPid: number | undefined, registryPid: number | undefined): CpuSample {
  return { client: reapedChildrenCpuSeconds(), gateway: cpuSecondsOf(gatewayPid), registry: cpuSecondsOf(registryPid) };
}

function cpuSpent(before: CpuSample, after: CpuSample): CpuSample {
  const diff = (a?: number, b?: number) => (a === undefined || b === undefined ? undefined : b - a);
  return { client: diff(before.client, after.client), gateway: diff(before.gateway, after.gateway), registry: diff(before.registry, after.registry) };
}

// ---------------------------------------------------------------------------------------------
// The gateway, run as a user runs it

interface GatewayProcess {
  name: string;
  pid: number | undefined;
  /** localhost:PORT, the name its certificate is checked against by skopeo. */
  host: string;
  /** https://127.0.0.1:PORT, for wrk and our own requests. */
  url: string;
  stop(): Promise<void>;
}

/** `gateway user add bench --password-stdin`, in the gateway's folder. */
async function addGatewayUser(cwd: string, password: string): Promise<void> {
  await run(process.execPath, [cliPath, 'user', 'add', benchUser, '--password-stdin', '--htpasswd', 'htpasswd/htpasswd'], { cwd, stdin: `${password}\n` });
}

/** Environment for a gateway child: ours without stray GATEWAY_* settings, plus the given ones. */
function gatewayEnvironment(settings: Record<string, string>): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GATEWAY_')));
  return { ...inherited, ...settings };
}

/** Forwards the gateway's warnings to our stderr and keeps its last lines for error messages. */
function watchOutput(child: ChildProcess, name: string, tail: string[]): void {
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      if (line.trim() === '') return;
      tail.push(line);
      if (tail.length > 30) tail.shift();
      if (line.startsWith('{')) process.stderr.write(`[${name}] ${line}\n`);
    });
  }
}

/** One HTTPS GET trusting only the gateway's CA; resolves with status and body. */
function httpsGet(url: string, ca: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = https.get(url, { ca, headers, agent: false, timeout: 5000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${url} timed out`)));
    request.on('error', reject);
  });
}

/** Polls /healthz until it answers 200; fails early if the process exits. */
async function waitForHealthz(url: string, caPath: string, exited: () => string | undefined, tail: string[]): Promise<void> {
  const deadline = Date.now() + gatewayStartTimeoutMs;
  while (Date.now() < deadline) {
    const end = exited();
    if (end) throw new Error(`gateway ${end} before answering; its last output:\n${tail.join('\n')}`);
    try {
      const ca = await readFile(caPath);
      if ((await httpsGet(`${url}/healthz`, ca)).status === 200) return;
    } catch {
      // Not listening yet, or the CA not written yet.
    }
    await sleep(200);
  }
  throw new Error(`gateway did not answer on ${url}/healthz within ${gatewayStartTimeoutMs / 1000} s; its last output:\n${tail.join('\n')}`);
}

function stopChild(child: ChildProcess, ended: Promise<unknown>): Promise<void> {
  return (async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const outcome = await Promise.race([ended.then(() => 'ended'), sleep(stopTimeoutMs).then(() => 'timeout')]);
    if (outcome === 'timeout') {
      child.kill('SIGKILL');
      await ended;
    }
  })();
}

/** `gateway serve` in `cwd` in front of `upstream`, listening on a free loopback port. */
async function startGatewayProcess(options: { name: string; cwd: string; upstream: string; auth: 'token' | 'basic' }): Promise<GatewayProcess> {
  const port = await freePort();
  const env = gatewayEnvironment({
    GATEWAY_UPSTREAM: options.upstream,
    GATEWAY_LISTEN: `127.0.0.1:${port}`,
    GATEWAY_LOG_LEVEL: 'warn',
    GATEWAY_AUTH: options.auth,
    // Only shortens the stop at the end of the run; transfers are over by then.
    GATEWAY_SHUTDOWN_GRACE: '1',
  });
  const child = spawn(process.execPath, [cliPath, 'serve'], { cwd: options.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  liveGateways.add(child);
  const ended = new Promise<string>((resolve) => {
    child.once('error', (error) => resolve(`could not be started (${error.message})`));
    child.once('exit', (code, signal) => resolve(signal ? `was killed by ${signal}` : `exited with code ${code}`));
  });
  let endedHow: string | undefined;
  void ended.then((how) => {
    endedHow = how;
    liveGateways.delete(child);
  });
  const tail: string[] = [];
  watchOutput(child, options.name, tail);
  const url = `https://127.0.0.1:${port}`;
  const stop = () => stopChild(child, ended);
  try {
    await waitForHealthz(url, path.join(options.cwd, 'certs', 'ca.crt'), () => endedHow, tail);
  } catch (error) {
    await stop();
    throw error;
  }
  return { name: options.name, pid: child.pid, host: `localhost:${port}`, url, stop };
}

/** Gateways alive right now: killed synchronously if this process exits without stopping them. */
const liveGateways = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveGateways) child.kill('SIGKILL');
});

// ---------------------------------------------------------------------------------------------
// A registry plus a token gateway in front of it

interface Backend {
  registry: RegistryProcess;
  /** 127.0.0.1:PORT, plain http. */
  registryHost: string;
  gateway: GatewayProcess;
  stop(): Promise<void>;
}

async function startRegistry(dataDir: string, logger: Logger, teardown: Teardown): Promise<RegistryProcess> {
  // At info the registry prints a line per request, which this process would parse while it measures.
  const registry = new RegistryProcess({ binary: registryBinary, dataDir, logger, extraConfig: { log: { level: 'warn' } } });
  teardown.add('stop the registry', () => registry.stop());
  await registry.start();
  return registry;
}

/**
 * A fresh registry and token gateway, both on new ports. skopeo remembers, per registry host,
 * where it has seen a blob and mounts it from there instead of uploading; new host names every
 * round keep every push a full upload.
 */
async function startBackend(o: { workDir: string; gatewayDir: string; label: string; logger: Logger; teardown: Teardown; skopeo: SkopeoContext; password: string }): Promise<Backend> {
  const dataDir = path.join(o.workDir, `registry-${o.label}`);
  const registry = await startRegistry(dataDir, o.logger, o.teardown);
  const gateway = await startGatewayProcess({ name: `gateway-token-${o.label}`, cwd: o.gatewayDir, upstream: registry.url, auth: 'token' });
  o.teardown.add(`stop ${gateway.name}`, () => gateway.stop());
  await copyFile(path.join(o.gatewayDir, 'certs', 'ca.crt'), path.join(o.skopeo.certDir, 'ca.crt'));
  await withTimeout(`skopeo login to ${gateway.host}`, 60_000, skopeoLogin({ ...o.skopeo, host: gateway.host, user: benchUser, password: o.password }));
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      await gateway.stop();
      await registry.stop();
      await rm(dataDir, { recursive: true, force: true });
    })();
    return stopped;
  };
  return { registry, registryHost: new URL(registry.url).host, gateway, stop };
}

// ---------------------------------------------------------------------------------------------
// Transfers

interface Transfer {
  seconds: number;
  cpu: CpuSample;
}

interface RoundResult {
  round: number;
  path: PathName;
  push: Transfer;
  pull: Transfer;
}

async function timedCopy(what: string, backend: Backend, timeoutMs: number, copy: () => Promise<void>): Promise<Transfer> {
  const before = sampleCpu(backend.gateway.pid, backend.registry.pid);
  const started = performance.now();
  await withTimeout(what, timeoutMs, copy());
  const seconds = (performance.now() - started) / 1000;
  return { seconds, cpu: cpuSpent(before, sampleCpu(backend.gateway.pid, backend.registry.pid)) };
}

/** Pushes the image to a new repository over one path, then pulls it back into a new dir: folder. */
async function pushThenPull(o: { path: PathName; round: number; backend: Backend; image: TestImage; skopeo: SkopeoContext; workDir: string; settings: Settings }): Promise<RoundResult> {
  const host = o.path === 'direct' ? o.backend.registryHost : o.backend.gateway.host;
  const remote = `docker://${host}/bench/${o.path}-round-${o.round}:latest`;
  const plain = (side: keyof PlainHttp): PlainHttp | undefined => (o.path === 'direct' ? { [side]: true } : undefined);
  const push = await timedCopy(`push ${o.path} round ${o.round}`, o.backend, o.settings.transferTimeoutMs, () =>
    skopeoCopy({ ...o.skopeo, from: o.image.reference, to: remote, plainHttp: plain('dest') }),
  );
  const pulled = path.join(o.workDir, `pulled-${o.path}-${o.round}`);
  try {
    const pull = await timedCopy(`pull ${o.path} round ${o.round}`, o.backend, o.settings.transferTimeoutMs, () =>
      skopeoCopy({ ...o.skopeo, from: remote, to: `dir:${pulled}`, plainHttp: plain('src') }),
    );
    return { round: o.round, path: o.path, push, pull };
  } finally {
    await rm(pulled, { recursive: true, force: true });
  }
}

/** Odd rounds go direct first, even rounds through the gateway first, to spread machine noise. */
function pathOrder(round: number): PathName[] {
  return round % 2 === 1 ? ['direct', 'gateway'] : ['gateway', 'direct'];
}

async function measureTransfers(o: { workDir: string; gatewayDir: string; image: TestImage; skopeo: SkopeoContext; password: string; settings: Settings; logger: Logger; teardown: Teardown }): Promise<RoundResult[]> {
  const results: RoundResult[] = [];
  for (let round = 1; round <= o.settings.rounds; round++) {
    const backend = await startBackend({ ...o, label: `round-${round}` });
    o.teardown.add(`stop the round ${round} servers`, () => backend.stop());
    for (const pathName of pathOrder(round)) {
      const result = await pushThenPull({ ...o, path: pathName, round, backend });
      results.push(result);
      progress(`round ${round} ${pathName.padEnd(7)} push ${result.push.seconds.toFixed(2)} s, pull ${result.pull.seconds.toFixed(2)} s`);
    }
    await backend.stop();
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// Small requests with wrk

interface WrkResult {
  requestsPerSecond: number;
  /** Answers other than 2xx/3xx; any at all means the figure is not what it claims. */
  badResponses: number;
  socketErrors: string | null;
}

interface RateResults {
  direct: WrkResult;
  gatewayToken: WrkResult;
  gatewayBasic: WrkResult;
}

function parseWrk(output: string): WrkResult {
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(output);
  if (!rate) throw new Error(`wrk printed no Requests/sec line:\n${output}`);
  const bad = /Non-2xx or 3xx responses:\s+(\d+)/.exec(output);
  const errors = /Socket errors:\s+(.*)/.exec(output);
  return { requestsPerSecond: Number(rate[1]), badResponses: bad ? Number(bad[1]) : 0, socketErrors: errors ? errors[1]!.trim() : null };
}

async function runWrk(url: string, authorization?: string): Promise<WrkResult> {
  const header = authorization ? ['-H', `Authorization: ${authorization}`] : [];
  return parseWrk(await run('wrk', [...wrkArgs, ...header, url], { timeoutMs: wrkTimeoutMs }));
}

/** A Bearer token good for GET /v2/, from the token gateway's /token with Basic auth. */
async function fetchToken(gateway: GatewayProcess, ca: Buffer, basic: string): Promise<string> {
  const answer = await httpsGet(`${gateway.url}/token?service=registry-gateway`, ca, { Authorization: basic });
  if (answer.status !== 200) throw new Error(`GET /token answered ${answer.status}: ${answer.body}`);
  return (JSON.parse(answer.body) as { token: string }).token;
}

/** One request before the run, so a wrong header shows as an error rather than a fast stream of 401s. */
async function expectOk(url: string, ca: Buffer, authorization: string): Promise<void> {
  const answer = await httpsGet(`${url}/v2/`, ca, { Authorization: authorization });
  if (answer.status !== 200) throw new Error(`GET ${url}/v2/ answered ${answer.status}: ${answer.body}`);
}

async function measureRequestRates(o: { workDir: string; gatewayDir: string; password: string; logger: Logger; teardown: Teardown }): Promise<RateResults> {
  const registry = await startRegistry(path.join(o.workDir, 'registry-wrk'), o.logger, o.teardown);
  const token = await startGatewayProcess({ name: 'gateway-token', cwd: o.gatewayDir, upstream: registry.url, auth: 'token' });
  o.teardown.add('stop gateway-token', () => token.stop());
  const basicGateway = await startGatewayProcess({ name: 'gateway-basic', cwd: o.gatewayDir, upstream: registry.url, auth: 'basic' });
  o.teardown.add('stop gateway-basic', () => basicGateway.stop());

  const ca = await readFile(path.join(o.gatewayDir, 'certs', 'ca.crt'));
  const basic = `Basic ${Buffer.from(`${benchUser}:${o.password}`).toString('base64')}`;
  const bearer = `Bearer ${await fetchToken(token, ca, basic)}`;
  await expectOk(token.url, ca, bearer);
  await expectOk(basicGateway.url, ca, basic);

  progress('wrk: direct registry');
  const direct = await runWrk(`${registry.url}/v2/`);
  progress('wrk: gateway, token mode');
  const gatewayToken = await runWrk(`${token.url}/v2/`, bearer);
  progress('wrk: gateway, basic mode');
  const gatewayBasic = await runWrk(`${basicGateway.url}/v2/`, basic);
  return { direct, gatewayToken, gatewayBasic };
}

// ---------------------------------------------------------------------------------------------
// Report

interface PathSummary {
  pushSeconds: number;
  pullSeconds: number;
  pushMiBps: number;
  pullMiBps: number;
  pushRounds: number[];
  pullRounds: number[];
  /** Median CPU seconds spent per transfer by skopeo, the gateway and the registry. */
  pushCpu: CpuSample;
  pullCpu: CpuSample;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function medianCpu(samples: CpuSample[]): CpuSample {
  const of = (key: keyof CpuSample) => {
    const values = samples.map((sample) => sample[key]).filter((value): value is number => value !== undefined);
    return values.length === samples.length && values.length > 0 ? round3(median(values)) : undefined;
  };
  return { client: of('client'), gateway: of('gateway'), registry: of('registry') };
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function summarize(results: RoundResult[], pathName: PathName, layerBytes: number): PathSummary {
  const mine = results.filter((result) => result.path === pathName);
  const pushRounds = mine.map((result) => round3(result.push.seconds));
  const pullRounds = mine.map((result) => round3(result.pull.seconds));
  const pushSeconds = median(pushRounds);
  const pullSeconds = median(pullRounds);
  return {
    pushSeconds,
    pullSeconds,
    pushMiBps: round3(layerBytes / mib / pushSeconds),
    pullMiBps: round3(layerBytes / mib / pullSeconds),
    pushRounds,
    pullRounds,
    pushCpu: medianCpu(mine.map((result) => result.push.cpu)),
    pullCpu: medianCpu(mine.map((result) => result.pull.cpu)),
  };
}

function progress(message: string): void {
  process.stderr.write(`  ... ${message}\n`);
}

function cell(value: number | undefined, digits = 2): string {
  return value === undefined ? '-' : value.toFixed(digits);
}

function cpuCells(cpu: CpuSample): string {
  return `${cell(cpu.client)} / ${cell(cpu.gateway)} / ${cell(cpu.registry)}`;
}

function verdict(ratio: number): string {
  return ratio <= targetRatio ? `within ${targetRatio.toFixed(2)}` : `ABOVE the ${targetRatio.toFixed(2)} target`;
}

function printTransferTable(direct: PathSummary, gateway: PathSummary): void {
  const rows = [
    ['path', 'push s', 'push MiB/s', 'pull s', 'pull MiB/s', 'push CPU s skopeo/gw/reg', 'pull CPU s skopeo/gw/reg'],
    ['direct (http)', cell(direct.pushSeconds), cell(direct.pushMiBps, 1), cell(direct.pullSeconds), cell(direct.pullMiBps, 1), cpuCells(direct.pushCpu), cpuCells(direct.pullCpu)],
    ['gateway (token)', cell(gateway.pushSeconds), cell(gateway.pushMiBps, 1), cell(gateway.pullSeconds), cell(gateway.pullMiBps, 1), cpuCells(gateway.pushCpu), cpuCells(gateway.pullCpu)],
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  for (const row of rows) console.log(`  ${row.map((text, column) => (column === 0 ? text.padEnd(widths[column]!) : text.padStart(widths[column]!))).join('  ')}`);
  const pushRatio = gateway.pushSeconds / direct.pushSeconds;
  const pullRatio = gateway.pullSeconds / direct.pullSeconds;
  console.log(`  ratio gateway/direct: push ${pushRatio.toFixed(3)} (${verdict(pushRatio)}), pull ${pullRatio.toFixed(3)} (${verdict(pullRatio)})`);
  console.log(`  every round, seconds: direct push ${direct.pushRounds.join(', ')}; pull ${direct.pullRounds.join(', ')}`);
  console.log(`                        gateway push ${gateway.pushRounds.join(', ')}; pull ${gateway.pullRounds.join(', ')}`);
}

function rateLine(label: string, result: WrkResult, direct: WrkResult): string {
  const warnings = [
    result.badResponses > 0 ? `${result.badResponses} non-2xx answers: NOT VALID` : '',
    result.socketErrors ? `socket errors: ${result.socketErrors}` : '',
  ].filter(Boolean);
  const share = `${((result.requestsPerSecond / direct.requestsPerSecond) * 100).toFixed(0)}% of direct`;
  return `  ${label.padEnd(34)} ${result.requestsPerSecond.toFixed(0).padStart(7)} req/s  (${share})${warnings.length ? `  ${warnings.join('; ')}` : ''}`;
}

function printRateTable(rates: RateResults | null, skipped: string | null): void {
  console.log(`\nGET /v2/ with wrk ${wrkArgs.join(' ')}`);
  if (!rates) {
    console.log(`  skipped: ${skipped}`);
    return;
  }
  console.log(rateLine('direct registry (http)', rates.direct, rates.direct));
  console.log(rateLine('gateway, token mode (Bearer)', rates.gatewayToken, rates.direct));
  console.log(rateLine('gateway, basic mode (cached bcrypt)', rates.gatewayBasic, rates.direct));
}

// ---------------------------------------------------------------------------------------------
// Main

async function prepare(settings: Settings, teardown: Teardown) {
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'gateway-bench-'));
  teardown.add(`remove ${workDir}`, () => rm(workDir, { recursive: true, force: true }));
  const gatewayDir = path.join(workDir, 'gateway');
  const skopeo: SkopeoContext = { certDir: path.join(workDir, 'skopeo-certs'), authFile: path.join(workDir, 'skopeo-auth.json') };
  await mkdir(gatewayDir, { recursive: true });
  await mkdir(skopeo.certDir, { recursive: true });
  const password = randomBytes(18).toString('base64url');
  await addGatewayUser(gatewayDir, password);
  progress(`building an image with one ${settings.layerMiB} MiB random layer`);
  const image = await buildOciImage({ dir: path.join(workDir, 'image'), layers: [{ sizeBytes: settings.layerMiB * mib }] });
  const logger = pino({ level: 'warn', base: { component: 'bench' } }, pino.destination(2));
  return { workDir, gatewayDir, skopeo, password, image, logger };
}

async function benchmark(settings: Settings, teardown: Teardown): Promise<void> {
  const machine = await describeMachine();
  const setup = await prepare(settings, teardown);
  const layerBytes = setup.image.layerSizes[0]!;
  const results = await measureTransfers({ ...setup, settings, teardown });

  let rates: RateResults | null = null;
  let wrkSkipped: string | null = null;
  if (machine.wrk === null) {
    wrkSkipped = 'wrk is not installed (apt-get install -y wrk); request rates not measured';
    progress(wrkSkipped);
  } else {
    rates = await measureRequestRates({ ...setup, teardown });
  }

  const loadAtEnd = round2(os.loadavg()[0]!);
  const direct = summarize(results, 'direct', layerBytes);
  const gateway = summarize(results, 'gateway', layerBytes);
  console.log('\nregistry-gateway transfer benchmark');
  console.log(`machine: ${machine.cpus} cpus (${machine.cpuModel}), ${machine.os}, node ${machine.node}, skopeo ${machine.skopeo}, wrk ${machine.wrk ?? 'missing'}`);
  console.log(`load average (1 min): ${machine.loadAtStart} at start, ${loadAtEnd} at end${Math.max(machine.loadAtStart, loadAtEnd) > machine.cpus / 2 ? ' -- other work was running: expect noisy figures' : ''}`);
  console.log(`image: one ${settings.layerMiB} MiB random layer (${(layerBytes / mib).toFixed(1)} MiB gzipped), ${settings.rounds} round${settings.rounds === 1 ? "" : "s"}, medians; CPU = seconds used during the transfer\n`);
  printTransferTable(direct, gateway);
  printRateTable(rates, wrkSkipped);
  console.log(
    JSON.stringify({
      bench: 'transfer',
      machine,
      layerMiB: settings.layerMiB,
      layerBytes,
      rounds: settings.rounds,
      loadAtEnd,
      transfer: { direct, gateway, ratio: { push: round3(gateway.pushSeconds / direct.pushSeconds), pull: round3(gateway.pullSeconds / direct.pullSeconds) } },
      requestsPerSecond: rates,
      wrkSkipped,
    }),
  );
}

async function main(): Promise<number> {
  const teardown = new Teardown();
  const interrupted = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: stopping servers and removing temporary files\n`);
    void teardown.run().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    await benchmark(readSettings(process.env), teardown);
    return 0;
  } catch (error) {
    process.stderr.write(`bench failed: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await teardown.run();
  }
}

process.exit(await main());
