// Starts, watches and stops a local distribution registry process (the embedded default backend).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { delimiter, isAbsolute, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { stringify } from 'yaml';
import { ConfigError } from './errors.js';

/** Binary names of the distribution registry, in order of preference (Debian's name first). */
const registryBinaryNames = ['docker-registry', 'registry'] as const;

/** Follows a sentence saying which binary is missing. */
export const registryInstallHint =
  'Install the registry with `apt-get install docker-registry` (Debian/Ubuntu) ' +
  'or point GATEWAY_REGISTRY_BIN at a distribution registry binary; ' +
  'alternatively set GATEWAY_UPSTREAM to the URL of an existing registry.';

export interface RegistryProcessOptions {
  binary: string;
  /** Storage root: images go to dataDir/registry, the config to dataDir/registry.yml. */
  dataDir: string;
  /** Default: the content of dataDir/http-secret, created on first start. */
  httpSecret?: string;
  /** Default: a free loopback port. */
  port?: number;
  /** Storage driver section; delete and maintenance defaults stay unless given here. */
  storage?: Record<string, unknown>;
  /** Deep-merged into the generated config (e.g. an auth section for a test). */
  extraConfig?: Record<string, unknown>;
  /** Receives the registry's output and the supervisor's messages; pass a child logger to tag them. */
  logger: Logger;
  /**
   * Environment of the child, AWS_CA_BUNDLE always removed. Default: empty, so stray REGISTRY_*
   * variables cannot silently override the generated config.
   */
  env?: NodeJS.ProcessEnv;
  /** First restart delay; it doubles on each consecutive crash. Default 1000 ms. */
  restartDelayMs?: number;
  /** Ceiling of the restart delay. Default 30000 ms. */
  maxRestartDelayMs?: number;
  /** How long start() waits for GET /v2/ to answer. Default 30000 ms. */
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. Default 5000 ms. */
  stopTimeoutMs?: number;
}

/** How a child ended: exit code or signal, or the error that prevented it from starting. */
interface ChildEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  spawnError?: Error;
}

interface RunningChild {
  process: ChildProcess;
  ended: Promise<ChildEnd>;
  readyAt?: number;
}

/** A child that has been up this long without crashing resets the restart backoff. */
const stableUptimeMs = 60_000;
const readinessPollMs = 100;
const outputLinesKept = 20;

/**
 * Every registry child alive in this process. A parent that exits without awaiting stop() kills
 * them synchronously on 'exit', so no orphan registry keeps the port and the data directory.
 */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function killLiveChildrenSync(): void {
  for (const child of liveChildren) child.kill('SIGKILL');
}

function trackChild(child: ChildProcess): void {
  if (!exitHookInstalled) {
    process.on('exit', killLiveChildrenSync);
    exitHookInstalled = true;
  }
  liveChildren.add(child);
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The registry binary to run. An explicit choice (GATEWAY_REGISTRY_BIN) is final: a path must be an
 * executable file, a bare name is looked up on `pathEnv`; a wrong one is never replaced by another
 * binary. Without one, docker-registry then registry are looked up. Relative and empty PATH entries
 * are skipped, so the current directory never supplies the binary.
 */
export function findRegistryBinary(explicit: string | undefined, pathEnv: string | undefined): string | undefined {
  if (explicit && explicit.includes('/')) return isExecutableFile(explicit) ? explicit : undefined;
  const directories = (pathEnv ?? '').split(delimiter).filter((entry) => entry !== '' && isAbsolute(entry));
  for (const name of explicit ? [explicit] : registryBinaryNames) {
    for (const directory of directories) {
      const candidate = join(directory, name);
      if (isExecutableFile(candidate)) return candidate;
    }
  }
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepMerge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const current = merged[key];
    merged[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return merged;
}

/** The registry configuration document (serialise with `yaml`). */
export function registryConfig(options: {
  port: number;
  httpSecret: string;
  rootDirectory: string;
  storage?: Record<string, unknown>;
  extraConfig?: Record<string, unknown>;
}): Record<string, unknown> {
  const storageDefaults = {
    delete: { enabled: true },
    maintenance: { uploadpurging: { enabled: true, age: '168h', interval: '24h', dryrun: false } },
  };
  const storage = options.storage
    ? { ...storageDefaults, ...options.storage }
    : { filesystem: { rootdirectory: options.rootDirectory }, ...storageDefaults };
  const config: Record<string, unknown> = {
    version: '0.1',
    // The gateway logs every request itself, so the registry's access log would only double it.
    log: { level: 'info', formatter: 'text', accesslog: { disabled: true } },
    storage,
    http: { addr: `127.0.0.1:${options.port}`, secret: options.httpSecret },
    health: { storagedriver: { enabled: true, interval: '10s', threshold: 3 } },
  };
  return options.extraConfig ? deepMerge(config, options.extraConfig) : config;
}

/**
 * The secret that signs upload state. It must survive restarts, or uploads in progress during a
 * restart fail, so it is kept next to the data rather than generated per run.
 */
async function readOrCreateHttpSecret(path: string): Promise<string> {
  try {
    const existing = (await readFile(path, 'utf8')).trim();
    if (existing === '') throw new ConfigError(path, 'the registry http secret file is empty; delete it to have a new one created');
    return existing;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const secret = randomBytes(32).toString('hex');
  try {
    await writeFile(path, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return secret;
  } catch (error) {
    // Another process created it first: use theirs so both agree.
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return readOrCreateHttpSecret(path);
    throw error;
  }
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function childEnvironment(env: NodeJS.ProcessEnv | undefined): NodeJS.ProcessEnv {
  // The s3 driver panics at start-up on some AWS_CA_BUNDLE values.
  const { AWS_CA_BUNDLE: _ignored, ...rest } = env ?? {};
  return rest;
}

type ForwardLevel = 'debug' | 'info' | 'warn' | 'error';

interface ParsedLine {
  level: ForwardLevel;
  message: string;
  fields?: string;
}

const registryLevels: Record<string, ForwardLevel> = {
  trace: 'debug',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  warning: 'warn',
  // The registry logs every 4xx answer (a HEAD before a push, say) at error: not the gateway's errors.
  error: 'warn',
  fatal: 'error',
  panic: 'error',
};

/** Fields repeated on every line that say nothing about the event. */
const noiseFields = /\b(?:time|level|msg|go\.version|instance\.id|version)=(?:"(?:[^"\\]|\\.)*"|\S+)\s*/g;

function unquote(value: string): string {
  if (!value.startsWith('"')) return value;
  try {
    return JSON.parse(value) as string;
  } catch {
    return value.slice(1, -1);
  }
}

/** Reads a logrus text (logfmt) line loosely; anything else passes through as plain text. */
export function parseRegistryLine(line: string): ParsedLine {
  const levelMatch = /\blevel=(\w+)/.exec(line);
  const msgMatch = /\bmsg=("(?:[^"\\]|\\.)*"|\S+)/.exec(line);
  if (!levelMatch || !msgMatch) {
    const crashed = /^(?:panic:|fatal error:)/.test(line);
    return { level: crashed ? 'error' : 'info', message: line };
  }
  let level = registryLevels[levelMatch[1]!.toLowerCase()] ?? 'info';
  // One line per request: the gateway already logs requests, so only server errors stay visible.
  const status = /\bhttp\.response\.status=(\d+)/.exec(line);
  if (status) level = Number(status[1]) >= 500 ? 'warn' : 'debug';
  const fields = line.replace(noiseFields, '').trim();
  return fields === '' ? { level, message: unquote(msgMatch[1]!) } : { level, message: unquote(msgMatch[1]!), fields };
}

/** Resolves with how the child ended, once its output is fully read. */
function childEnded(child: ChildProcess): Promise<ChildEnd> {
  return new Promise((resolve) => {
    let spawnError: Error | undefined;
    child.once('error', (error) => {
      spawnError ??= error;
    });
    child.once('close', (code, signal) => {
      resolve(spawnError && child.pid === undefined ? { code: null, signal: null, spawnError } : { code, signal });
    });
  });
}

/**
 * True once a registry answers on /v2/, whatever the status (a 401 counts: auth may be configured).
 * The API version header tells it apart from another server that took the port meanwhile.
 */
function answersAsRegistry(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = request(`${url}/v2/`, { method: 'GET', agent: false, timeout: 1000 }, (response) => {
      response.resume();
      resolve(response.headers['docker-distribution-api-version'] !== undefined);
    });
    probe.on('timeout', () => probe.destroy());
    probe.on('error', () => resolve(false));
    probe.end();
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A Go panic's goroutine dump buries the one line that says what went wrong: keep what precedes it. */
function withoutStackTraces(lines: string[]): string[] {
  const traceStart = lines.findIndex((line) => /^goroutine \d+ \[/.test(line));
  return traceStart === -1 ? lines : lines.slice(0, traceStart);
}

function describeEnd(end: ChildEnd): string {
  if (end.spawnError) return `could not be run (${end.spawnError.message})`;
  if (end.signal) return `was killed by ${end.signal}`;
  return `exited with code ${end.code}`;
}

export class RegistryProcess extends EventEmitter {
  readonly #options: RegistryProcessOptions;
  readonly #log: Logger;
  readonly #configPath: string;
  #port: number | undefined;
  #current: RunningChild | undefined;
  #recentOutput: string[] = [];
  #started = false;
  #supervising = false;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #consecutiveCrashes = 0;

  constructor(options: RegistryProcessOptions) {
    super();
    this.#options = options;
    this.#log = options.logger;
    this.#configPath = join(options.dataDir, 'registry.yml');
  }

  /** http://127.0.0.1:PORT of the registry; valid once start() began. */
  get url(): string {
    if (this.#port === undefined) throw new Error('RegistryProcess.url read before start()');
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Process id of the current child, if one is running. */
  get pid(): number | undefined {
    return this.#current?.process.pid;
  }

  async start(): Promise<void> {
    if (this.#started) throw new Error('RegistryProcess.start() called twice');
    this.#started = true;
    const { dataDir } = this.#options;
    const rootDirectory = join(dataDir, 'registry');
    await mkdir(rootDirectory, { recursive: true });
    const httpSecret = this.#options.httpSecret ?? (await readOrCreateHttpSecret(join(dataDir, 'http-secret')));
    this.#port = this.#options.port ?? (await freeLoopbackPort());
    const config = registryConfig({
      port: this.#port,
      httpSecret,
      rootDirectory,
      storage: this.#options.storage,
      extraConfig: this.#options.extraConfig,
    });
    // The file holds the http secret (and maybe storage credentials).
    await writeFile(this.#configPath, stringify(config), { mode: 0o600 });
    await chmod(this.#configPath, 0o600);
    await this.#launch();
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stopNow();
    return this.#stopped;
  }

  async #stopNow(): Promise<void> {
    this.#stopping = true;
    this.#supervising = false;
    clearTimeout(this.#restartTimer);
    const current = this.#current;
    if (!current || current.process.exitCode !== null || current.process.signalCode !== null) {
      await current?.ended;
      return;
    }
    current.process.kill('SIGTERM');
    const timeoutMs = this.#options.stopTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const outcome = await Promise.race([current.ended, gaveUp]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.#log.warn({ timeoutMs }, 'registry did not stop after SIGTERM; sending SIGKILL');
      current.process.kill('SIGKILL');
      await current.ended;
    }
  }

  /** Spawns a child and waits until it answers; rejects (after killing it) if it never does. */
  async #launch(): Promise<void> {
    if (this.#stopping) throw new Error('registry stopped before it became ready');
    const child = spawn(this.#options.binary, ['serve', this.#configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: childEnvironment(this.#options.env),
    });
    const running: RunningChild = { process: child, ended: childEnded(child) };
    this.#current = running;
    this.#recentOutput = [];
    if (child.pid !== undefined) trackChild(child);
    this.#forwardOutput(child.stdout!);
    this.#forwardOutput(child.stderr!);
    void running.ended.then((end) => {
      liveChildren.delete(child);
      this.#onChildEnd(running, end);
    });

    const ready = await this.#waitUntilReady(running);
    if (ready === true) {
      running.readyAt = Date.now();
      // From the first answer on, a crash means restart (a failed first start is the caller's to report).
      this.#supervising = true;
      this.#log.info({ url: this.url, pid: child.pid }, 'registry is ready');
      this.emit('ready', this.url);
      return;
    }
    if (ready === 'timeout') {
      child.kill('SIGKILL');
      await running.ended;
    }
    throw this.#startFailure(ready === 'timeout' ? undefined : ready);
  }

  async #waitUntilReady(running: RunningChild): Promise<true | 'timeout' | ChildEnd> {
    let end: ChildEnd | undefined;
    void running.ended.then((result) => (end = result));
    const deadline = Date.now() + (this.#options.startTimeoutMs ?? 30_000);
    while (Date.now() < deadline) {
      if (end) return end;
      if (await answersAsRegistry(this.url)) return end ?? true;
      await sleep(readinessPollMs);
    }
    return end ?? 'timeout';
  }

  #startFailure(end: ChildEnd | undefined): Error {
    const { binary } = this.#options;
    if (this.#stopping) return new Error('registry stopped before it became ready');
    if (end?.spawnError) return new ConfigError('registry', `cannot run ${binary} (${end.spawnError.message})`);
    const what = end
      ? `${binary} ${describeEnd(end)} before answering on ${this.url}/v2/`
      : `${binary} did not answer on ${this.url}/v2/ within ${this.#options.startTimeoutMs ?? 30_000} ms`;
    const output = withoutStackTraces(this.#recentOutput);
    const shown = output.length > 0 ? `; its last output:\n${output.join('\n')}` : '';
    return new ConfigError('registry', `${what} (config ${this.#configPath})${shown}`);
  }

  #forwardOutput(stream: Readable): void {
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    lines.on('line', (line) => {
      if (line.trim() === '') return;
      const parsed = parseRegistryLine(line);
      this.#recentOutput.push(parsed.fields ? `${parsed.message} ${parsed.fields}` : parsed.message);
      if (this.#recentOutput.length > outputLinesKept) this.#recentOutput.shift();
      if (parsed.fields) this.#log[parsed.level]({ fields: parsed.fields }, parsed.message);
      else this.#log[parsed.level](parsed.message);
    });
  }

  #onChildEnd(running: RunningChild, end: ChildEnd): void {
    if (running !== this.#current || !this.#supervising || this.#stopping) return;
    const uptimeMs = running.readyAt === undefined ? 0 : Date.now() - running.readyAt;
    if (uptimeMs >= stableUptimeMs) this.#consecutiveCrashes = 0;
    const base = this.#options.restartDelayMs ?? 1000;
    const ceiling = this.#options.maxRestartDelayMs ?? 30_000;
    const delayMs = Math.min(base * 2 ** this.#consecutiveCrashes, ceiling);
    this.#consecutiveCrashes += 1;
    this.#log.warn(
      { code: end.code, signal: end.signal, uptimeMs, restartInMs: delayMs, lastOutput: this.#recentOutput.slice(-5) },
      `registry ${describeEnd(end)} unexpectedly; restarting`,
    );
    this.emit('exit', end.code, end.signal);
    this.#restartTimer = setTimeout(() => this.#restart(), delayMs);
  }

  #restart(): void {
    if (this.#stopping) return;
    this.emit('restart', this.#consecutiveCrashes);
    // A failed attempt ends its child, and #onChildEnd schedules the next one with a longer delay.
    this.#launch().catch((error: Error) => {
      this.#log.debug({ err: error.message }, 'registry restart attempt failed');
    });
  }
}
