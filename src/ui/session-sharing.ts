// Sign-outs between gateways: a session ended here is announced on the shared state's sessions channel, and one ended elsewhere is refused here.

import type { Logger } from 'pino';
import type { SharedState } from '../state/shared-state.js';
import type { SessionCookies } from './session.js';

/** The notice: JSON `{"session": ID, "until": MS}` (until: when the session would have expired anyway). */
function sessionNotice(id: string, until: number): string {
  return JSON.stringify({ session: id, until });
}

function endedSessionOf(message: string): { id: string; until: number } | undefined {
  try {
    const data = JSON.parse(message) as { session?: unknown; until?: unknown } | null;
    if (typeof data?.session !== 'string' || typeof data.until !== 'number') return undefined;
    return { id: data.session, until: data.until };
  } catch {
    return undefined;
  }
}

/**
 * Wires the sessions to the shared state; returns the function that stops. A notice that cannot be
 * sent (Redis away) is logged: that session's cookie then still works at other gateways until it
 * expires (at most the idle time without use), which is why the idle time is short.
 */
export function shareSessionEnds(shared: SharedState, sessions: SessionCookies, logger: Logger): () => void {
  const stopHearing = shared.subscribe('sessions', (message) => {
    const ended = endedSessionOf(message);
    if (ended !== undefined) sessions.endSession(ended.id, ended.until);
  });
  const stopTelling = sessions.onSessionEnded((id, until) => {
    shared.publish('sessions', sessionNotice(id, until)).catch((error: unknown) => {
      logger.warn({ err: (error as Error).message }, 'could not tell the other gateways of a sign-out; the session ends there at its idle expiry');
    });
  });
  return () => {
    stopHearing();
    stopTelling();
  };
}
