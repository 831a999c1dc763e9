// Tells a running gateway of each CI token this process revokes in a token file, so it can refuse the token at once and tell the others.

import path from 'node:path';

type RevocationListener = (id: string) => void;
const revocationListeners = new Map<string, Set<RevocationListener>>();

/**
 * Hears each token this process revokes in `file` (the sign-in pages, `user remove`), once the
 * file says so. Returns the function that stops listening.
 */
export function onCiTokenRevoked(file: string, listener: RevocationListener): () => void {
  const key = path.resolve(file);
  const listeners = revocationListeners.get(key) ?? new Set();
  revocationListeners.set(key, listeners);
  const own: RevocationListener = (id) => listener(id);
  listeners.add(own);
  return () => void listeners.delete(own);
}

/** Called by the functions that remove tokens from a file, after the file was written. */
export function tellRevoked(file: string, ids: readonly string[]): void {
  for (const listener of revocationListeners.get(path.resolve(file)) ?? []) {
    for (const id of ids) {
      try {
        listener(id);
      } catch {
        // A listener's trouble is its own: the revocation is in the file already.
      }
    }
  }
}
