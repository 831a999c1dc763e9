// Settings from an optional YAML file overridden by GATEWAY_* variables, validated into one frozen Config.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, isMap, isScalar, parseDocument, type Node } from 'yaml';
import { ConfigError } from '../errors.js';
import { parseProviders, providersSource, type ProviderConfig, type ProvidersSource } from './providers.js';
import { parseRetention, retentionSource, type RetentionRule, type RetentionSource } from '../ops/retention-rules.js';
import { parseWebhooks, webhooksSource, type WebhookConfig, type WebhooksSource } from '../ops/webhook-config.js';
import { defaultWorkers, settingKeys, settingName, settings, settingTable, type ListenAddress, type LogLevel, type SettingKey, type SettingValue } from './settings.js';

export { parseListen, settingDefault, settings, settingsHelp, settingsMarkdownTable, type ListenAddress, type SettingDoc } from './settings.js';

export type AuthMode = 'token' | 'basic';

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
  logLevel: LogLevel;
  basicCacheSeconds: number;
  shutdownGraceSeconds: number;
  /** Processes `serve` answers clients with (1: one process, as a library start always is). */
  workers: number;
  /** Upstream requests one client address may have in flight. */
  upstreamPerClient: number;
  /** Seconds a request body may send nothing before both sides are closed. */
  bodyIdleSeconds: number;
  /** The authenticator chain in order from the YAML `providers:` (no variables); absent without that section: CI tokens, then htpasswd. */
  providers?: ProviderConfig[];
  /** ACME certificates instead of the local CA's; undefined when off. */
  acme: AcmeConfig | undefined;
  /** The optional plain-HTTP listener (ACME http-01, redirects). */
  httpListen: ListenAddress | undefined;
  /** The read-only maintenance switch every gateway sharing it watches; reports go to `FILE.d/`. */
  maintenanceFile: string;
  /** The Prometheus metrics listener; undefined when off. */
  metricsListen: ListenAddress | undefined;
  /** Whether `metrics_listen` was set explicitly: then a port in use stops the start; the default only warns. */
  metricsListenGiven: boolean;
  /** Repositories with their own label on the push, pull and delete metrics; the rest are `(other)`. */
  metricsRepositories: number;
  /** The audit trail: a file path, `stdout`, a syslog target (`syslog`, `syslog:/PATH`, `syslog://HOST[:PORT]`), or undefined when off. */
  auditLog: string | undefined;
  /** The registry's own config file for `gateway gc` (external registry); undefined: the embedded one's. */
  registryConfig: string | undefined;
  /** When `serve` collects garbage itself (cron), embedded registry only; undefined: never. */
  gcSchedule: string | undefined;
  /** The Redis gateways share state through; undefined: each gateway on its own. */
  redis: RedisConfig | undefined;
  /** The web pages at `/` (browse, sign-in, tokens). */
  ui: boolean;
  /** Origins whose scripts may call /v2/ and /token (CORS), exactly as browsers send Origin; empty: none. */
  corsOrigins: string[];
  /** Tag retention rules from the YAML `retention:` list (no variables); absent without that section. */
  retention?: RetentionRule[];
  /** Webhook receivers from the YAML `webhooks:` list (no variables); absent without that section. */
  webhooks?: WebhookConfig[];
}

export interface RedisConfig {
  /** redis:// or rediss://, with the password when it was given there (describeConfig hides it). */
  url: URL;
  /** File holding the password, read when the gateway starts. */
  passwordFile: string | undefined;
  /** Before every key and channel. */
  prefix: string;
}

export interface AcmeConfig {
  domains: string[];
  email: string | undefined;
  directoryUrl: string;
  /** Extra CA bundle for the ACME server's HTTPS. */
  caFile: string | undefined;
  challenge: 'tls-alpn-01' | 'http-01';
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

/** Where a value came from: an error names the variable, or the file and line, that set it. */
interface Given {
  value: unknown;
  /** "GATEWAY_X (x)" or "FILE:LINE:COLUMN: x". */
  where: string;
  /** Folder that a relative path in this value is taken from. */
  baseDir: string;
}

interface ConfigFile {
  values: Map<string, { value: unknown; line: number; column: number }>;
  /** The `providers:` list, which is YAML only: it has no variable. */
  providers?: ProvidersSource;
  /** The `retention:` list, YAML only as well. */
  retention?: RetentionSource;
  /** The `webhooks:` list, YAML only as well. */
  webhooks?: WebhooksSource;
}

/** "reason" plus the offending lines with a caret, from the yaml library's pretty error. */
function yamlProblem(message: string): string {
  const [reason = message, context = ''] = message.split(/ at line \d+, column \d+:\n\n/);
  const lines = context.replace(/\n+$/, '').split('\n');
  return lines.length > 0 && lines[0] !== '' ? `${reason}\n${lines.map((line) => `    ${line}`).join('\n')}` : reason;
}

function readConfigFile(file: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError('--config', `cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: true });
  const syntaxError = document.errors[0];
  if (syntaxError) {
    const at = syntaxError.linePos?.[0];
    throw new ConfigError(at ? `${file}:${at.line}:${at.col}` : file, `not valid YAML: ${yamlProblem(syntaxError.message)}`);
  }
  const values: ConfigFile['values'] = new Map();
  let providers: ProvidersSource | undefined;
  let retention: RetentionSource | undefined;
  let webhooks: WebhooksSource | undefined;
  const root = document.contents;
  if (root === null || (isScalar(root) && root.value === null)) return { values };
  if (!isMap(root)) throw new ConfigError(file, 'must hold a mapping of settings (key: value lines)');
  const data = document.toJS() as Record<string, unknown>;
  for (const pair of root.items) {
    const keyNode = pair.key as Node | null;
    const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
    const at = (node: Node | null) => lineCounter.linePos(node?.range?.[0] ?? keyNode?.range?.[0] ?? 0);
    if (key === 'retention') {
      retention = retentionSource({ file, lineCounter, value: pair.value as Node | null, data: data[key] });
      continue;
    }
    if (key === 'webhooks') {
      webhooks = webhooksSource({ file, lineCounter, value: pair.value as Node | null, data: data[key] });
      continue;
    }
    if (key === 'providers') {
      providers = providersSource({ file, document, lineCounter, key: keyNode, value: pair.value as Node | null, data: data[key] });
      continue;
    }
    if (!(key in settingTable)) {
      const position = at(keyNode);
      throw new ConfigError(`${file}:${position.line}:${position.col}`, `unknown setting "${key}" (known: ${settingKeys.join(', ')}, providers, retention, webhooks)`);
    }
    const position = at(pair.value as Node | null);
    values.set(key, { value: data[key], line: position.line, column: position.col });
  }
  return { values, providers, retention, webhooks };
}

export function loadConfig(options: LoadConfigOptions): LoadedConfig {
  const warnings: string[] = [];
  const file = options.file === undefined ? undefined : path.resolve(options.cwd, options.file);
  const fileDir = file ? path.dirname(file) : options.cwd;
  const read = file ? readConfigFile(file) : undefined;
  const fromFile = read?.values ?? new Map<string, never>();

  const given = new Map<SettingKey, Given>();
  for (const key of settingKeys) {
    const variable = settingTable[key].env;
    const fromEnv = options.env[variable];
    const inFile = fromFile.get(key);
    const emptyMeansOff = (settingTable[key] as { emptyMeansOff?: boolean }).emptyMeansOff === true;
    if (fromEnv !== undefined && (fromEnv !== '' || emptyMeansOff)) given.set(key, { value: fromEnv, where: settingName(key), baseDir: options.cwd });
    else if (inFile) given.set(key, { value: inFile.value, where: `${file}:${inFile.line}:${inFile.column}: ${key}`, baseDir: fileDir });
  }
  const knownEnv = new Set(settings.map((s) => s.env));
  for (const name of Object.keys(options.env)) {
    if (name.startsWith('GATEWAY_') && !knownEnv.has(name)) warnings.push(`${name} is not a setting of the gateway and is ignored`);
  }

  /** The checked value of a setting: what was given, else its default, through the setting's own schema. */
  const value = <K extends SettingKey>(key: K): SettingValue<K> => {
    const source = given.get(key);
    const raw = source ? source.value : (settingTable[key] as { default?: unknown }).default;
    const result = settingTable[key].schema.safeParse(raw);
    if (!result.success) throw new ConfigError(source?.where ?? settingName(key), result.error.issues[0]?.message ?? 'invalid value');
    return result.data as SettingValue<K>;
  };
  const resolvedPath = (key: SettingKey & ('tls_cert' | 'tls_key' | 'htpasswd' | 'ci_tokens' | 'token_key' | 'token_cert' | 'data_dir' | 'maintenance_file')): string =>
    path.resolve(given.get(key)?.baseDir ?? options.cwd, value(key));
  const optionalPath = (key: 'access' | 'registry_bin' | 'acme_ca' | 'registry_config' | 'redis_password_file'): string | undefined => {
    const chosen = value(key);
    return chosen === undefined ? undefined : path.resolve(given.get(key)?.baseDir ?? options.cwd, chosen);
  };
  /** `stdout` and syslog targets as they are; anything else is a file path, taken from the folder of where it was given. */
  const auditTarget = (): string | undefined => {
    const target = value('audit_log');
    if (target === undefined || target === 'stdout' || target === 'syslog' || target.startsWith('syslog:')) return target;
    return path.resolve(given.get('audit_log')?.baseDir ?? options.cwd, target);
  };
  const registryBin = value('registry_bin');
  const httpListen = value('http_listen');

  /** ACME settings are checked only when ACME is on, so a stray variable cannot stop a gateway that does not use them. */
  const acmeConfig = (): AcmeConfig | undefined => {
    if (!value('acme')) return undefined;
    const publicHost = value('public_url')?.hostname;
    let domains = value('acme_domains');
    if (domains === undefined && publicHost) {
      const fromUrl = settingTable.acme_domains.schema.safeParse(publicHost);
      if (!fromUrl.success) throw new ConfigError(settingName('acme_domains'), `the host of ${settingName('public_url')} cannot be used: ${fromUrl.error.issues[0]?.message}`);
      domains = fromUrl.data;
    }
    if (domains === undefined) {
      throw new ConfigError(settingName('acme_domains'), 'ACME is on: name the host names to certify here, or set GATEWAY_PUBLIC_URL (public_url)');
    }
    const chosen = value('acme_challenge');
    if (chosen === 'http-01' && httpListen === undefined) {
      throw new ConfigError(settingName('acme_challenge'), 'http-01 needs the plain-HTTP listener: set GATEWAY_HTTP_LISTEN (http_listen), e.g. 0.0.0.0:80');
    }
    return {
      domains,
      email: value('acme_email'),
      directoryUrl: value('acme_directory').href,
      caFile: optionalPath('acme_ca'),
      challenge: chosen === 'auto' ? (httpListen ? 'http-01' : 'tls-alpn-01') : chosen,
    };
  };

  const config: Config = {
    listen: value('listen'),
    upstreams: value('upstream'),
    tlsCert: resolvedPath('tls_cert'),
    tlsKey: resolvedPath('tls_key'),
    htpasswd: resolvedPath('htpasswd'),
    accessFile: optionalPath('access') ?? path.join(fileDir, 'access.yml'),
    accessFileRequired: value('access') !== undefined,
    ciTokensFile: resolvedPath('ci_tokens'),
    auth: value('auth'),
    publicUrl: value('public_url'),
    service: value('service'),
    tokenTtlSeconds: value('token_ttl'),
    tokenIssuer: value('token_issuer'),
    tokenKey: resolvedPath('token_key'),
    tokenCert: resolvedPath('token_cert'),
    // A bare name (docker-registry) is looked up on PATH; only a path is taken relative to a folder.
    registryBin: registryBin?.includes('/') ? optionalPath('registry_bin') : registryBin,
    dataDir: resolvedPath('data_dir'),
    logLevel: value('log_level'),
    basicCacheSeconds: value('basic_cache_ttl'),
    shutdownGraceSeconds: value('shutdown_grace'),
    workers: value('workers') ?? defaultWorkers(),
    upstreamPerClient: value('upstream_per_client'),
    bodyIdleSeconds: value('body_idle_timeout'),
    ...(read?.providers === undefined ? {} : { providers: parseProviders(read.providers) }),
    acme: acmeConfig(),
    httpListen,
    maintenanceFile: resolvedPath('maintenance_file'),
    metricsListen: value('metrics_listen'),
    metricsListenGiven: given.has('metrics_listen'),
    metricsRepositories: value('metrics_repositories'),
    auditLog: auditTarget(),
    registryConfig: optionalPath('registry_config'),
    gcSchedule: value('gc_schedule').schedule,
    redis: redisConfig(value('redis_url').url, optionalPath('redis_password_file'), value('redis_prefix')),
    ui: value('ui'),
    corsOrigins: value('cors_origins'),
    ...(read?.retention === undefined ? {} : { retention: parseRetention(read.retention) }),
    ...(read?.webhooks === undefined ? {} : { webhooks: parseWebhooks(read.webhooks) }),
  };
  return { config: Object.freeze(config), warnings };
}

/** Redis settings, when a URL is given; a password both in the URL and in a file is one too many. */
function redisConfig(url: URL | undefined, passwordFile: string | undefined, prefix: string): RedisConfig | undefined {
  if (url === undefined) return undefined;
  if (passwordFile !== undefined && url.password !== '') {
    throw new ConfigError(settingName('redis_password_file'), 'the Redis password is in GATEWAY_REDIS_URL (redis_url) as well: give it in one place');
  }
  return { url, passwordFile, prefix };
}

/** The URL with its password replaced, for output. */
function redactedUrl(url: URL): string {
  if (url.password === '') return url.href;
  const shown = new URL(url.href);
  shown.password = '***';
  return shown.href;
}

/** The effective configuration as YAML-ready data with paths and URLs as strings (no secrets live in Config). */
export function describeConfig(config: Readonly<Config>): Record<SettingKey, unknown> {
  const unset = (key: SettingKey) => settings.find((s) => s.key === key)!.default;
  return {
    listen: `${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${config.listen.port}`,
    upstream: config.upstreams.length ? config.upstreams.map((url) => url.origin).join(',') : unset('upstream'),
    tls_cert: config.tlsCert,
    tls_key: config.tlsKey,
    htpasswd: config.htpasswd,
    access: config.accessFile,
    ci_tokens: config.ciTokensFile,
    auth: config.auth,
    public_url: config.publicUrl?.origin ?? unset('public_url'),
    service: config.service,
    token_ttl: config.tokenTtlSeconds,
    token_issuer: config.tokenIssuer,
    token_key: config.tokenKey,
    token_cert: config.tokenCert,
    registry_bin: config.registryBin ?? unset('registry_bin'),
    data_dir: config.dataDir,
    log_level: config.logLevel,
    basic_cache_ttl: config.basicCacheSeconds,
    shutdown_grace: config.shutdownGraceSeconds,
    workers: config.workers,
    upstream_per_client: config.upstreamPerClient,
    body_idle_timeout: config.bodyIdleSeconds,
    acme: config.acme ? 'on' : 'off',
    acme_domains: config.acme?.domains.join(',') ?? unset('acme_domains'),
    acme_email: config.acme?.email ?? unset('acme_email'),
    acme_directory: config.acme?.directoryUrl ?? unset('acme_directory'),
    acme_ca: config.acme?.caFile ?? unset('acme_ca'),
    acme_challenge: config.acme?.challenge ?? unset('acme_challenge'),
    maintenance_file: config.maintenanceFile,
    metrics_listen: config.metricsListen ? `${config.metricsListen.host.includes(':') ? `[${config.metricsListen.host}]` : config.metricsListen.host}:${config.metricsListen.port}` : '',
    metrics_repositories: config.metricsRepositories,
    audit_log: config.auditLog ?? unset('audit_log'),
    registry_config: config.registryConfig ?? unset('registry_config'),
    gc_schedule: config.gcSchedule ?? unset('gc_schedule'),
    redis_url: config.redis ? redactedUrl(config.redis.url) : unset('redis_url'),
    redis_password_file: config.redis?.passwordFile ?? unset('redis_password_file'),
    redis_prefix: config.redis?.prefix ?? unset('redis_prefix'),
    ui: config.ui ? 'on' : 'off',
    cors_origins: config.corsOrigins.length ? config.corsOrigins.join(',') : unset('cors_origins'),
    http_listen: config.httpListen ? `${config.httpListen.host.includes(':') ? `[${config.httpListen.host}]` : config.httpListen.host}:${config.httpListen.port}` : unset('http_listen'),
  };
}
