// A logger for store tests: records every call, so tests can check what was logged and how often.

import type { FileLog } from '../../src/config/watched-file.js';

export interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  fields: Record<string, unknown>;
  message: string;
}

export interface RecordingLog extends FileLog {
  entries: LogEntry[];
  /** Entries at one level, as "message" strings. */
  messages(level: LogEntry['level']): string[];
}

export function recordingLog(): RecordingLog {
  const entries: LogEntry[] = [];
  const at = (level: LogEntry['level']) => (fields: object, message: string) => {
    entries.push({ level, fields: { ...fields } as Record<string, unknown>, message });
  };
  return {
    entries,
    messages: (level) => entries.filter((entry) => entry.level === level).map((entry) => entry.message),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
  };
}
