// Settings from an optional YAML file overridden by GATEWAY_* variables, validated into one frozen Config.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors.js';

export type AuthMode = 'token' | 'basic';

export interface ListenAddress {
  host: string;
  port: number;
}

export interface Config {
  listen: ListenAddress;
  /** Backend registries sharing one storage; empty means: start and supervise an embedded registry. */
  upstreams: URL[];
  tlsCert: string;
  tlsKey: string;
  htpasswd: string;
  /** Access rules (YAML); a missing file at the default place means: every authenticated user may do everything. */
  accessFile: string;
  /** Whether `access` (GATEWAY_ACCESS) was set explicitly, so that a missing file is an error rather than the default. */
  accessFileRequired: boolean;
  ciTokensFile: string;
  auth: AuthMode;
  /** Public origin used for the token realm and upload URLs; undefined means derived from each request. */
  publicUrl: URL | undefined;
  service: string;
  tokenTtlSeconds: number;
  tokenIssuer: string;
  tokenKey: string;
  tokenCert: string;
  registryBin: string | undefined;
  dataDir: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  basicCacheSeconds: number;
  shutdownGraceSeconds: number;
}

/** One row per setting: its YAML key, its variable, its default and what it means (for --help and the README). */
export interface SettingDoc {
  key: string;
  env: string;
  default: string;
  description: string;
}

export const settings: readonly SettingDoc[] = [
  { key: 'listen', env: 'GATEWAY_LISTEN', default: '0.0.0.0:5443', description: 'address and port the HTTPS server listens on (HOST:PORT, [IPv6]:PORT or PORT)' },
  { key: 'upstream', env: 'GATEWAY_UPSTREAM', default: '(embedded registry)', description: 'backend registry URL, e.g. http://registry:5000, or several separated by commas (replicas on shared storage); unset: start the registry binary with storage under data_dir' },
  { key: 'tls_cert', env: 'GATEWAY_TLS_CERT', default: 'certs/server.crt', description: 'server certificate (PEM, chain allowed); generated with a local CA when neither it nor the key exists' },
  { key: 'tls_key', env: 'GATEWAY_TLS_KEY', default: 'certs/server.key', description: 'server private key (PEM)' },
  { key: 'htpasswd', env: 'GATEWAY_HTPASSWD', default: 'htpasswd/htpasswd', description: 'users, bcrypt htpasswd file (htpasswd -B); created with an admin user when missing' },
  { key: 'access', env: 'GATEWAY_ACCESS', default: '(access.yml beside --config, else in the current folder)', description: 'access rules per repository and action (see access.example.yml); without the file every authenticated user may do everything' },
  { key: 'ci_tokens', env: 'GATEWAY_CI_TOKENS', default: 'htpasswd/ci-tokens.json', description: 'CI tokens made with `gateway token create` (hashes only, no secrets)' },
  { key: 'auth', env: 'GATEWAY_AUTH', default: 'token', description: 'token: Bearer tokens from /token (docker token spec); basic: Basic auth on every request' },
  { key: 'public_url', env: 'GATEWAY_PUBLIC_URL', default: '(from the request Host)', description: 'public https origin of the gateway, used for the token realm and upload locations' },
  { key: 'service', env: 'GATEWAY_SERVICE', default: 'registry-gateway', description: 'token service name (challenge service, token audience)' },
  { key: 'token_ttl', env: 'GATEWAY_TOKEN_TTL', default: '900', description: 'access token lifetime in seconds (60 to 86400)' },
  { key: 'token_issuer', env: 'GATEWAY_TOKEN_ISSUER', default: 'registry-gateway', description: 'token issuer (iss); what a registry verifying tokens itself is configured with' },
  { key: 'token_key', env: 'GATEWAY_TOKEN_KEY', default: 'certs/token.key', description: 'token signing key (PEM, RSA or EC P-256); created with token_cert when both are missing' },
  { key: 'token_cert', env: 'GATEWAY_TOKEN_CERT', default: 'certs/token.crt', description: 'certificate of the token signing key (sent as x5c; the registry rootcertbundle)' },
  { key: 'registry_bin', env: 'GATEWAY_REGISTRY_BIN', default: '(docker-registry or registry on PATH)', description: 'registry binary for the embedded registry' },
  { key: 'data_dir', env: 'GATEWAY_DATA_DIR', default: 'data', description: 'storage and config of the embedded registry' },
  { key: 'log_level', env: 'GATEWAY_LOG_LEVEL', default: 'info', description: 'fatal, error, warn, info, debug, trace or silent' },
  { key: 'basic_cache_ttl', env: 'GATEWAY_BASIC_CACHE_TTL', default: '60', description: 'seconds a successful password check is remembered (0 to 3600); never outlives a password change' },
  { key: 'shutdown_grace', env: 'GATEWAY_SHUTDOWN_GRACE', default: '25', description: 'seconds to let transfers finish after SIGTERM before closing connections' },
];

const envByKey = new Map(settings.map((s) => [s.key, s.env]));

function wholeNumber(min: number, max: number) {
  return z.coerce
    .number()
    .int(`must be a whole number from ${min} to ${max}`)
    .min(min, `must be a whole number from ${min} to ${max}`)
    .max(max, `must be a whole number from ${min} to ${max}`);
}

const rawSchema = z
  .object({
    listen: z.union([z.string(), z.number()]).transform(String).default('0.0.0.0:5443'),
    upstream: z.union([z.string(), z.array(z.string())], 'must be a URL or a list of URLs').nullish(),
    tls_cert: z.string().default('certs/server.crt'),
    tls_key: z.string().default('certs/server.key'),
    htpasswd: z.string().default('htpasswd/htpasswd'),
    access: z.string().optional(),
    ci_tokens: z.string().default('htpasswd/ci-tokens.json'),
    auth: z.enum(['token', 'basic'], 'must be "token" or "basic"').default('token'),
    public_url: z.string().optional(),
    service: z.string().min(1, 'must not be empty').regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces or quotes').refine((s) => !s.includes('"'), 'must not contain quotes').default('registry-gateway'),
    token_ttl: wholeNumber(60, 86400).default(900),
    token_issuer: z.string().min(1, 'must not be empty').default('registry-gateway'),
    token_key: z.string().default('certs/token.key'),
    token_cert: z.string().default('certs/token.crt'),
    registry_bin: z.string().optional(),
    data_dir: z.string().default('data'),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'must be one of fatal, error, warn, info, debug, trace, silent').default('info'),
    basic_cache_ttl: wholeNumber(0, 3600).default(60),
    shutdown_grace: wholeNumber(0, 3600).default(25),
  })
  .strict();

type RawConfig = z.infer<typeof rawSchema>;

/** Names a setting both ways, so an error is found whichever way it was given. */
function settingName(key: string): string {
  const env = envByKey.get(key);
  return env ? `${env} (${key})` : key;
}

export function parseListen(value: string): ListenAddress {
  const bare = /^\d+$/.exec(value);
  const match = bare ? ['', '0.0.0.0', value] : /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d+)$/.exec(value);
  if (!match) throw new ConfigError(settingName('listen'), `"${value}" is not HOST:PORT, [IPv6]:PORT or PORT`);
  const host = bare ? '0.0.0.0' : (match[1] ?? match[2] ?? '') || '0.0.0.0';
  const port = Number(bare ? value : match[3]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(settingName('listen'), `port ${port} is out of range`);
  if (net.isIP(host) === 0 && !/^[a-zA-Z0-9.-]+$/.test(host)) throw new ConfigError(settingName('listen'), `"${host}" is not a host name or IP address`);
  return { host, port };
}

function parseUpstream(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(settingName('upstream'), `"${value}" is not a URL (expected e.g. http://registry:5000)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(settingName('upstream'), 'must be an http:// or https:// URL');
  if (url.pathname !== '/' || url.search || url.hash || url.username || url.password) {
    throw new ConfigError(settingName('upstream'), 'must be an origin only (scheme, host, port), with no path, query or credentials');
  }
  return url;
}

function parseUpstreams(value: string | string[] | null | undefined): URL[] {
  const items = (Array.isArray(value) ? value : (value ?? '').split(',')).map((item) => item.trim()).filter((item) => item.length > 0);
  const urls = items.map(parseUpstream);
  if (new Set(urls.map((url) => url.origin)).size !== urls.length) throw new ConfigError(settingName('upstream'), 'lists the same registry twice');
  return urls;
}

function parsePublicUrl(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(settingName('public_url'), `"${value}" is not a URL (expected e.g. https://registry.example.com)`);
  }
  if (url.protocol !== 'https:') throw new ConfigError(settingName('public_url'), 'must be an https:// URL: registry clients only send credentials over TLS');
  if (url.pathname !== '/' || url.search || url.hash || url.username || url.password) {
    throw new ConfigError(settingName('public_url'), 'must be an origin only (https://HOST[:PORT]), with no path');
  }
  return url;
}

export interface LoadConfigOptions {
  /** YAML file; relative paths inside it are taken from the file's folder. */
  file?: string;
  env: NodeJS.ProcessEnv;
  /** Folder that relative paths from variables and defaults are taken from. */
  cwd: string;
}

export interface LoadedConfig {
  config: Readonly<Config>;
  /** Things worth a warning at start-up (e.g. an unknown GATEWAY_* variable, a likely typo). */
  warnings: string[];
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError('--config', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (error) {
    throw new ConfigError('--config', `${file} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError('--config', `${file} must hold a mapping of settings`);
  return parsed as Record<string, unknown>;
}

const pathKeys = ['tls_cert', 'tls_key', 'htpasswd', 'access', 'ci_tokens', 'token_key', 'token_cert', 'data_dir', 'registry_bin'] as const;

export function loadConfig(options: LoadConfigOptions): LoadedConfig {
  const warnings: string[] = [];
  const fromFile = options.file ? readConfigFile(path.resolve(options.cwd, options.file)) : {};
  const fileDir = options.file ? path.dirname(path.resolve(options.cwd, options.file)) : options.cwd;
  const baseDirOf = new Map<string, string>();
  const merged: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fromFile)) {
    merged[key] = value;
    baseDirOf.set(key, fileDir);
  }
  for (const doc of settings) {
    const value = options.env[doc.env];
    if (value !== undefined && value !== '') {
      merged[doc.key] = value;
      baseDirOf.set(doc.key, options.cwd);
    }
  }
  const knownEnv = new Set(settings.map((s) => s.env));
  for (const name of Object.keys(options.env)) {
    if (name.startsWith('GATEWAY_') && !knownEnv.has(name)) warnings.push(`${name} is not a setting of the gateway and is ignored`);
  }

  const result = rawSchema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      throw new ConfigError(`--config`, `unknown setting ${issue.keys.map((k) => `"${k}"`).join(', ')} (known: ${settings.map((s) => s.key).join(', ')})`);
    }
    const key = String(issue.path[0] ?? '?');
    throw new ConfigError(settingName(key), issue.message);
  }
  const raw: RawConfig = result.data;
  const resolvePath = (key: (typeof pathKeys)[number]) => {
    const value = raw[key];
    if (value === undefined) return undefined;
    return path.resolve(baseDirOf.get(key) ?? options.cwd, value);
  };

  const config: Config = {
    listen: parseListen(raw.listen),
    upstreams: parseUpstreams(raw.upstream),
    tlsCert: resolvePath('tls_cert')!,
    tlsKey: resolvePath('tls_key')!,
    htpasswd: resolvePath('htpasswd')!,
    accessFile: resolvePath('access') ?? path.join(fileDir, 'access.yml'),
    accessFileRequired: raw.access !== undefined,
    ciTokensFile: resolvePath('ci_tokens')!,
    auth: raw.auth,
    publicUrl: raw.public_url ? parsePublicUrl(raw.public_url) : undefined,
    service: raw.service,
    tokenTtlSeconds: raw.token_ttl,
    tokenIssuer: raw.token_issuer,
    tokenKey: resolvePath('token_key')!,
    tokenCert: resolvePath('token_cert')!,
    // A bare name (docker-registry) is looked up on PATH; only a path is taken relative to a folder.
    registryBin: raw.registry_bin?.includes('/') ? resolvePath('registry_bin') : raw.registry_bin,
    dataDir: resolvePath('data_dir')!,
    logLevel: raw.log_level,
    basicCacheSeconds: raw.basic_cache_ttl,
    shutdownGraceSeconds: raw.shutdown_grace,
  };
  return { config: Object.freeze(config), warnings };
}

/** The effective configuration as YAML-ready data with paths and URLs as strings (no secrets live in Config). */
export function describeConfig(config: Readonly<Config>): Record<string, unknown> {
  return {
    listen: `${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${config.listen.port}`,
    upstream: config.upstreams.length ? config.upstreams.map((url) => url.origin).join(',') : '(embedded registry)',
    tls_cert: config.tlsCert,
    tls_key: config.tlsKey,
    htpasswd: config.htpasswd,
    access: config.accessFile,
    ci_tokens: config.ciTokensFile,
    auth: config.auth,
    public_url: config.publicUrl?.origin ?? '(from the request Host)',
    service: config.service,
    token_ttl: config.tokenTtlSeconds,
    token_issuer: config.tokenIssuer,
    token_key: config.tokenKey,
    token_cert: config.tokenCert,
    registry_bin: config.registryBin ?? '(docker-registry or registry on PATH)',
    data_dir: config.dataDir,
    log_level: config.logLevel,
    basic_cache_ttl: config.basicCacheSeconds,
    shutdown_grace: config.shutdownGraceSeconds,
  };
}
