// Real object storage for tests: OpenStack Swift (and its S3 API) on loopback, and the registry run exactly as the compose files configure it.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { createConnection } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { freePort } from './ports.js';

/** The project folder (dist/test/helpers/ is three levels below it). */
export const projectRoot = fileURLToPath(new URL('../../../', import.meta.url));

const startTimeoutMs = 30_000;
const stopTimeoutMs = 5_000;
const outputLinesKept = 40;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Process groups still running: killed when the test process exits without stopping them (a crash). */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function trackGroup(pid: number): void {
  if (!exitHookInstalled) {
    process.on('exit', () => {
      for (const group of liveGroups) {
        try {
          process.kill(-group, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    });
    exitHookInstalled = true;
  }
  liveGroups.add(pid);
}

/** A child in its own process group, so stopping it also stops anything it forked. */
export class GroupProcess {
  readonly name: string;
  readonly #child: ChildProcess;
  readonly #output: string[] = [];
  readonly #exited: Promise<void>;
  #exit: string | undefined;

  constructor(name: string, command: string, args: string[], env: NodeJS.ProcessEnv) {
    this.name = name;
    this.#child = spawn(command, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const pid = this.#child.pid;
    if (pid !== undefined) trackGroup(pid);
    for (const stream of [this.#child.stdout!, this.#child.stderr!]) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        this.#output.push(line);
        if (this.#output.length > outputLinesKept) this.#output.shift();
      });
    }
    this.#exited = new Promise((resolve) => {
      this.#child.once('error', (error) => {
        this.#exit = `could not start: ${error.message}`;
        resolve();
      });
      this.#child.once('exit', (code, signal) => {
        this.#exit = signal ? `killed by ${signal}` : `exited with code ${code}`;
        if (pid !== undefined) liveGroups.delete(pid);
        resolve();
      });
    });
  }

  /** Why it ended, or undefined while it runs. */
  get exit(): string | undefined {
    return this.#exit;
  }

  /** Its last lines of output, for failure messages. */
  describe(): string {
    return `${this.name} ${this.#exit ?? 'is running'}; last output:\n${this.#output.join('\n')}`;
  }

  async stop(): Promise<void> {
    const pid = this.#child.pid;
    if (this.#exit !== undefined || pid === undefined) return;
    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        process.kill(-pid, signal);
      } catch {
        // The group is already gone.
      }
    };
    signalGroup('SIGTERM');
    const timedOut = await Promise.race([this.#exited.then(() => false), sleep(stopTimeoutMs).then(() => true)]);
    if (timedOut) signalGroup('SIGKILL');
    await this.#exited;
  }
}

/** Polls `ready` until it is true, failing early (with the output) if the process exits. */
async function waitUntil(what: string, processes: GroupProcess[], ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + startTimeoutMs;
  while (Date.now() < deadline) {
    const dead = processes.find((p) => p.exit !== undefined);
    if (dead) throw new Error(`${what}: ${dead.describe()}`);
    if (await ready()) return;
    await sleep(100);
  }
  throw new Error(`${what}: not ready within ${startTimeoutMs} ms\n${processes.map((p) => p.describe()).join('\n')}`);
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One plain-HTTP request on loopback (Swift and the bare registry speak HTTP here). */
export function httpCall(url: string, method: string, headers: Record<string, string> = {}, body?: Buffer): Promise<HttpResult> {
  const target = new URL(url);
  if (target.protocol !== 'http:' || target.hostname !== '127.0.0.1') throw new Error(`httpCall is for http://127.0.0.1 only, not ${url}`);
  return new Promise((resolve, reject) => {
    const req = httpRequest(target, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function run(command: string, args: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile(command, args, (error, _stdout, stderr) => (error ? reject(new Error(`${command} ${args.join(' ')}: ${stderr.trim() || error.message}`)) : resolve()));
  });
}

/** One object as a Swift container listing (format=json) reports it. */
export interface SwiftObject {
  name: string;
  bytes: number;
}

export interface SwiftServer {
  /** http://127.0.0.1:PORT of the proxy: the S3 endpoint, and the base of the Swift API. */
  endpoint: string;
  /** The tempauth (v1) auth URL. */
  authUrl: string;
  user: string;
  key: string;
  /** http://127.0.0.1:PORT/v1/AUTH_test */
  storageUrl: string;
  /** A fresh X-Auth-Token from tempauth. */
  token(): Promise<string>;
  createContainer(name: string): Promise<void>;
  /** Names of the account's containers. */
  listContainers(): Promise<string[]>;
  listObjects(container: string, prefix?: string): Promise<SwiftObject[]>;
  /** HEAD of one object: its headers (e.g. x-object-manifest for a segmented object). */
  headObject(container: string, name: string): Promise<Record<string, string | string[] | undefined>>;
  stop(): Promise<void>;
}

const swiftUser = 'test:tester';
const swiftKey = 'testing';
const storageServers = ['object', 'container', 'account'] as const;

/** What every Swift server here shares: loopback only, one process, root, the one folder. */
function serverDefaults(dir: string, port: number, logPort: number): string[] {
  return [
    'bind_ip = 127.0.0.1',
    `bind_port = ${port}`,
    'workers = 0',
    'user = root',
    `swift_dir = ${dir}`,
    // No /dev/log here, and the default is UDP 514: send the syslog lines to a port nobody reads.
    'log_udp_host = 127.0.0.1',
    `log_udp_port = ${logPort}`,
  ];
}

function storageServerConf(kind: (typeof storageServers)[number], dir: string, port: number, logPort: number): string {
  return [
    '[DEFAULT]',
    `devices = ${path.join(dir, 'node')}`,
    'mount_check = false',
    ...serverDefaults(dir, port, logPort),
    '',
    '[pipeline:main]',
    `pipeline = ${kind}-server`,
    '',
    `[app:${kind}-server]`,
    `use = egg:swift#${kind}`,
    '',
  ].join('\n');
}

function proxyServerConf(dir: string, port: number, memcachedPort: number, logPort: number): string {
  const simpleFilters = ['catch_errors', 'gatekeeper', 'healthcheck', 'listing_formats', 'bulk', 'copy', 'slo', 'dlo'];
  return [
    '[DEFAULT]',
    ...serverDefaults(dir, port, logPort),
    '',
    '[pipeline:main]',
    'pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo proxy-logging proxy-server',
    '',
    '[app:proxy-server]',
    'use = egg:swift#proxy',
    'account_autocreate = true',
    '',
    '[filter:tempauth]',
    'use = egg:swift#tempauth',
    `user_test_tester = ${swiftKey} .admin`,
    '',
    '[filter:s3api]',
    'use = egg:swift#s3api',
    'location = us-east-1',
    '',
    // tempauth keeps its tokens in memcached and refuses to work without it.
    '[filter:cache]',
    'use = egg:swift#memcache',
    `memcache_servers = 127.0.0.1:${memcachedPort}`,
    '',
    '[filter:proxy-logging]',
    'use = egg:swift#proxy_logging',
    '',
    ...simpleFilters.flatMap((name) => [`[filter:${name}]`, `use = egg:swift#${name}`, '']),
  ].join('\n');
}

/**
 * Starts memcached and the Swift object, container, account and proxy servers on free loopback
 * ports with every file in one temp folder (tempauth user test:tester / testing, s3api on).
 */
export async function startSwift(): Promise<SwiftServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'swift-test-'));
  const processes: GroupProcess[] = [];
  const stopAll = async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await mkdir(path.join(dir, 'node', 'd1'), { recursive: true });
    const suffix = path.basename(dir);
    await writeFile(
      path.join(dir, 'swift.conf'),
      `[swift-hash]\nswift_hash_path_suffix = ${suffix}\nswift_hash_path_prefix = ${suffix}\n\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n`,
    );
    const logPort = await freePort();
    const serverPorts = new Map<string, number>();
    for (const kind of storageServers) serverPorts.set(kind, await freePort());
    // One ring per server kind, each a single device; the three are independent, so built side by side.
    await Promise.all(
      storageServers.map(async (kind) => {
        const port = serverPorts.get(kind)!;
        await writeFile(path.join(dir, `${kind}-server.conf`), storageServerConf(kind, dir, port, logPort));
        const builder = path.join(dir, `${kind}.builder`);
        await run('swift-ring-builder', [builder, 'create', '10', '1', '1']);
        await run('swift-ring-builder', [builder, 'add', `r1z1-127.0.0.1:${port}/d1`, '1']);
        await run('swift-ring-builder', [builder, 'rebalance']);
      }),
    );
    const memcachedPort = await freePort();
    const proxyPort = await freePort();
    await writeFile(path.join(dir, 'proxy-server.conf'), proxyServerConf(dir, proxyPort, memcachedPort, logPort));

    const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: dir };
    processes.push(new GroupProcess('memcached', 'memcached', ['-u', 'root', '-l', '127.0.0.1', '-p', String(memcachedPort), '-U', '0', '-m', '32'], env));
    for (const kind of storageServers) {
      processes.push(new GroupProcess(`swift-${kind}-server`, `swift-${kind}-server`, [path.join(dir, `${kind}-server.conf`), '-v'], env));
    }
    processes.push(new GroupProcess('swift-proxy-server', 'swift-proxy-server', [path.join(dir, 'proxy-server.conf'), '-v'], env));

    const endpoint = `http://127.0.0.1:${proxyPort}`;
    await waitUntil('swift', processes, async () => {
      const ports = [memcachedPort, ...serverPorts.values()];
      const listening = await Promise.all(ports.map(portAccepts));
      if (!listening.every(Boolean)) return false;
      return (await httpCall(`${endpoint}/healthcheck`, 'GET').catch(() => undefined))?.status === 200;
    });

    const authUrl = `${endpoint}/auth/v1.0`;
    const token = async () => {
      const res = await httpCall(authUrl, 'GET', { 'X-Auth-User': swiftUser, 'X-Auth-Key': swiftKey });
      const value = res.headers['x-auth-token'];
      if (res.status !== 200 || typeof value !== 'string') throw new Error(`swift auth failed: ${res.status} ${res.body.toString()}`);
      return value;
    };
    const storageUrl = `${endpoint}/v1/AUTH_test`;
    const swiftApi = async (method: string, suffix: string) => {
      const res = await httpCall(`${storageUrl}${suffix}`, method, { 'X-Auth-Token': await token() });
      if (res.status >= 300) throw new Error(`swift ${method} ${suffix}: ${res.status} ${res.body.toString()}`);
      return res;
    };
    const server: SwiftServer = {
      endpoint,
      authUrl,
      user: swiftUser,
      key: swiftKey,
      storageUrl,
      token,
      async createContainer(name) {
        await swiftApi('PUT', `/${encodeURIComponent(name)}`);
      },
      async listContainers() {
        const res = await swiftApi('GET', '?format=json');
        return res.status === 204 ? [] : (JSON.parse(res.body.toString()) as { name: string }[]).map((c) => c.name);
      },
      async listObjects(container, prefix = '') {
        const objects: SwiftObject[] = [];
        // Listings come in pages of at most 10000 names.
        for (let marker = ''; ; ) {
          const query = new URLSearchParams({ format: 'json', prefix, marker });
          const res = await swiftApi('GET', `/${encodeURIComponent(container)}?${query}`);
          const page = res.status === 204 ? [] : (JSON.parse(res.body.toString()) as SwiftObject[]);
          objects.push(...page.map(({ name, bytes }) => ({ name, bytes })));
          if (page.length === 0) return objects;
          marker = page[page.length - 1]!.name;
        }
      },
      async headObject(container, name) {
        const encoded = name.split('/').map(encodeURIComponent).join('/');
        return (await swiftApi('HEAD', `/${encodeURIComponent(container)}/${encoded}`)).headers;
      },
      stop: stopAll,
    };
    // The account is created on first use; make sure the whole chain answers before anyone relies on it.
    await waitUntil('swift account', processes, async () => (await server.listContainers().catch(() => undefined)) !== undefined);
    return server;
  } catch (error) {
    await stopAll();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// The compose files, rendered by compose itself.

let composeCommand: Promise<string[] | undefined> | undefined;

/** `docker compose` (the plugin) when it works, else Debian's `docker-compose`; undefined if neither. */
export function findComposeCommand(): Promise<string[] | undefined> {
  composeCommand ??= (async () => {
    for (const candidate of [['docker', 'compose'], ['docker-compose']]) {
      const works = await new Promise<boolean>((resolve) => {
        execFile(candidate[0]!, [...candidate.slice(1), 'version'], (error) => resolve(!error));
      });
      if (works) return candidate;
    }
    return undefined;
  })();
  return composeCommand;
}

export interface ComposeRun {
  ok: boolean;
  stdout: string;
  stderr: string;
}

/**
 * Runs `compose -f FILE... --env-file ENV_FILE ARGS` in the project folder with an environment
 * holding only PATH, so variables of the machine running the tests cannot change the result.
 */
export async function runCompose(options: { files: string[]; envFile: string; args: string[]; home: string }): Promise<ComposeRun> {
  const compose = await findComposeCommand();
  if (!compose) throw new Error('neither `docker compose` nor `docker-compose` works here: install Debian\'s docker-compose package (scripts/setup.sh --test does)');
  const args = [...compose.slice(1), '--project-directory', projectRoot, ...options.files.flatMap((file) => ['-f', path.join(projectRoot, file)]), '--env-file', options.envFile, ...options.args];
  return new Promise((resolve) => {
    execFile(compose[0]!, args, { cwd: projectRoot, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: options.home } }, (error, stdout, stderr) => {
      resolve({ ok: !error, stdout, stderr });
    });
  });
}

/** The compose model as `compose config` prints it (only the parts tests read). */
export interface ComposeModel {
  services: Record<string, ComposeService>;
  networks?: Record<string, { internal?: boolean } | null>;
  volumes?: Record<string, unknown>;
}

export interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: (string | { target: number; published?: number | string; host_ip?: string })[];
  expose?: (string | number)[];
  networks?: Record<string, unknown> | string[];
  network_mode?: string;
  profiles?: string[];
  user?: string;
  volumes?: (string | { type: string; source?: string; target: string; read_only?: boolean })[];
}

/** Renders the compose files with an env file; throws with compose's message if it refuses them. */
export async function renderCompose(options: { files: string[]; envFile: string; home: string }): Promise<ComposeModel> {
  const result = await runCompose({ ...options, args: ['config'] });
  if (!result.ok) throw new Error(`compose config failed: ${result.stderr.trim()}`);
  return parseYaml(result.stdout) as ComposeModel;
}

/** A service's environment as name -> value, whichever form compose printed it in. */
export function serviceEnvironment(service: ComposeService): Record<string, string> {
  const environment = service.environment ?? {};
  if (Array.isArray(environment)) {
    return Object.fromEntries(environment.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
  }
  return Object.fromEntries(Object.entries(environment).map(([name, value]) => [name, value === null ? '' : String(value)]));
}

export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

/** A service's volumes as source/target/read-only, whichever form compose printed them in. */
export function serviceMounts(service: ComposeService): Mount[] {
  return (service.volumes ?? []).map((volume) => {
    if (typeof volume !== 'string') return { source: volume.source ?? '', target: volume.target, readOnly: volume.read_only === true };
    const [source = '', target = '', mode = 'rw'] = volume.split(':');
    return { source, target, readOnly: mode.split(',').includes('ro') };
  });
}

/**
 * The text of .env.example with `values` filled in: an existing `NAME=` line (or a commented
 * `# NAME=` one) takes the value, names the example lacks are appended.
 */
export async function envFileFromExample(values: Record<string, string>): Promise<string> {
  const lines = (await readFile(path.join(projectRoot, '.env.example'), 'utf8')).split('\n');
  const pending = new Map(Object.entries(values));
  const filled = lines.map((line) => {
    const name = /^(?:#\s*)?([A-Z][A-Z0-9_]*)=/.exec(line)?.[1];
    if (name === undefined || !pending.has(name)) return line;
    const value = pending.get(name)!;
    pending.delete(name);
    return `${name}=${value}`;
  });
  for (const [name, value] of pending) filled.push(`${name}=${value}`);
  return filled.join('\n');
}

// ---------------------------------------------------------------------------------------------
// The registry as the compose `registry` service runs it.

export interface ComposeRegistry {
  url: string;
  process: GroupProcess;
  stop(): Promise<void>;
}

function answersAsRegistry(url: string): Promise<boolean> {
  return httpCall(`${url}/v2/`, 'GET').then(
    (res) => res.headers['docker-distribution-api-version'] !== undefined,
    () => false,
  );
}

/**
 * Runs `docker-registry serve CONFIG` with exactly the environment compose gives the registry
 * service, plus REGISTRY_HTTP_ADDR to listen on a loopback port instead of the container's :5000.
 * Nothing else from this machine's environment reaches it.
 */
export async function startComposeRegistry(options: { binary?: string; configFile: string; environment: Record<string, string> }): Promise<ComposeRegistry> {
  const port = await freePort();
  const env = { ...options.environment, REGISTRY_HTTP_ADDR: `127.0.0.1:${port}` };
  const child = new GroupProcess('docker-registry', options.binary ?? '/usr/bin/docker-registry', ['serve', options.configFile], env);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitUntil('registry', [child], () => answersAsRegistry(url));
  } catch (error) {
    await child.stop();
    throw error;
  }
  return { url, process: child, stop: () => child.stop() };
}
