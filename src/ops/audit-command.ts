// The `gateway` command's own audit lines (CI tokens created and revoked): to the gateway's audit file or syslog, by the operator's account.

import { closeSync, openSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { CiTokenChanged } from './events.js';
import { auditDestination, auditLine } from './audit-log.js';
import { sendSyslogLine, syslogProblem } from './audit-syslog.js';

/** Who runs the command: the account's name and uid (a container's uid may have no name). */
export function operatorName(): string {
  let name = 'unknown';
  try {
    name = os.userInfo().username;
  } catch {
    // no passwd entry for this uid
  }
  return `${name} (uid ${process.getuid?.() ?? '?'})`;
}

/** An audit trail opened for one command; `write` throws when the line was not written. */
export interface CommandAudit {
  write(event: Omit<CiTokenChanged, 'user' | 'remote'>): void;
}

/**
 * The audit trail GATEWAY_AUDIT_LOG names, checked now so a command can refuse before it acts:
 * throws an Error saying why it cannot be written. Undefined when there is none to write (off, or
 * `stdout`, which is the gateway's own and no command's).
 */
export function openCommandAudit(target: string | undefined, cwd: string, now: () => Date = () => new Date()): CommandAudit | undefined {
  const destination = auditDestination(target);
  if (destination === undefined) return undefined;
  const lineOf = (event: Omit<CiTokenChanged, 'user' | 'remote'>) => auditLine({ ...event, user: operatorName(), remote: 'command line' } as CiTokenChanged, now()) ?? '';
  if ('syslog' in destination) {
    const problem = syslogProblem(destination.syslog);
    if (problem !== undefined) throw new Error(problem);
    return { write: (event) => sendSyslogLine(destination.syslog, lineOf(event)) };
  }
  const file = path.resolve(cwd, destination.file);
  // Opened (created 0600 when missing) now, closed again: the write later opens it afresh, after a rotation too.
  closeSync(openSync(file, 'a', 0o600));
  return {
    write(event) {
      const fd = openSync(file, 'a', 0o600);
      try {
        writeSync(fd, `${lineOf(event)}\n`);
      } finally {
        closeSync(fd);
      }
    },
  };
}
