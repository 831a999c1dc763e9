// The settings table: each setting's YAML key, variable, default (written only here), meaning and value schema.

import net from 'node:net';
import os from 'node:os';
import { Cron } from 'croner';
import { z } from 'zod';
import { ConfigError } from '../errors.js';

export interface ListenAddress {
  host: string;
  port: number;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

interface SettingSpec<S extends z.ZodType = z.ZodType> {
  env: string;
  /** The default in effect, as it would be written in the YAML file; absent when it is worked out at run time. */
  default?: z.input<S>;
  /** Markdown saying what applies when there is no literal default. */
  defaultText?: string;
  /** A path: relative values are taken from the file's folder (YAML) or the current folder (variables, default). */
  isPath?: boolean;
  /** Markdown, one line: the README table shows it as is, --help without the backticks. */
  description: string;
  /** An empty variable is a value (off), not "unset, use the default" as for every other variable. */
  emptyMeansOff?: boolean;
  /** Checks and converts the raw value: a string from a variable, any YAML value from the file. */
  schema: S;
}

function setting<S extends z.ZodType>(spec: SettingSpec<S>): SettingSpec<S> {
  return spec;
}

/** The reason `value` is no listen address, or the address. */
function listenAddress(value: string): ListenAddress | string {
  const bare = /^\d+$/.exec(value);
  const match = bare ? ['', '0.0.0.0', value] : /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d+)$/.exec(value);
  if (!match) return `"${value}" is not HOST:PORT, [IPv6]:PORT or PORT`;
  const host = bare ? '0.0.0.0' : (match[1] ?? match[2] ?? '') || '0.0.0.0';
  const port = Number(bare ? value : match[3]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return `port ${port} is out of range`;
  if (net.isIP(host) === 0 && !/^[a-zA-Z0-9.-]+$/.test(host)) return `"${host}" is not a host name or IP address`;
  return { host, port };
}

/** The reason `value` is no origin of the given schemes, or the URL. */
function origin(value: string, protocols: string[], example: string, shape: string): URL | string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `"${value}" is not a URL (expected e.g. ${example})`;
  }
  if (!protocols.includes(url.protocol)) {
    return protocols.length === 1 ? 'must be an https:// URL: registry clients only send credentials over TLS' : 'must be an http:// or https:// URL';
  }
  if (url.pathname !== '/' || url.search || url.hash || url.username || url.password) return shape;
  return url;
}

function upstreams(value: string | string[] | null | undefined): URL[] | string {
  const items = (Array.isArray(value) ? value : (value ?? '').split(',')).map((item) => item.trim()).filter((item) => item.length > 0);
  const urls: URL[] = [];
  for (const item of items) {
    const url = origin(item, ['http:', 'https:'], 'http://registry:5000', 'must be an origin only (scheme, host, port), with no path, query or credentials');
    if (typeof url === 'string') return url;
    urls.push(url);
  }
  if (new Set(urls.map((url) => url.origin)).size !== urls.length) return 'lists the same registry twice';
  return urls;
}

/** A DNS host name as ACME CAs issue for: letters, digits, hyphens, dots; no IP address, no wildcard. */
const HOST_NAME = /^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))+$/;

function domainList(value: string | string[] | undefined): string[] | undefined | string {
  if (value === undefined) return undefined;
  const items = (Array.isArray(value) ? value : value.split(',')).map((item) => String(item).trim().toLowerCase()).filter((item) => item.length > 0);
  if (items.length === 0) return undefined;
  for (const item of items) {
    if (net.isIP(item) !== 0) return `"${item}" is an IP address: ACME certificates here are for host names`;
    if (item.includes('*')) return `"${item}": wildcard names need the dns-01 challenge, which the gateway does not do`;
    if (!HOST_NAME.test(item)) return `"${item}" is not a fully qualified host name`;
  }
  return [...new Set(items)];
}

/** A cron expression croner accepts, or the reason it does not; empty means off. */
function cronSchedule(value: string | undefined): { schedule: string | undefined } | string {
  if (value === undefined || value.trim() === '') return { schedule: undefined };
  try {
    new Cron(value.trim(), { paused: true }).stop();
    return { schedule: value.trim() };
  } catch (error) {
    return `"${value}" is not a cron expression (${(error as Error).message}); e.g. "30 3 * * 0" for Sundays at 03:30`;
  }
}

/** A redis:// or rediss:// URL with a host and at most a database number as its path, or the reason it is not one. */
function redisUrl(value: string): { url: URL } | string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'is not a URL (expected e.g. redis://redis:6379)';
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return 'must be a redis:// or rediss:// URL';
  if (url.hostname === '') return 'must name a host, e.g. redis://redis:6379';
  if (!/^\/?(\d{1,2})?$/.test(url.pathname) || url.search || url.hash) return 'may have a database number as its path (redis://HOST:PORT/0), nothing else';
  try {
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
  } catch {
    return 'has a user or password that is not properly percent-encoded';
  }
  return { url };
}

/** Exact origins (scheme, host, port) as browsers send them in Origin; no wildcard. */
function corsOrigins(value: string | string[] | undefined): string[] | string {
  const items = (Array.isArray(value) ? value : (value ?? '').split(',')).map((item) => String(item).trim()).filter((item) => item.length > 0);
  const result: string[] = [];
  for (const item of items) {
    if (item === '*' || item === 'null') return `"${item}" is not allowed: name each origin, e.g. https://ui.example.com`;
    const url = origin(item, ['http:', 'https:'], 'https://ui.example.com', `"${item}" must be an origin only (scheme, host, port), with no path, query or credentials`);
    if (typeof url === 'string') return url;
    result.push(url.origin);
  }
  return [...new Set(result)];
}

function httpsUrl(value: string): URL | string {
  try {
    const url = new URL(value);
    return url.protocol === 'https:' ? url : 'must be an https:// URL';
  } catch {
    return `"${value}" is not a URL`;
  }
}

/** Turns a checker's string answer into a zod issue, so one message reaches the user whichever way it failed. */
function checked<T>(check: (value: never) => T | string) {
  return (value: unknown, context: z.RefinementCtx): T => {
    const result = check(value as never);
    if (typeof result === 'string') {
      context.addIssue({ code: 'custom', message: result });
      return z.NEVER;
    }
    return result;
  };
}

function wholeNumber(min: number, max: number) {
  const message = `must be a whole number from ${min} to ${max}`;
  return z
    .union([z.number(), z.string().regex(/^\s*\d+\s*$/, message).transform(Number)], message)
    .pipe(z.number().int(message).min(min, message).max(max, message));
}

/** GATEWAY_WORKERS when not given: one per core, at most 8 (beyond, the per-process memory buys little). */
export function defaultWorkers(): number {
  return Math.min(os.availableParallelism(), 8);
}

const text = (message = 'must be text') => z.string(message);
const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Every setting, in the order --help and the README list them. */
export const settingTable = {
  listen: setting({
    env: 'GATEWAY_LISTEN',
    default: '0.0.0.0:5443',
    description: 'address the HTTPS server listens on (`HOST:PORT`, `[IPv6]:PORT`, `PORT`)',
    schema: z.union([z.string(), z.number()], 'must be HOST:PORT, [IPv6]:PORT or PORT').transform(checked((value: string | number) => listenAddress(String(value)))),
  }),
  upstream: setting({
    env: 'GATEWAY_UPSTREAM',
    defaultText: 'embedded registry',
    description:
      'backend registry URL, e.g. `http://registry:5000`, or several separated by commas (a list in YAML); unset: the gateway runs the registry binary itself with storage under `data_dir`',
    schema: z.union([z.string(), z.array(z.string())], 'must be a URL or a list of URLs').nullish().transform(checked(upstreams)),
  }),
  tls_cert: setting({
    env: 'GATEWAY_TLS_CERT',
    default: 'certs/server.crt',
    isPath: true,
    description: 'server certificate (PEM, chain allowed); when neither it nor the key exists, both are generated with a local CA, as `gateway certs` does',
    schema: text(),
  }),
  tls_key: setting({ env: 'GATEWAY_TLS_KEY', default: 'certs/server.key', isPath: true, description: 'server private key (PEM)', schema: text() }),
  htpasswd: setting({
    env: 'GATEWAY_HTPASSWD',
    default: 'htpasswd/htpasswd',
    isPath: true,
    description: 'users (bcrypt htpasswd); created with an `admin` user when missing',
    schema: text(),
  }),
  access: setting({
    env: 'GATEWAY_ACCESS',
    defaultText: '`access.yml` beside `--config`, else in the current folder',
    isPath: true,
    description: 'access rules; without the file every authenticated user may do everything (when set, the file must exist)',
    schema: text().optional(),
  }),
  ci_tokens: setting({
    env: 'GATEWAY_CI_TOKENS',
    default: 'htpasswd/ci-tokens.json',
    isPath: true,
    description: 'CI tokens (`gateway token create`); hashes only',
    schema: text(),
  }),
  auth: setting({
    env: 'GATEWAY_AUTH',
    default: 'token',
    description: '`token`: Bearer tokens from `/token`; `basic`: Basic auth on every request',
    schema: z.enum(['token', 'basic'], 'must be "token" or "basic"'),
  }),
  public_url: setting({
    env: 'GATEWAY_PUBLIC_URL',
    defaultText: "from the request's `Host`",
    description: 'public `https://` origin: token realm and upload URLs',
    schema: text()
      .optional()
      .transform(
        checked((value: string | undefined) =>
          value ? origin(value, ['https:'], 'https://registry.example.com', 'must be an origin only (https://HOST[:PORT]), with no path') : undefined,
        ),
      ),
  }),
  service: setting({
    env: 'GATEWAY_SERVICE',
    default: 'registry-gateway',
    description: 'token service name (challenge `service`, token `aud`)',
    schema: text()
      .min(1, 'must not be empty')
      .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces or quotes')
      .refine((value) => !value.includes('"'), 'must not contain quotes'),
  }),
  token_ttl: setting({ env: 'GATEWAY_TOKEN_TTL', default: 900, description: 'access token lifetime, seconds (60 to 86400)', schema: wholeNumber(60, 86400) }),
  token_issuer: setting({ env: 'GATEWAY_TOKEN_ISSUER', default: 'registry-gateway', description: 'token issuer (`iss`)', schema: text().min(1, 'must not be empty') }),
  token_key: setting({
    env: 'GATEWAY_TOKEN_KEY',
    default: 'certs/token.key',
    isPath: true,
    description: 'token signing key (RSA or EC P-256 PEM); created with its certificate when both are missing',
    schema: text(),
  }),
  token_cert: setting({
    env: 'GATEWAY_TOKEN_CERT',
    default: 'certs/token.crt',
    isPath: true,
    description: "the signing key's certificate (sent as `x5c`)",
    schema: text(),
  }),
  registry_bin: setting({
    env: 'GATEWAY_REGISTRY_BIN',
    defaultText: '`docker-registry` or `registry` on `PATH`',
    isPath: true,
    description: 'registry binary for the embedded registry and for `gateway gc` (a bare name is looked up on `PATH`)',
    schema: text().optional(),
  }),
  data_dir: setting({
    env: 'GATEWAY_DATA_DIR',
    default: 'data',
    isPath: true,
    description: 'storage and config of the embedded registry; one gateway at a time (it holds `data_dir/gateway.lock`)',
    schema: text(),
  }),
  log_level: setting({
    env: 'GATEWAY_LOG_LEVEL',
    default: 'info',
    description: '`fatal` … `trace`, or `silent`',
    schema: z.enum(logLevels, `must be one of ${logLevels.join(', ')}`),
  }),
  basic_cache_ttl: setting({
    env: 'GATEWAY_BASIC_CACHE_TTL',
    default: 60,
    description: 'seconds a successful password check is remembered (basic mode and `/token`, 0 to 3600); never outlives a password change',
    schema: wholeNumber(0, 3600),
  }),
  workers: setting({
    env: 'GATEWAY_WORKERS',
    defaultText: 'the number of CPU cores, at most 8',
    description:
      '`serve` only: processes that answer clients on the one port (1 to 64); `1` runs everything in one process. The embedded registry, `gc_schedule` and ACME orders run once, in the process that supervises them',
    schema: wholeNumber(1, 64).optional(),
  }),
  shutdown_grace: setting({
    env: 'GATEWAY_SHUTDOWN_GRACE',
    default: 25,
    description: 'seconds transfers may finish after SIGTERM (0 to 3600)',
    schema: wholeNumber(0, 3600),
  }),
  upstream_per_client: setting({
    env: 'GATEWAY_UPSTREAM_PER_CLIENT',
    default: 64,
    description:
      'registry requests one client address (IPv6: its /64) may have in flight at once (1 to 100000); more get 429. Behind an HTTP load balancer every client has its address: raise it',
    schema: wholeNumber(1, 100000),
  }),
  body_idle_timeout: setting({
    env: 'GATEWAY_BODY_IDLE_TIMEOUT',
    default: 60,
    description: 'seconds an upload may send nothing before the gateway closes it (1 to 3600); a slow upload that keeps moving is never cut',
    schema: wholeNumber(1, 3600),
  }),
  acme: setting({
    env: 'GATEWAY_ACME',
    default: 'off',
    description:
      '`on`: get and renew the server certificate from an ACME CA (Let\'s Encrypt by default) instead of the local CA; `tls_cert`/`tls_key` are then served only until the first ACME certificate arrives',
    schema: z
      .union([z.boolean(), z.enum(['on', 'off', 'true', 'false'])], 'must be "on" or "off"')
      .transform((value) => value === true || value === 'on' || value === 'true'),
  }),
  acme_domains: setting({
    env: 'GATEWAY_ACME_DOMAINS',
    defaultText: 'the host of `public_url`',
    description: 'host names the ACME certificate is for, separated by commas (a list in YAML); each must reach this gateway on port 443 (or 80 for `http-01`)',
    schema: z.union([z.string(), z.array(z.string())], 'must be host names separated by commas, or a list').optional().transform(checked(domainList)),
  }),
  acme_email: setting({
    env: 'GATEWAY_ACME_EMAIL',
    defaultText: 'none',
    description: 'contact address for the ACME account (expiry notices)',
    schema: text()
      .regex(/^[^\s@<>()",;:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/, 'must be an e-mail address like ops@example.com')
      .optional(),
  }),
  acme_directory: setting({
    env: 'GATEWAY_ACME_DIRECTORY',
    default: 'https://acme-v02.api.letsencrypt.org/directory',
    description: "ACME directory URL; Let's Encrypt staging: `https://acme-staging-v02.api.letsencrypt.org/directory`",
    schema: text().transform(checked((value: string) => httpsUrl(value))),
  }),
  acme_ca: setting({
    env: 'GATEWAY_ACME_CA',
    defaultText: 'system CAs',
    isPath: true,
    description: "extra CA bundle (PEM) trusted for the ACME server's own HTTPS, for a private ACME server",
    schema: text().optional(),
  }),
  acme_challenge: setting({
    env: 'GATEWAY_ACME_CHALLENGE',
    default: 'auto',
    description: '`tls-alpn-01` (on the HTTPS port), `http-01` (on `http_listen`), or `auto`: `http-01` when `http_listen` is set, else `tls-alpn-01`',
    schema: z.enum(['auto', 'tls-alpn-01', 'http-01'], 'must be auto, tls-alpn-01 or http-01'),
  }),
  http_listen: setting({
    env: 'GATEWAY_HTTP_LISTEN',
    defaultText: 'off',
    description: 'optional plain-HTTP listener (e.g. `0.0.0.0:80`): ACME `http-01` answers, and a redirect to https for everything else',
    schema: z
      .union([z.string(), z.number()], 'must be HOST:PORT, [IPv6]:PORT or PORT')
      .optional()
      .transform(checked((value: string | number | undefined) => (value === undefined || value === '' ? undefined : listenAddress(String(value))))),
  }),
  metrics_listen: setting({
    env: 'GATEWAY_METRICS_LISTEN',
    default: '127.0.0.1:9443',
    emptyMeansOff: true,
    description:
      'Prometheus metrics over plain HTTP, `GET /metrics` only, on this address; empty (the variable too) turns the listener off. Unauthenticated: keep it on loopback or an internal network',
    schema: z
      .union([z.string(), z.number()], 'must be HOST:PORT, [IPv6]:PORT, PORT or empty')
      .nullable()
      .transform(checked((value: string | number | null) => (value === null || value === '' ? undefined : listenAddress(String(value))))),
  }),
  metrics_repositories: setting({
    env: 'GATEWAY_METRICS_REPOSITORIES',
    default: 100,
    description:
      'repositories that get their own `repository` label on the push, pull and delete metrics (0 to 10000): the first seen since start; the rest are counted together as `(other)`',
    schema: wholeNumber(0, 10000),
  }),
  audit_log: setting({
    env: 'GATEWAY_AUDIT_LOG',
    defaultText: 'off',
    description:
      'audit trail, one JSON line per security event (pushes, deletes, refused tag moves, failed logins, denials, CI tokens, reloads, maintenance): a file (appended, 0600, reopened on SIGHUP), `stdout`, or syslog (RFC 5424 through `logger`): `syslog` (/dev/log), `syslog:/PATH` (another socket), `syslog://HOST[:PORT]` (UDP)',
    schema: text()
      .optional()
      .transform((value) => (value === '' ? undefined : value))
      .refine(
        (value) => value === undefined || !value.startsWith('syslog:') || /^syslog:(?:\/[^/].*|\/\/(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+)(?::\d{1,5})?)$/.test(value),
        'syslog targets are `syslog`, `syslog:/PATH/TO/SOCKET` or `syslog://HOST[:PORT]` (a file named so: `./syslog:...`)',
      ),
  }),
  maintenance_file: setting({
    env: 'GATEWAY_MAINTENANCE_FILE',
    default: 'maintenance/maintenance.json',
    isPath: true,
    description:
      'read-only maintenance switch (`gateway maintenance on`), watched by every gateway that shares it; each gateway reports in the folder `FILE.d/`, which it must be able to write',
    schema: text().min(1, 'must not be empty'),
  }),
  registry_config: setting({
    env: 'GATEWAY_REGISTRY_CONFIG',
    defaultText: 'the embedded registry\'s `data_dir/registry.yml`',
    isPath: true,
    description: "the registry's own config file, for `gateway gc` in front of a registry the gateway does not run (the collector runs `registry_bin garbage-collect` with it)",
    schema: text().optional(),
  }),
  gc_schedule: setting({
    env: 'GATEWAY_GC_SCHEDULE',
    defaultText: 'off',
    description: 'embedded registry only: when `serve` runs `gateway gc` itself, as a cron expression (5 fields, or 6 with seconds), e.g. `30 3 * * 0`; local time',
    schema: text().optional().transform(checked((value: string | undefined) => cronSchedule(value))),
  }),
  redis_url: setting({
    env: 'GATEWAY_REDIS_URL',
    defaultText: 'off: each gateway counts on its own',
    description:
      'Redis shared by several gateways (`redis://[USER:PASSWORD@]HOST[:PORT][/DB]`, `rediss://` for TLS): login-failure counts, token revocations and maintenance reach all of them at once; while it is away each gateway goes on alone',
    schema: text()
      .optional()
      .transform(checked((value: string | undefined) => (value === undefined || value.trim() === '' ? { url: undefined } : redisUrl(value.trim())))),
  }),
  redis_password_file: setting({
    env: 'GATEWAY_REDIS_PASSWORD_FILE',
    defaultText: 'the password in `redis_url`, if any',
    isPath: true,
    description: "file holding the Redis password (read at start; a trailing newline is ignored), instead of writing it in `redis_url`",
    schema: text().optional(),
  }),
  redis_prefix: setting({
    env: 'GATEWAY_REDIS_PREFIX',
    default: 'registry-gateway:',
    description: 'put before every Redis key and channel of this deployment, so that several deployments can share one Redis',
    schema: text().regex(/^[\x21-\x7e]{1,64}$/, 'must be 1 to 64 printable ASCII characters without spaces'),
  }),
  ui: setting({
    env: 'GATEWAY_UI',
    default: 'on',
    description:
      'the web pages at `/`: what you may pull (search, tags, manifests), deletes, sign-in with the `docker login` credentials, access tokens; `off`: `/` answers 404 (the OIDC sign-in at `/login` stays)',
    schema: z
      .union([z.boolean(), z.enum(['on', 'off', 'true', 'false'])], 'must be "on" or "off"')
      .transform((value) => value === true || value === 'on' || value === 'true'),
  }),
  cors_origins: setting({
    env: 'GATEWAY_CORS_ORIGINS',
    defaultText: 'none',
    description:
      'origins whose scripts may call `/v2/` and `/token` (a UI hosted elsewhere), exactly, separated by commas (a list in YAML), e.g. `https://ui.example.com`: their preflights are answered before authentication and `Docker-Content-Digest`, `WWW-Authenticate` and `Link` are exposed to them',
    schema: z.union([z.string(), z.array(z.string())], 'must be origins separated by commas, or a list').optional().transform(checked(corsOrigins)),
  }),
};

export type SettingKey = keyof typeof settingTable;
export type SettingValue<K extends SettingKey> = z.output<(typeof settingTable)[K]['schema']>;

export const settingKeys = Object.keys(settingTable) as SettingKey[];

/** The setting's name both ways, "GATEWAY_X (x)", so an error is found whichever way it was given. */
export function settingName(key: SettingKey): string {
  return `${settingTable[key].env} (${key})`;
}

/** The literal default of a setting, as written in the YAML file, if it has one. */
export function settingDefault(key: SettingKey): string | undefined {
  const value = (settingTable[key] as SettingSpec).default;
  return value === undefined ? undefined : String(value);
}

/** What applies when a setting is not given, as markdown: the literal default or its description. */
function defaultMarkdown(key: SettingKey): string {
  const literal = settingDefault(key);
  return literal === undefined ? (settingTable[key] as SettingSpec).defaultText ?? 'none' : `\`${literal}\``;
}

const plain = (markdown: string) => markdown.replaceAll('`', '');

/** One row per setting in the shape --help, the README and the tests read. */
export interface SettingDoc {
  key: SettingKey;
  env: string;
  /** The literal default, or in parentheses what applies without one. */
  default: string;
  description: string;
}

export const settings: readonly SettingDoc[] = settingKeys.map((key) => ({
  key,
  env: settingTable[key].env,
  default: settingDefault(key) ?? `(${plain(defaultMarkdown(key))})`,
  description: plain(settingTable[key].description),
}));

/** The README's Configuration table, generated so that it cannot disagree with the code. */
export function settingsMarkdownTable(): string {
  const rows = settingKeys.map((key) => `| \`${settingTable[key].env}\` | \`${key}\` | ${defaultMarkdown(key)} | ${settingTable[key].description} |`);
  return ['| variable | YAML key | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

/** The settings part of --help. */
export function settingsHelp(): string {
  const width = Math.max(...settings.map((s) => s.env.length));
  const rows = settings.map((s) => `  ${s.env.padEnd(width)}  ${s.key}: ${s.description} (default: ${plain(defaultMarkdown(s.key))})`);
  return `\nSettings (environment variable, then YAML key in --config; variables win):\n${rows.join('\n')}\n`;
}

/** Parses a listen address, throwing a ConfigError naming GATEWAY_LISTEN (listen). */
export function parseListen(value: string): ListenAddress {
  const result = listenAddress(value);
  if (typeof result === 'string') throw new ConfigError(settingName('listen'), result);
  return result;
}
