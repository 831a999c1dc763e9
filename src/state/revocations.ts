// Token revocation notices between gateways: sent when a token is revoked, heard by every gateway, which refuses the token at once.

import type { Logger } from 'pino';
import { onCiTokenRevoked } from '../auth/ci-token-revocations.js';
import type { CiTokenStore } from '../auth/ci-token-store.js';
import type { SharedState } from './shared-state.js';

/** A token id as `gateway token create` and the sign-in pages make them. */
const tokenIdPattern = /^[a-z2-7]{12}$/;

/** The revocation notice: JSON `{"token": ID}`. */
export function revocationNotice(id: string): string {
  return JSON.stringify({ token: id });
}

/** The token id a notice names, or undefined for anything else. */
export function revokedTokenOf(message: string): string | undefined {
  try {
    const data = JSON.parse(message) as unknown;
    const id = typeof data === 'object' && data !== null ? (data as { token?: unknown }).token : undefined;
    return typeof id === 'string' && tokenIdPattern.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

/** Tells every gateway that the token is revoked; false when the shared state could not take it (the files still tell them). */
async function announceRevocation(shared: SharedState, id: string): Promise<boolean> {
  try {
    await shared.publish('revocations', revocationNotice(id));
    return true;
  } catch {
    return false;
  }
}

/**
 * Wires one gateway's CI token store to the notices: a token revoked elsewhere is refused here at
 * once, before this gateway reads its token file again. A token this process revokes (sign-in
 * pages) is refused here and announced at once; one that leaves the file by other means (a
 * command on this host, an edit) is announced when the file is read again, for the gateways whose
 * copy changes later or is read later. `reloaded` is to be called after each reload of the file.
 */
export function shareRevocations(shared: SharedState, store: CiTokenStore, logger: Logger): { reloaded(): void; stop(): void } {
  let known = new Set(store.list().map((record) => record.id));
  const stop = shared.subscribe('revocations', (message) => {
    const id = revokedTokenOf(message);
    if (id === undefined) return;
    if (known.has(id)) logger.info({ token: id }, 'token revoked at another gateway: refused here from now on');
    store.revoke(id);
  });
  const stopHearing = onCiTokenRevoked(store.file, (id) => {
    store.revoke(id);
    void announceRevocation(shared, id);
  });
  return {
    reloaded() {
      const now = new Set(store.list().map((record) => record.id));
      for (const id of known) if (!now.has(id)) void announceRevocation(shared, id);
      known = now;
    },
    stop() {
      stop();
      stopHearing();
    },
  };
}
