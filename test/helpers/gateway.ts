// Starts a real gateway in-process in a temp folder, in front of a real registry process, for integration tests.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/config.js';
import { startGateway, type GatewayOptions, type RunningGateway } from '../../src/gateway.js';
import { addUser } from '../../src/auth/htpasswd.js';
import { RegistryProcess } from '../../src/registry/registry-process.js';

export interface TestGateway {
  dir: string;
  /** HOST:PORT as clients name it (localhost, so the certificate's DNS SAN is what gets checked). */
  host: string;
  url: string;
  /** A folder holding only ca.crt, for skopeo --cert-dir. */
  certDir: string;
  ca: Buffer;
  htpasswd: string;
  gateway: RunningGateway;
  registry: RegistryProcess | undefined;
  /** Every JSON log line the gateway wrote. */
  logLines: string[];
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  auth?: 'token' | 'basic';
  /** Start no registry of our own and point at this upstream instead. */
  upstream?: string;
  users?: Record<string, string>;
  /** Contents of access.yml, written before the gateway starts. */
  access?: string;
  /** A YAML settings file (e.g. with a `providers:` section), written as gateway.yaml in the test folder; variables still win. */
  config?: string;
  env?: Record<string, string>;
  /** Hooks of the running gateway (ACME retry timing and clock). */
  gatewayOptions?: Pick<GatewayOptions, 'acmeRetryMs' | 'acmeMaxRetryMs' | 'acmeNow'>;
}

export async function startTestGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-test-'));
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logLines.push(...chunk.toString('utf8').split('\n').filter((line) => line.length > 0));
      callback();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const htpasswd = path.join(dir, 'htpasswd', 'htpasswd');
  if (options.access !== undefined) {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path.join(dir, 'access.yml'), options.access);
  }
  for (const [user, password] of Object.entries(options.users ?? { alice: 'alice-password' })) {
    await addUser(htpasswd, user, password, 5);
  }

  let registry: RegistryProcess | undefined;
  let upstream = options.upstream;
  if (upstream === undefined) {
    registry = new RegistryProcess({ binary: '/usr/bin/docker-registry', dataDir: path.join(dir, 'registry-data'), logger: logger.child({ component: 'registry' }) });
    await registry.start();
    upstream = registry.url;
  }
  const env: Record<string, string> = {
    GATEWAY_LISTEN: '127.0.0.1:0',
    GATEWAY_UPSTREAM: upstream,
    GATEWAY_AUTH: options.auth ?? 'token',
    GATEWAY_SHUTDOWN_GRACE: '1',
    ...options.env,
  };
  let file: string | undefined;
  if (options.config !== undefined) {
    file = path.join(dir, 'gateway.yaml');
    await (await import('node:fs/promises')).writeFile(file, options.config);
  }
  const { config } = loadConfig({ env, cwd: dir, file });
  let gateway: RunningGateway;
  try {
    gateway = await startGateway(config, { logger, env: process.env, announce: () => {}, ...options.gatewayOptions });
  } catch (error) {
    await registry?.stop();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const certDir = path.join(dir, 'client-certs');
  // The local CA beside the server certificate (tls_cert may point outside the test folder).
  const ca = await readFile(path.join(path.dirname(config.tlsCert), 'ca.crt'));
  const { mkdir, writeFile } = await import('node:fs/promises');
  await mkdir(certDir, { recursive: true });
  await writeFile(path.join(certDir, 'ca.crt'), ca);
  const host = `localhost:${gateway.port}`;
  return {
    dir,
    host,
    url: `https://${host}`,
    certDir,
    ca,
    htpasswd,
    gateway,
    registry,
    logLines,
    async close() {
      await gateway.close();
      await registry?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json(): any;
}

/** One HTTPS request that trusts only the test CA; `target` is sent byte for byte. */
export function request(gw: Pick<TestGateway, 'host' | 'ca'>, method: string, target: string, options: { headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<RawResponse> {
  const [hostname, port] = gw.host.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = https.request({ hostname, port: Number(port), method, path: target, ca: gw.ca, headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** Gets an access token the way docker does (GET /token with Basic credentials). */
export async function fetchToken(gw: TestGateway, user: string, password: string, scopes: string[]): Promise<string> {
  const query = new URLSearchParams({ service: 'registry-gateway' });
  for (const scope of scopes) query.append('scope', scope);
  const res = await request(gw, 'GET', `/token?${query}`, { headers: { Authorization: basic(user, password) } });
  if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${res.body}`);
  return res.json().token as string;
}
