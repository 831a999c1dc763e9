// The lock that lets one gateway at a time run its embedded registry on a data folder.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { ConfigError } from '../errors.js';
import { settingName } from './settings.js';

/**
 * The lock is a folder whose mtime the holder refreshes every few seconds; one not refreshed for
 * this long belongs to a gateway that died without cleaning up, and the next start takes it over.
 */
const staleAfterMs = 10_000;

export interface DataDirLock {
  release(): Promise<void>;
}

export function dataLockPath(dataDir: string): string {
  return path.join(dataDir, 'gateway.lock');
}

function lockOptions(dataDir: string) {
  // realpath: false, so the folder need not exist for check(); the lock names the folder as configured.
  return { lockfilePath: dataLockPath(dataDir), realpath: false, stale: staleAfterMs };
}

function inUse(dataDir: string): ConfigError {
  return new ConfigError(
    settingName('data_dir'),
    `another gateway is running with its embedded registry in ${dataDir} (it holds ${dataLockPath(dataDir)}); stop it first, ` +
      `or give this one its own GATEWAY_DATA_DIR. A lock left by a gateway that crashed expires ${staleAfterMs / 1000} s after the crash.`,
  );
}

/**
 * Takes the data folder (creating it if missing) before anything in it is read or written, or
 * throws a ConfigError at once when another gateway holds it. `onLost` hears when the lock could not
 * be kept (its folder deleted or taken over): another gateway may then start on the same data.
 */
export async function lockDataDir(dataDir: string, onLost: (error: Error) => void): Promise<DataDirLock> {
  try {
    await mkdir(dataDir, { recursive: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError(settingName('data_dir'), `cannot create ${dataDir} (${code ?? (error as Error).message})`);
  }
  let releaseLock: () => Promise<void>;
  try {
    releaseLock = await lockfile.lock(dataDir, { ...lockOptions(dataDir), onCompromised: onLost });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ELOCKED') throw inUse(dataDir);
    throw new ConfigError(settingName('data_dir'), `cannot create the lock ${dataLockPath(dataDir)} (${code ?? (error as Error).message})`);
  }
  let released: Promise<void> | undefined;
  return {
    release() {
      released ??= releaseLock().catch(() => {
        // Already gone (compromised or removed by hand): nothing left to release.
      });
      return released;
    },
  };
}

/** Whether a live gateway holds the data folder now (a stale lock does not count). */
export async function dataDirInUse(dataDir: string): Promise<boolean> {
  try {
    return await lockfile.check(dataDir, lockOptions(dataDir));
  } catch {
    return false;
  }
}
