// What the clients talk to: the registry alone, the registry's own TLS, nginx with the registry docs' recipe, and `gateway serve`, each a separate process on loopback.

import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { stringify as toYaml } from 'yaml';
import { RegistryProcess } from '../src/registry/registry-process.js';
import { registryConfig } from '../src/registry/registry-setup.js';
import { freePort } from '../test/helpers/ports.js';
import { httpsGet, run, stopChild, track, waitUntil, watchOutput, type Teardown } from './support.js';

export const registryBinary = '/usr/bin/docker-registry';
const cliPath = fileURLToPath(new URL('../src/cli.js', import.meta.url));
export const benchUser = 'bench';
/** The first gateway start generates a CA, a server certificate and a token key. */
const startTimeoutMs = 120_000;

export type FrontKind = 'direct' | 'registry-tls' | 'nginx' | 'gateway';

/** One way to reach the registry. */
export interface Front {
  /** Its label in the report: `direct`, `registry TLS`, `nginx 2w`, `gateway 1w`. */
  name: string;
  kind: FrontKind;
  /** Worker processes (nginx, gateway); 1 for the registry. */
  workers: number;
  /** HOST:PORT as skopeo names it (localhost, which the certificate names). */
  host: string;
  /** Base URL for curl and ab. */
  url: string;
  tls: boolean;
  /** The process whose tree is measured (the registry itself for `direct`). */
  pid: number | undefined;
  /** Gateways only: their authentication mode. */
  auth?: 'token' | 'basic';
  stop(): Promise<void>;
}

/** Files every TLS front serves: the gateway's generated certificate, trusted through its CA. */
export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

export function tlsFilesOf(gatewayDir: string): TlsFiles {
  return { ca: path.join(gatewayDir, 'certs', 'ca.crt'), cert: path.join(gatewayDir, 'certs', 'server.crt'), key: path.join(gatewayDir, 'certs', 'server.key') };
}

/** `gateway user add bench --password-stdin`, in the gateway's folder. */
export async function addGatewayUser(cwd: string, password: string): Promise<void> {
  await run(process.execPath, [cliPath, 'user', 'add', benchUser, '--password-stdin', '--htpasswd', 'htpasswd/htpasswd'], { cwd, stdin: `${password}\n` });
}

/** The plain-HTTP registry the other fronts stand in front of; `direct` is the front that is the registry itself. */
export async function startRegistry(dataDir: string, logger: Logger, teardown: Teardown): Promise<{ registry: RegistryProcess; direct: Front }> {
  // At info the registry prints a line per request, which this process would parse while it measures.
  const registry = new RegistryProcess({ binary: registryBinary, dataDir, logger, extraConfig: { log: { level: 'warn' } } });
  teardown.add('stop the registry', () => registry.stop());
  await registry.start();
  const host = new URL(registry.url).host;
  return { registry, direct: { name: 'direct', kind: 'direct', workers: 1, host, url: registry.url, tls: false, pid: registry.pid, stop: () => registry.stop() } };
}

/** The same storage served by a second registry process with its own TLS (distribution's `http.tls`). */
export async function startRegistryTls(o: { dataDir: string; files: TlsFiles; teardown: Teardown }): Promise<Front> {
  const port = await freePort();
  const dir = path.join(o.dataDir, 'tls');
  await mkdir(dir, { recursive: true });
  const httpSecret = (await readFile(path.join(o.dataDir, 'http-secret'), 'utf8')).trim();
  const config = registryConfig({
    port,
    httpSecret,
    rootDirectory: path.join(o.dataDir, 'registry'),
    extraConfig: { log: { level: 'warn' }, http: { tls: { certificate: o.files.cert, key: o.files.key } } },
  });
  const configFile = path.join(dir, 'registry.yml');
  await writeFile(configFile, toYaml(config));
  const child = spawn(registryBinary, ['serve', configFile], { env: {}, stdio: ['ignore', 'pipe', 'pipe'] });
  const ended = track(child);
  let endedHow: string | undefined;
  void ended.then((how) => (endedHow = how));
  const tail: string[] = [];
  watchOutput(child, 'registry-tls', tail);
  const stop = () => stopChild(child, ended);
  o.teardown.add('stop the registry with TLS', stop);
  const ca = await readFile(o.files.ca);
  const url = `https://127.0.0.1:${port}`;
  await waitUntil('registry with TLS', 30_000, async () => (await httpsGet(`${url}/v2/`, ca)).status === 200, () => endedHow, tail);
  return { name: 'registry TLS', kind: 'registry-tls', workers: 1, host: `localhost:${port}`, url, tls: true, pid: child.pid, stop };
}

/** Environment for a gateway child: ours without stray GATEWAY_* settings, plus the given ones. */
function gatewayEnvironment(settings: Record<string, string>): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GATEWAY_')));
  return { ...inherited, ...settings };
}

/** `gateway serve` in `cwd` in front of `upstream` with GATEWAY_WORKERS=`workers`, on a free loopback port. */
export async function startGateway(o: { cwd: string; upstream: string; auth: 'token' | 'basic'; workers: number; teardown: Teardown }): Promise<Front> {
  const port = await freePort();
  const name = `gateway ${o.workers}w${o.auth === 'basic' ? ' basic' : ''}`;
  const env = gatewayEnvironment({
    GATEWAY_UPSTREAM: o.upstream,
    GATEWAY_LISTEN: `127.0.0.1:${port}`,
    GATEWAY_LOG_LEVEL: 'warn',
    GATEWAY_AUTH: o.auth,
    GATEWAY_WORKERS: String(o.workers),
    // Several gateways run at once: none takes the default metrics address.
    GATEWAY_METRICS_LISTEN: '',
    // Only shortens the stop at the end of the run; transfers are over by then.
    GATEWAY_SHUTDOWN_GRACE: '1',
  });
  const child = spawn(process.execPath, [cliPath, 'serve'], { cwd: o.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const ended = track(child);
  let endedHow: string | undefined;
  void ended.then((how) => (endedHow = how));
  const tail: string[] = [];
  watchOutput(child, name, tail);
  const url = `https://127.0.0.1:${port}`;
  const stop = () => stopChild(child, ended);
  o.teardown.add(`stop ${name}`, stop);
  const caPath = tlsFilesOf(o.cwd).ca;
  await waitUntil(name, startTimeoutMs, async () => (await httpsGet(`${url}/healthz`, await readFile(caPath))).status === 200, () => endedHow, tail);
  return { name, kind: 'gateway', workers: o.workers, host: `localhost:${port}`, url, tls: true, pid: child.pid, auth: o.auth, stop };
}

/**
 * nginx in front of the registry as the registry's docs configure it (TLS with their cipher list and
 * server preference, client_max_body_size 0, chunked_transfer_encoding on, the
 * Docker-Distribution-Api-Version header, HTTP/1.0 to the registry, so a connection per request),
 * with buffering off both ways; TLS 1.3 allowed as well, no auth, no access log; `workers` worker
 * processes.
 */
function nginxConfig(o: { prefix: string; port: number; upstream: string; files: TlsFiles; workers: number }): string {
  const temp = (name: string) => `${name}_temp_path ${path.join(o.prefix, 'temp', name)};`;
  return `worker_processes ${o.workers};
error_log ${path.join(o.prefix, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n  ')}
  upstream docker-registry {
    server ${o.upstream};
  }
  map $upstream_http_docker_distribution_api_version $docker_distribution_api_version {
    '' 'registry/2.0';
  }
  server {
    listen 127.0.0.1:${o.port} ssl;
    server_name localhost;
    ssl_certificate ${o.files.cert};
    ssl_certificate_key ${o.files.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers 'EECDH+AESGCM:EDH+AESGCM:AES256+EECDH:AES256+EDH';
    ssl_prefer_server_ciphers on;
    ssl_session_cache shared:SSL:10m;
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location /v2/ {
      add_header 'Docker-Distribution-Api-Version' $docker_distribution_api_version always;
      proxy_pass http://docker-registry;
      proxy_set_header Host $http_host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_read_timeout 900;
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`;
}

export async function startNginx(o: { workDir: string; upstream: string; files: TlsFiles; workers: number; teardown: Teardown }): Promise<Front> {
  const port = await freePort();
  const name = `nginx ${o.workers}w`;
  const prefix = path.join(o.workDir, `nginx-${port}`);
  await mkdir(path.join(prefix, 'temp'), { recursive: true });
  const conf = path.join(prefix, 'nginx.conf');
  await writeFile(conf, nginxConfig({ prefix, port, upstream: o.upstream, files: o.files, workers: o.workers }));
  const errorLog = path.join(prefix, 'error.log');
  const child = spawn('nginx', ['-p', prefix, '-e', errorLog, '-c', conf, '-g', `daemon off; pid ${path.join(prefix, 'nginx.pid')};`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const ended = track(child);
  let endedHow: string | undefined;
  void ended.then((how) => (endedHow = how));
  const tail: string[] = [];
  watchOutput(child, name, tail);
  // SIGQUIT: nginx's graceful stop.
  const stop = () => stopChild(child, ended, 'SIGQUIT');
  o.teardown.add(`stop ${name}`, stop);
  const ca = await readFile(o.files.ca);
  const url = `https://127.0.0.1:${port}`;
  const logTail = async () => (await readFile(errorLog, 'utf8').catch(() => '')).split('\n').slice(-10);
  try {
    await waitUntil(name, 30_000, async () => (await httpsGet(`${url}/v2/`, ca)).status === 200, () => endedHow, tail);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${(await logTail()).join('\n')}`);
  }
  return { name, kind: 'nginx', workers: o.workers, host: `localhost:${port}`, url, tls: true, pid: child.pid, stop };
}
