// Files written whole and edited one at a time: what the gateway reads (htpasswd, CI tokens, keys) is never seen half-written.

import { randomBytes } from 'node:crypto';
import { mkdir, open, realpath, rename, rm } from 'node:fs/promises';
import path from 'node:path';

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

/** Runs `edit` once every earlier edit of the same file (by absolute path) has settled. */
export async function queueFileEdit<T>(file: string, edit: () => Promise<T>): Promise<T> {
  const key = path.resolve(file);
  const previous = editsInProgress.get(key) ?? Promise.resolve();
  const current = previous.catch(() => undefined).then(edit);
  editsInProgress.set(key, current);
  try {
    return await current;
  } finally {
    if (editsInProgress.get(key) === current) editsInProgress.delete(key);
  }
}
