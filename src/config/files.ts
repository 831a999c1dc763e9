// Files written whole and edited one at a time, across processes: what the gateway reads (htpasswd, CI tokens, keys) is never seen half-written or lost.

import { randomBytes } from 'node:crypto';
import { mkdir, open, realpath, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { lock } from 'proper-lockfile';

export function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** The file a path ends at, so that writing through a symlink keeps the link; a missing file is its own target. */
export async function resolveSymlinks(file: string): Promise<string> {
  try {
    return await realpath(file);
  } catch (error) {
    if (isMissing(error)) return path.resolve(file);
    throw error;
  }
}

/** Writes a file (mode 0600 unless told) through a temporary file and a rename: readers see the old file or the new one. */
export async function writeFileAtomically(file: string, text: string, mode = 0o600): Promise<void> {
  const folder = path.dirname(file);
  await mkdir(folder, { recursive: true });
  const temporary = path.join(folder, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temporary, 'wx', mode);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.chmod(mode); // open() applies the umask to the mode; chmod makes it exact
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/** Edits of one file in this process, chained: no edit reads the content another is about to replace. */
const editsInProgress = new Map<string, Promise<unknown>>();

/** Runs `edit` once every earlier edit of the same file (by absolute path) in this process has settled. */
function queueInProcess<T>(key: string, edit: () => Promise<T>): Promise<T> {
  const previous = editsInProgress.get(key) ?? Promise.resolve();
  const current = previous.catch(() => undefined).then(edit);
  editsInProgress.set(key, current);
  const forget = () => {
    if (editsInProgress.get(key) === current) editsInProgress.delete(key);
  };
  current.then(forget, forget);
  return current;
}

/** A lock that could not be taken or was lost: the edit was not made (or may not have been). */
export class FileLockError extends Error {
  override readonly name = 'FileLockError';
}

/**
 * A lock older than this (its holder updates it every STALE/2) was left by a process that died,
 * and is taken over. The retries below outlast it, so a crashed editor never blocks the next one.
 */
const LOCK_STALE_MS = 5_000;
const LOCK_RETRIES = { retries: 30, factor: 1.3, minTimeout: 20, maxTimeout: 200, randomize: true };

/** The lock beside a file: a folder, so it works before the file exists and on network file systems. */
export function lockPathOf(file: string): string {
  return `${file}.lock`;
}

async function withFileLock<T>(target: string, edit: () => Promise<T>): Promise<T> {
  const lockPath = lockPathOf(target);
  await mkdir(path.dirname(target), { recursive: true });
  let lost: Error | undefined;
  let release: () => Promise<void>;
  try {
    release = await lock(target, {
      realpath: false,
      lockfilePath: lockPath,
      stale: LOCK_STALE_MS,
      retries: LOCK_RETRIES,
      onCompromised: (error) => {
        lost = error;
      },
    });
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    if (code === 'ELOCKED') {
      throw new FileLockError(
        `${target} is being edited by another process (lock ${lockPath}); nothing was changed, try again. ` +
          `A lock left by a process that died is taken over after ${LOCK_STALE_MS / 1000} s`,
      );
    }
    throw new FileLockError(`cannot lock ${target} for editing (lock ${lockPath}): ${code ?? message}`);
  }
  try {
    const result = await edit();
    if (lost !== undefined) throw new FileLockError(`lost the lock ${lockPath} while editing ${target} (${lost.message}); check the file`);
    return result;
  } finally {
    await release().catch(() => undefined);
  }
}

/**
 * Runs `edit` on the file a path ends at (see resolveSymlinks) while no other edit of it runs, in
 * this process (a queue) or any other (a lock beside the file, proper-lockfile): every
 * read-modify-write of a shared file goes through here, so no concurrent edit is lost.
 */
export async function editFileExclusively<T>(file: string, edit: (target: string) => Promise<T>): Promise<T> {
  const target = await resolveSymlinks(file);
  return queueInProcess(target, () => withFileLock(target, () => edit(target)));
}
