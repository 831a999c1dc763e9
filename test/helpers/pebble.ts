// Runs Debian's pebble (a test ACME CA) and pebble-challtestsrv (its mock DNS) on free loopback ports, for ACME issuance tests.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { requireCommand } from './clients.js';
import { freePort } from './ports.js';

export interface PebbleOptions {
  /** The port pebble's validator connects to for http-01 on the address a name resolves to (default: a free port). */
  httpPort?: number;
  /** The port pebble's validator connects to for tls-alpn-01 (default: a free port). */
  tlsPort?: number;
  /** The address every name resolves to unless addA() says otherwise (default 127.0.0.1). */
  defaultIPv4?: string;
  /** Lifetime of issued certificates in seconds (pebble's certificateValidityPeriod; pebble's own default is 5 years). */
  certificateValiditySeconds?: number;
  /** Intermediates between leaf and root (PEBBLE_CHAIN_LENGTH; 1, the default, is leaf + one intermediate). */
  chainLength?: number;
  /** Every challenge passes without a validation request (PEBBLE_VA_ALWAYS_VALID=1); default false. */
  alwaysValid?: boolean;
  /** Percent of good nonces refused with badNonce (PEBBLE_WFE_NONCEREJECT; pebble's default is 5, here 0). */
  nonceRejectPercent?: number;
}

export interface RunningPebble {
  /** https://127.0.0.1:PORT/dir */
  directoryUrl: string;
  /** https://127.0.0.1:PORT of pebble's management API (roots, intermediates, cert status). */
  managementUrl: string;
  /** PEM of the CA that signed the certificate of pebble's own HTTPS listeners (not the issuing root). */
  caBundle: string;
  /** The ports validation connects to, as configured. */
  httpPort: number;
  tlsPort: number;
  /** 127.0.0.1:PORT of the mock DNS server pebble resolves names with (UDP and TCP). */
  dnsServer: string;
  /** PEM of the root that issued certificates chain to; pebble makes a new one at every start. */
  root(): Promise<string>;
  /** PEM of the intermediate that signs leaf certificates. */
  intermediate(): Promise<string>;
  /** Answer A queries for names without an explicit record with `ip` ('' answers none). */
  setDefaultIPv4(ip: string): Promise<void>;
  /** Answer A queries for `host` with `addresses` instead of the default. */
  addA(host: string, addresses: string | string[]): Promise<void>;
  clearA(host: string): Promise<void>;
  /** Answer every query for `host` with SERVFAIL. */
  setServfail(host: string): Promise<void>;
  clearServfail(host: string): Promise<void>;
  /** The temp folder with the config and the listener certificate; stop() removes it. */
  dir: string;
  /** How many orders pebble has accepted since it started ("Added order" in its log). */
  ordersAdded(): number;
  /** The last lines both processes printed, for failure messages. */
  describe(): string;
  stop(): Promise<void>;
}

const startTimeoutMs = 15_000;
const stopTimeoutMs = 5_000;
const outputLinesKept = 60;
/** What pebble logs for each new order (wfe: "Added order \"…\" to the db"). */
const ORDER_ADDED = 'Added order';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Process groups still running: killed if the test process exits without stopping them. */
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

/** A child in its own process group whose last output lines are kept. */
class Child {
  readonly name: string;
  readonly #child: ChildProcess;
  readonly #output: string[] = [];
  readonly #exited: Promise<void>;
  readonly #counted: { pattern: string; count: number }[];
  #exit: string | undefined;

  constructor(name: string, command: string, args: string[], env: NodeJS.ProcessEnv, cwd: string, counted: string[] = []) {
    this.#counted = counted.map((pattern) => ({ pattern, count: 0 }));
    this.name = name;
    this.#child = spawn(command, args, { env, cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const pid = this.#child.pid;
    if (pid !== undefined) trackGroup(pid);
    for (const stream of [this.#child.stdout!, this.#child.stderr!]) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        this.#output.push(line);
        for (const counter of this.#counted) if (line.includes(counter.pattern)) counter.count += 1;
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

  get exit(): string | undefined {
    return this.#exit;
  }

  /** Lines seen so far that contain `pattern` (one of those given at construction). */
  count(pattern: string): number {
    return this.#counted.find((counter) => counter.pattern === pattern)?.count ?? 0;
  }

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
    // A cleared timer, so a prompt exit leaves nothing that keeps the test process alive.
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.#exited.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), stopTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) signalGroup('SIGKILL');
    await this.#exited;
  }
}

/** Polls `ready` every 50 ms until it is true, failing early (with their output) if a process exits. */
async function waitUntil(what: string, children: Child[], ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + startTimeoutMs;
  while (Date.now() < deadline) {
    const dead = children.find((child) => child.exit !== undefined);
    if (dead) throw new Error(`${what}: ${dead.describe()}`);
    if (await ready().catch(() => false)) return;
    await sleep(50);
  }
  throw new Error(`${what}: not ready within ${startTimeoutMs} ms\n${children.map((child) => child.describe()).join('\n')}`);
}

function run(command: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd }, (error, _stdout, stderr) => (error ? reject(new Error(`${command} ${args[0]} failed: ${stderr.trim() || error.message}`)) : resolve()));
  });
}

/**
 * A CA and a certificate for 127.0.0.1 and localhost signed by it, both P-256, for pebble's own
 * listeners (Debian's package ships none of upstream's test certificates).
 */
async function makeListenerCertificate(dir: string): Promise<void> {
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=pebble listener test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
  ], dir);
  // `req -x509 -CA` (OpenSSL 3) signs the new certificate with the CA instead of self-signing it.
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-CA', 'ca.pem', '-CAkey', 'ca-key.pem',
    '-keyout', 'listener-key.pem', '-out', 'listener.pem', '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-addext', 'basicConstraints=critical,CA:FALSE',
    '-addext', 'extendedKeyUsage=serverAuth',
  ], dir);
}

interface Reply {
  status: number;
  body: string;
}

/** A GET over HTTPS trusting `ca` alone, on a connection of its own (no shared agent). */
function httpsGet(url: string, ca: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, agent: false, timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** A JSON POST to challtestsrv's plain-HTTP management API. */
function postJson(url: string, body: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = httpRequest(url, { method: 'POST', agent: false, timeout: 5_000, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`POST ${url} timed out`)));
    req.on('error', reject);
    req.end(data);
  });
}

/** True once the mock DNS server answers an A query on `port`. */
async function dnsAnswers(port: number): Promise<boolean> {
  const resolver = new Resolver({ timeout: 200, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  try {
    await resolver.resolve4('readiness-probe.test');
    return true;
  } catch (error) {
    // ENODATA is an answer too (the default IPv4 may be switched off).
    return (error as NodeJS.ErrnoException).code === 'ENODATA';
  } finally {
    resolver.cancel();
  }
}

/**
 * Starts pebble-challtestsrv (mock DNS only: every name resolves to `defaultIPv4`, no AAAA) and
 * pebble resolving through it, both on free 127.0.0.1 ports, with every file in one temp folder
 * that stop() removes. Validation is real (no random sleeps, no nonce rejection, no authorization
 * reuse), so a test answers the challenges itself on `httpPort` / `tlsPort`.
 */
export async function startPebble(options: PebbleOptions = {}): Promise<RunningPebble> {
  await requireCommand('pebble', 'pebble');
  await requireCommand('pebble-challtestsrv', 'pebble');
  await requireCommand('openssl', 'openssl');

  const dir = await mkdtemp(path.join(os.tmpdir(), 'pebble-test-'));
  const children: Child[] = [];
  const stop = async () => {
    await Promise.all(children.map((child) => child.stop()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await makeListenerCertificate(dir);
    const caBundle = await readFile(path.join(dir, 'ca.pem'), 'utf8');
    const [dnsPort, dnsManagementPort, acmePort, managementPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const httpPort = options.httpPort ?? (await freePort());
    const tlsPort = options.tlsPort ?? (await freePort());

    const config = {
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: path.join(dir, 'listener.pem'),
        privateKey: path.join(dir, 'listener-key.pem'),
        httpPort,
        tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        ...(options.certificateValiditySeconds === undefined ? {} : { certificateValidityPeriod: options.certificateValiditySeconds }),
      },
    };
    const configPath = path.join(dir, 'pebble-config.json');
    await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`);

    // Only PATH and HOME: no proxy or resolver variables of the machine reach the validator.
    const baseEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: dir };
    const challtestsrv = new Child('pebble-challtestsrv', 'pebble-challtestsrv', [
      '-dns01', `127.0.0.1:${dnsPort}`,
      '-management', `127.0.0.1:${dnsManagementPort}`,
      // Its own challenge responders stay off: they would bind :5001-5003 on every interface.
      '-http01', '', '-https01', '', '-tlsalpn01', '',
      '-defaultIPv4', options.defaultIPv4 ?? '127.0.0.1',
      // No AAAA answers, so validation never tries ::1 where the test servers do not listen.
      '-defaultIPv6', '',
    ], baseEnv, dir);
    children.push(challtestsrv);
    const dnsManagementUrl = `http://127.0.0.1:${dnsManagementPort}`;
    await waitUntil('pebble-challtestsrv', children, async () => {
      if (!(await dnsAnswers(dnsPort))) return false;
      // The management server answers once its handlers are registered.
      return (await postJson(`${dnsManagementUrl}/clear-a`, { host: 'readiness-probe.test' })).status === 200;
    });

    const pebbleEnv = {
      ...baseEnv,
      PEBBLE_VA_NOSLEEP: '1',
      PEBBLE_VA_ALWAYS_VALID: options.alwaysValid ? '1' : '0',
      PEBBLE_WFE_NONCEREJECT: String(options.nonceRejectPercent ?? 0),
      PEBBLE_AUTHZREUSE: '0',
      ...(options.chainLength === undefined ? {} : { PEBBLE_CHAIN_LENGTH: String(options.chainLength) }),
    };
    const pebble = new Child('pebble', 'pebble', ['-config', configPath, '-dnsserver', `127.0.0.1:${dnsPort}`, '-strict=false'], pebbleEnv, dir, [ORDER_ADDED]);
    children.push(pebble);
    const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
    const managementUrl = `https://127.0.0.1:${managementPort}`;
    await waitUntil('pebble', children, async () => {
      const directory = await httpsGet(directoryUrl, caBundle);
      if (directory.status !== 200 || !directory.body.includes('newNonce')) return false;
      return (await httpsGet(`${managementUrl}/roots/0`, caBundle)).status === 200;
    });

    const managementPem = async (what: string) => {
      const reply = await httpsGet(`${managementUrl}/${what}`, caBundle);
      if (reply.status !== 200 || !reply.body.includes('BEGIN CERTIFICATE')) throw new Error(`pebble GET /${what}: ${reply.status} ${reply.body.slice(0, 200)}`);
      return reply.body;
    };
    const dnsCall = async (endpoint: string, body: unknown) => {
      const reply = await postJson(`${dnsManagementUrl}/${endpoint}`, body);
      if (reply.status !== 200) throw new Error(`pebble-challtestsrv ${endpoint}: ${reply.status} ${reply.body.trim()}`);
    };
    return {
      directoryUrl,
      managementUrl,
      caBundle,
      httpPort,
      tlsPort,
      dnsServer: `127.0.0.1:${dnsPort}`,
      root: () => managementPem('roots/0'),
      intermediate: () => managementPem('intermediates/0'),
      setDefaultIPv4: (ip) => dnsCall('set-default-ipv4', { ip }),
      addA: (host, addresses) => dnsCall('add-a', { host, addresses: typeof addresses === 'string' ? [addresses] : addresses }),
      clearA: (host) => dnsCall('clear-a', { host }),
      setServfail: (host) => dnsCall('set-servfail', { host }),
      clearServfail: (host) => dnsCall('clear-servfail', { host }),
      dir,
      ordersAdded: () => pebble.count(ORDER_ADDED),
      describe: () => children.map((child) => child.describe()).join('\n'),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
