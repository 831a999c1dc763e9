// What the embedded registry is made of: its binary, its configuration document and its http secret.
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { delimiter, isAbsolute, join } from 'node:path';
import { ConfigError } from '../errors.js';
import { settingName } from '../config/settings.js';

/** Binary names of the distribution registry, in order of preference (Debian's name first). */
const registryBinaryNames = ['docker-registry', 'registry'] as const;

/** Follows a sentence saying which binary is missing. */
export const registryInstallHint =
  'Install the registry with `apt-get install docker-registry` (Debian/Ubuntu) ' +
  'or point GATEWAY_REGISTRY_BIN at a distribution registry binary; ' +
  'alternatively set GATEWAY_UPSTREAM to the URL of an existing registry.';

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
export async function readOrCreateHttpSecret(path: string): Promise<string> {
  try {
    const existing = (await readFile(path, 'utf8')).trim();
    if (existing === '') throw new ConfigError(settingName('data_dir'), `${path} is empty; delete it to have a new registry http secret created`);
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

/** A loopback port that was free a moment ago, for the registry to listen on. */
export function freeLoopbackPort(): Promise<number> {
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

/** The child's environment: as given, minus what is known to break the registry. */
export function childEnvironment(env: NodeJS.ProcessEnv | undefined): NodeJS.ProcessEnv {
  // The s3 driver panics at start-up on some AWS_CA_BUNDLE values.
  const { AWS_CA_BUNDLE: _ignored, ...rest } = env ?? {};
  return rest;
}
