// The audit trail: one JSON line per security event, to its own file or stdout, never mixed into the access log; reopened on SIGHUP.

import { closeSync, openSync, writeSync } from 'node:fs';
import type { Logger } from 'pino';
import type { EventBus, GatewayEvent } from './events.js';

/** Events that are no audit matter: every request (the access log has them) and routine token issues. */
const notAudited = new Set<GatewayEvent['type']>(['request', 'token.issued']);

/** The audit line of an event: time, event, who and from where first; never a secret (events carry none). */
export function auditLine(event: GatewayEvent, time: Date): string | undefined {
  if (notAudited.has(event.type)) return undefined;
  const { type, ...fields } = event;
  const who: Record<string, unknown> = {};
  if ('user' in fields || 'remote' in fields) {
    const { user, remote, ...rest } = fields as { user?: string; remote?: string };
    // Anonymous callers are `anonymous` (the access log's word); credentials that were never read, `unknown`.
    who.user = user === undefined || user === '' ? 'unknown' : user;
    who.source = remote ?? 'unknown';
    return JSON.stringify({ time: time.toISOString(), event: type, ...who, ...rest });
  }
  return JSON.stringify({ time: time.toISOString(), event: type, ...fields });
}

export interface AuditLogOptions {
  /** A file path, or `stdout`. */
  target: string;
  logger: Logger;
  now?: () => Date;
}

/**
 * Appends lines with O_APPEND, so several writers (the gateway and the `gateway` command) never
 * interleave within a line. A write that fails is counted and reported once per burst; serving goes on.
 */
export class AuditLog {
  readonly #options: AuditLogOptions;
  #fd: number | undefined;
  #failures = 0;
  #reported = false;

  /** Opens the target now: a file that cannot be opened is the caller's error at start. */
  constructor(options: AuditLogOptions) {
    this.#options = options;
    if (options.target !== 'stdout') this.#fd = openSync(options.target, 'a', 0o600);
  }

  /** Write failures since start. */
  get failures(): number {
    return this.#failures;
  }

  /** Writes the events worth auditing as they happen; returns the function that stops listening. */
  listen(events: EventBus): () => void {
    return events.on((event) => this.write(event));
  }

  write(event: GatewayEvent): void {
    const line = auditLine(event, (this.#options.now ?? (() => new Date()))());
    if (line === undefined) return;
    try {
      if (this.#fd === undefined) process.stdout.write(`${line}\n`);
      else writeSync(this.#fd, `${line}\n`);
      this.#reported = false;
    } catch (error) {
      this.#failures += 1;
      if (!this.#reported) {
        this.#reported = true;
        this.#options.logger.error({ file: this.#options.target, err: (error as Error).message, failures: this.#failures }, 'cannot write the audit log; serving goes on');
      }
    }
  }

  /** SIGHUP: a rotated file is let go and the path opened afresh; when that fails, the old file is kept. */
  reopen(): void {
    if (this.#fd === undefined) return;
    try {
      const next = openSync(this.#options.target, 'a', 0o600);
      closeSync(this.#fd);
      this.#fd = next;
    } catch (error) {
      this.#options.logger.error({ file: this.#options.target, err: (error as Error).message }, 'cannot reopen the audit log; writing to the file open before');
    }
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}
