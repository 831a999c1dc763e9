// The audit trail: one JSON line per security event, to its own file, stdout or syslog, never mixed into the access log; reopened on SIGHUP.

import { closeSync, openSync, writeSync } from 'node:fs';
import type { Logger } from 'pino';
import type { EventBus, GatewayEvent } from './events.js';
import { SyslogSink, syslogTarget, type SyslogTarget } from './audit-syslog.js';

/** The events worth an audit line; every other event (each request, routine token issues, anything added later) is not. */
const audited = new Set<string>([
  'manifest.pushed',
  'manifest.deleted',
  'tag.move-refused',
  'login.failed',
  'access.denied',
  'ci-token.created',
  'ci-token.revoked',
  'config.reloaded',
  'config.rejected',
  'maintenance',
]);

/** `source` of what was read from a watched file (settings files, the maintenance switch), not said by a client. */
export const localFileSource = 'local file';

/** Who did it and from where, never empty: `anonymous` without credentials, `unknown` when they were never read. */
function whoOf(event: GatewayEvent): { user: string; source: string } {
  if ('remote' in event) return { user: event.user === undefined || event.user === '' ? 'unknown' : event.user, source: event.remote ?? 'unknown' };
  if (event.type === 'maintenance') return { user: event.by ?? 'unknown', source: localFileSource };
  return { user: 'unknown', source: localFileSource };
}

/** The audit line of an event: time, event, user and source first, then the event's own fields; never a secret (events carry none). */
export function auditLine(event: GatewayEvent, time: Date): string | undefined {
  if (!audited.has(event.type)) return undefined;
  const { type, ...fields } = event;
  const rest: Record<string, unknown> = { ...fields };
  delete rest.user;
  delete rest.remote;
  if (type === 'maintenance') delete rest.by;
  return JSON.stringify({ time: time.toISOString(), event: type, ...whoOf(event), ...rest });
}

export interface AuditLogOptions {
  /** A file path, `stdout`, or a syslog target (`syslog`, `syslog:/PATH`, `syslog://HOST[:PORT]`). */
  target: string;
  /** Where problems with the trail itself are reported (the gateway gives its stderr). */
  logger: Logger;
  now?: () => Date;
  /** After a reported failure, further ones are only counted for this long (default a minute). */
  quietMs?: number;
}

/**
 * Appends lines with O_APPEND, so several writers (the gateway and the `gateway` command) never
 * interleave within a line. A write that fails is counted and reported once per burst; serving goes on.
 */
export class AuditLog {
  readonly #options: AuditLogOptions;
  readonly #syslog: SyslogSink | undefined;
  #fd: number | undefined;
  #closed = false;
  #failures = 0;
  /** Failures since the last report, and when that was. */
  #unreported = 0;
  #reportedAt: number | undefined;

  /** Opens the target now: a file that cannot be opened is the caller's error at start. */
  constructor(options: AuditLogOptions) {
    this.#options = options;
    const syslog = syslogTarget(options.target);
    if (syslog !== undefined) this.#syslog = new SyslogSink({ target: syslog, onFailure: (reason) => this.#failed(reason) });
    else if (options.target !== 'stdout') this.#fd = openSync(options.target, 'a', 0o600);
  }

  /** Lines not written (or not sent) since start: for the metrics. */
  get failures(): number {
    return this.#failures;
  }

  /** Writes the events worth auditing as they happen; returns the function that stops listening. */
  listen(events: EventBus): () => void {
    return events.on((event) => this.write(event));
  }

  write(event: GatewayEvent): void {
    const line = auditLine(event, (this.#options.now ?? (() => new Date()))());
    if (line !== undefined) this.writeLine(line);
  }

  writeLine(line: string): void {
    if (this.#closed) return this.#failed('the audit log is closed');
    if (this.#syslog) return this.#syslog.write(line);
    try {
      if (this.#fd === undefined) process.stdout.write(`${line}\n`);
      else writeSync(this.#fd, `${line}\n`);
    } catch (error) {
      this.#failed((error as Error).message);
      return;
    }
    if (this.#reportedAt !== undefined) {
      this.#options.logger.warn({ audit_log: this.#options.target, lost: this.#unreported, failures: this.#failures }, 'the audit log is written again');
      this.#reportedAt = undefined;
      this.#unreported = 0;
    }
  }

  /** SIGHUP: a rotated file is let go and the path opened afresh (when that fails, the old file is kept); syslog gets a fresh `logger`. */
  reopen(): void {
    this.#syslog?.restart();
    if (this.#fd === undefined) return;
    try {
      const next = openSync(this.#options.target, 'a', 0o600);
      closeSync(this.#fd);
      this.#fd = next;
    } catch (error) {
      this.#options.logger.error({ audit_log: this.#options.target, err: (error as Error).message }, 'cannot reopen the audit log; writing to the file open before');
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    await this.#syslog?.close();
  }

  #failed(reason: string): void {
    this.#failures += 1;
    this.#unreported += 1;
    const now = Date.now();
    if (this.#reportedAt !== undefined && now - this.#reportedAt < (this.#options.quietMs ?? 60_000)) return;
    this.#options.logger.error(
      { audit_log: this.#options.target, err: reason, lost: this.#unreported, failures: this.#failures },
      'cannot write the audit log; serving goes on (further failures are counted and reported at most once a minute)',
    );
    this.#reportedAt = now;
    this.#unreported = 0;
  }
}

/** How the `gateway` command writes its own lines: the same file (appended), or syslog; nothing for `stdout`. */
export type AuditDestination = { file: string } | { syslog: SyslogTarget } | undefined;

export function auditDestination(target: string | undefined): AuditDestination {
  if (target === undefined || target === '' || target === 'stdout') return undefined;
  const syslog = syslogTarget(target);
  return syslog === undefined ? { file: target } : { syslog };
}
