// Starts, watches and stops a local distribution registry process (the embedded default backend).
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { stringify } from 'yaml';
import { ConfigError } from '../errors.js';
import { parseRegistryLine, withoutStackTraces } from './registry-log.js';
import { childEnvironment, freeLoopbackPort, readOrCreateHttpSecret, registryConfig } from './registry-setup.js';
import { settingName } from '../config/settings.js';

export { parseRegistryLine } from './registry-log.js';
export { findRegistryBinary, registryConfig, registryInstallHint } from './registry-setup.js';

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

function describeEnd(end: ChildEnd): string {
  if (end.spawnError) return `could not be run (${end.spawnError.message})`;
  if (end.signal) return `was killed by ${end.signal}`;
  return `exited with code ${end.code}`;
}

export class RegistryProcess {
  readonly #options: RegistryProcessOptions;
  readonly #log: Logger;
  readonly #configPath: string;
  #port: number | undefined;
  /** The config of the first start, written again before every restart. */
  #configText = '';
  #current: RunningChild | undefined;
  #recentOutput: string[] = [];
  #started = false;
  #supervising = false;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #consecutiveCrashes = 0;

  constructor(options: RegistryProcessOptions) {
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
    this.#configText = stringify(
      registryConfig({
        port: this.#port,
        httpSecret,
        rootDirectory,
        storage: this.#options.storage,
        extraConfig: this.#options.extraConfig,
      }),
    );
    await this.#writeConfig();
    await this.#launch();
  }

  async #writeConfig(): Promise<void> {
    // The file holds the http secret (and maybe storage credentials).
    await writeFile(this.#configPath, this.#configText, { mode: 0o600 });
    await chmod(this.#configPath, 0o600);
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
    if (end?.spawnError) return new ConfigError(settingName('registry_bin'), `cannot run ${binary} (${end.spawnError.message})`);
    const what = end
      ? `${binary} ${describeEnd(end)} before answering on ${this.url}/v2/`
      : `${binary} did not answer on ${this.url}/v2/ within ${this.#options.startTimeoutMs ?? 30_000} ms`;
    const output = withoutStackTraces(this.#recentOutput);
    const shown = output.length > 0 ? `; its last output:\n${output.join('\n')}` : '';
    return new ConfigError('embedded registry', `${what} (config ${this.#configPath})${shown}`);
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
    const delayMs = this.#scheduleRestart();
    this.#log.warn(
      { code: end.code, signal: end.signal, uptimeMs, restartInMs: delayMs, lastOutput: this.#recentOutput.slice(-5) },
      `registry ${describeEnd(end)} unexpectedly; restarting`,
    );
  }

  /** Schedules the next attempt, each consecutive one later than the last; returns the delay. */
  #scheduleRestart(): number {
    const base = this.#options.restartDelayMs ?? 1000;
    const ceiling = this.#options.maxRestartDelayMs ?? 30_000;
    const delayMs = Math.min(base * 2 ** this.#consecutiveCrashes, ceiling);
    this.#consecutiveCrashes += 1;
    this.#restartTimer = setTimeout(() => void this.#restart(), delayMs);
    return delayMs;
  }

  async #restart(): Promise<void> {
    if (this.#stopping) return;
    try {
      // Exactly as first started: same port, same config, whatever has happened to the file since.
      await this.#writeConfig();
    } catch (error) {
      if (this.#stopping) return;
      const delayMs = this.#scheduleRestart();
      this.#log.error({ err: (error as Error).message, file: this.#configPath, restartInMs: delayMs }, 'cannot write the registry config; retrying');
      return;
    }
    // A failed attempt ends its child, and #onChildEnd schedules the next one with a longer delay.
    this.#launch().catch((error: Error) => {
      this.#log.debug({ err: error.message }, 'registry restart attempt failed');
    });
  }
}
