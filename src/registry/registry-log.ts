// Reads the registry's log lines (logrus text) into levels and messages for the gateway's logger.

type ForwardLevel = 'debug' | 'info' | 'warn' | 'error';

export interface ParsedLine {
  level: ForwardLevel;
  message: string;
  fields?: string;
}

const registryLevels: Record<string, ForwardLevel> = {
  trace: 'debug',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  warning: 'warn',
  // The registry logs every 4xx answer (a HEAD before a push, say) at error: not the gateway's errors.
  error: 'warn',
  fatal: 'error',
  panic: 'error',
};

/** Fields repeated on every line that say nothing about the event. */
const noiseFields = /\b(?:time|level|msg|go\.version|instance\.id|version)=(?:"(?:[^"\\]|\\.)*"|\S+)\s*/g;

function unquote(value: string): string {
  if (!value.startsWith('"')) return value;
  try {
    return JSON.parse(value) as string;
  } catch {
    return value.slice(1, -1);
  }
}

/** Reads a logrus text (logfmt) line loosely; anything else passes through as plain text. */
export function parseRegistryLine(line: string): ParsedLine {
  const levelMatch = /\blevel=(\w+)/.exec(line);
  const msgMatch = /\bmsg=("(?:[^"\\]|\\.)*"|\S+)/.exec(line);
  if (!levelMatch || !msgMatch) {
    const crashed = /^(?:panic:|fatal error:)/.test(line);
    return { level: crashed ? 'error' : 'info', message: line };
  }
  let level = registryLevels[levelMatch[1]!.toLowerCase()] ?? 'info';
  // One line per request: the gateway already logs requests, so only server errors stay visible.
  const status = /\bhttp\.response\.status=(\d+)/.exec(line);
  if (status) level = Number(status[1]) >= 500 ? 'warn' : 'debug';
  const fields = line.replace(noiseFields, '').trim();
  return fields === '' ? { level, message: unquote(msgMatch[1]!) } : { level, message: unquote(msgMatch[1]!), fields };
}

/** A Go panic's goroutine dump buries the one line that says what went wrong: keep what precedes it. */
export function withoutStackTraces(lines: string[]): string[] {
  const traceStart = lines.findIndex((line) => /^goroutine \d+ \[/.test(line));
  return traceStart === -1 ? lines : lines.slice(0, traceStart);
}
