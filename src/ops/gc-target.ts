// What `gateway gc` collects: the registry binary and config file (the embedded registry's, or the settings' for an external one), and what that config says about storage.

import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Config } from '../config/config.js';
import { settingName } from '../config/settings.js';
import { findRegistryBinary, registryInstallHint } from '../registry/registry-setup.js';

/** A reason `gateway gc` cannot run, in words for the operator. */
export class GcError extends Error {
  override readonly name = 'GcError';
}

export interface GcTarget {
  /** embedded: `serve` runs this registry (data_dir); external: GATEWAY_UPSTREAM names it. */
  kind: 'embedded' | 'external';
  binary: string;
  configFile: string;
  /** The storage driver: filesystem, s3, swift, ... */
  driver: string;
  /** The folder the filesystem driver stores under, when that is the driver (measured before and after). */
  filesystemRoot: string | undefined;
  /** The registry keeps a blob descriptor cache (inmemory, redis): running registries must restart after a collection. */
  cache: string | undefined;
  dataDir: string;
}

/** Sections of `storage:` that are options, not a driver. */
const storageOptions = new Set(['delete', 'maintenance', 'cache', 'redirect', 'tag']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Driver, filesystem root and cache as the registry will see them: its file, overridden by REGISTRY_* variables. */
export function describeStorage(document: unknown, env: NodeJS.ProcessEnv): Pick<GcTarget, 'driver' | 'filesystemRoot' | 'cache'> {
  const storage = isRecord(document) && isRecord(document.storage) ? document.storage : {};
  // REGISTRY_STORAGE=swift replaces the whole storage section (the registry's own rule).
  const fromEnv = env.REGISTRY_STORAGE?.trim();
  const driver = fromEnv || Object.keys(storage).find((key) => !storageOptions.has(key)) || 'none';
  const section = fromEnv ? {} : storage;
  const filesystem = isRecord(section.filesystem) ? section.filesystem : {};
  const root = env.REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY?.trim() || (typeof filesystem.rootdirectory === 'string' ? filesystem.rootdirectory : '/var/lib/registry');
  const cacheSection = isRecord(section.cache) ? section.cache : {};
  const cache = env.REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR?.trim() || (typeof cacheSection.blobdescriptor === 'string' ? cacheSection.blobdescriptor : undefined);
  return { driver, filesystemRoot: driver === 'filesystem' ? root : undefined, cache: cache === '' ? undefined : cache };
}

async function readRegistryConfig(file: string, missing: string): Promise<unknown> {
  try {
    await access(file);
  } catch {
    throw new GcError(missing);
  }
  try {
    return parseYaml(await readFile(file, 'utf8')) as unknown;
  } catch (error) {
    throw new GcError(`cannot read the registry config ${file}: ${(error as Error).message}`);
  }
}

/** The binary and config `garbage-collect` runs with; every missing piece is named with the setting that supplies it. */
export async function gcTarget(config: Readonly<Config>, env: NodeJS.ProcessEnv): Promise<GcTarget> {
  const embedded = config.upstreams.length === 0;
  const binary = findRegistryBinary(config.registryBin, env.PATH);
  if (binary === undefined) {
    const which = config.registryBin ? `${settingName('registry_bin')} names ${config.registryBin}, which is not an executable registry binary` : 'no registry binary (docker-registry or registry) on PATH';
    throw new GcError(
      embedded
        ? `${which}. ${registryInstallHint}`
        : `${which}: \`gateway gc\` runs the registry's own \`garbage-collect\`, so it needs that registry's binary here. Set ${settingName('registry_bin')}, ` +
          `or run the collector where the registry runs (under compose: see docs/deploy.md, "Garbage collection")`,
    );
  }
  let configFile: string;
  if (config.registryConfig !== undefined) {
    configFile = config.registryConfig;
  } else if (embedded) {
    configFile = path.join(config.dataDir, 'registry.yml');
  } else {
    throw new GcError(
      `${settingName('upstream')} names a registry the gateway does not run, so \`gateway gc\` needs that registry's config file: ` +
        `set ${settingName('registry_config')} to the file it was started with (same storage settings; REGISTRY_* variables it gets must be set here too). ` +
        'Under compose, see docs/deploy.md, "Garbage collection"',
    );
  }
  const missing = embedded && config.registryConfig === undefined
    ? `no embedded registry has run with ${settingName('data_dir')} ${config.dataDir} yet (${configFile} is missing): there is nothing to collect`
    : `the registry config ${configFile} (${settingName('registry_config')}) does not exist`;
  const document = await readRegistryConfig(configFile, missing);
  return { kind: embedded ? 'embedded' : 'external', binary, configFile, dataDir: config.dataDir, ...describeStorage(document, env) };
}
