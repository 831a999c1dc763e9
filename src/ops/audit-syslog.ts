// Audit lines to syslog as RFC 5424 messages, through util-linux's `logger`: one long-lived child per gateway, fed one line per message.

import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { statSync } from 'node:fs';
import { createInterface } from 'node:readline';

/**
 * Where syslog messages go: a local socket (`syslog` is /dev/log, `syslog:/run/x.sock` another
 * one), or a syslog server over UDP (`syslog://HOST[:PORT]`, port 514 by default).
 */
export type SyslogTarget = { socket: string } | { host: string; port: number };

/** `syslog`, `syslog:/PATH` or `syslog://HOST[:PORT]` as a target; undefined for anything else (a file, `stdout`). */
export function syslogTarget(value: string): SyslogTarget | undefined {
  if (value === 'syslog') return { socket: '/dev/log' };
  if (!value.startsWith('syslog:')) return undefined;
  const rest = value.slice('syslog:'.length);
  if (rest.startsWith('//')) {
    const match = /^\/\/(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+)(?::(\d{1,5}))?$/.exec(rest);
    const port = Number(match?.[2] ?? 514);
    if (!match?.[1] || port < 1 || port > 65535) throw new Error(`"${value}" is not syslog://HOST[:PORT]`);
    return { host: match[1].replace(/^\[|\]$/g, ''), port };
  }
  if (!rest.startsWith('/')) throw new Error(`"${value}" is not syslog:/ABSOLUTE/PATH of a socket`);
  return { socket: rest };
}

/** What the audit trail sends with each message: facility authpriv, severity info, app-name registry-gateway, msgid audit. */
export function loggerArguments(target: SyslogTarget, pid: number): string[] {
  const where = 'socket' in target ? ['--socket', target.socket, '--socket-errors=on'] : ['--server', target.host, '--port', String(target.port), '--udp'];
  return [...where, '--rfc5424=notq', '--tag', 'registry-gateway', `--id=${pid}`, '--priority', 'authpriv.info', '--msgid', 'audit', '--size', '16384', '--skip-empty'];
}

/** Why syslog cannot be used now (no util-linux `logger`, no socket), or undefined when it can. */
export function syslogProblem(target: SyslogTarget, command = 'logger'): string | undefined {
  const probe = spawnSync(command, ['--version'], { encoding: 'utf8', timeout: 5000 });
  if (probe.error || probe.status !== 0 || !/util-linux/.test(`${probe.stdout}${probe.stderr}`)) {
    return `syslog is sent through util-linux's \`logger\` command, which was not found on PATH (Debian: bsdutils; Alpine: util-linux-misc)`;
  }
  if ('socket' in target) {
    try {
      if (!statSync(target.socket).isSocket()) return `${target.socket} is not a socket`;
    } catch (error) {
      return `no syslog socket at ${target.socket} (${(error as NodeJS.ErrnoException).code ?? String(error)}): is a syslog daemon running?`;
    }
  }
  return undefined;
}

/** One message now, from a short-lived process (the `gateway` command): throws when it was not sent. */
export function sendSyslogLine(target: SyslogTarget, line: string, command = 'logger'): void {
  const sent = spawnSync(command, loggerArguments(target, process.pid), { input: `${line}\n`, encoding: 'utf8', timeout: 10_000 });
  if (sent.error) throw sent.error;
  if (sent.status !== 0 || sent.stderr.trim() !== '') throw new Error(sent.stderr.trim() || `logger exited with ${sent.status}`);
}

const restartPauseMs = 1000;

export interface SyslogSinkOptions {
  target: SyslogTarget;
  /** A line that was (or may have been) lost, with why. */
  onFailure(reason: string): void;
  /** Lines waiting for `logger` beyond this many bytes are dropped (a stalled syslog never grows memory). */
  maxBufferedBytes?: number;
  command?: string;
}

/**
 * Writes lines to a `logger` child's stdin, started on the first line and again after it died.
 * Each report of `logger` on stderr, each exit of it, and each line dropped here is a failure.
 */
export class SyslogSink {
  readonly #options: SyslogSinkOptions;
  #child: ChildProcessWithoutNullStreams | undefined;
  /** After `logger` died, it is not started again before this time (no process per line when it cannot run). */
  #restartAt = 0;

  constructor(options: SyslogSinkOptions) {
    this.#options = options;
  }

  write(line: string): void {
    if (this.#child === undefined && Date.now() < this.#restartAt) {
      this.#options.onFailure('logger is not running: line dropped');
      return;
    }
    const child = this.#child ?? this.#start();
    if (child.stdin.writableLength > (this.#options.maxBufferedBytes ?? 1024 * 1024)) {
      this.#options.onFailure('syslog is not keeping up: line dropped');
      return;
    }
    child.stdin.write(`${line}\n`);
  }

  /** SIGHUP: a fresh `logger`; the old one sends what it was given, then ends. */
  restart(): void {
    const old = this.#child;
    this.#child = undefined;
    old?.stdin.end();
  }

  /** Ends `logger` once it has sent what it was given (or after `graceMs`). */
  async close(graceMs = 2000): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    child.stdin.end();
    const timer = setTimeout(() => child.kill('SIGTERM'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  #start(): ChildProcessWithoutNullStreams {
    // With socket errors on, `logger` reports a message it could not send and ends when the socket is gone (a
    // syslog daemon restarting): that is counted, and the next line after a pause starts it again.
    const child = spawn(this.#options.command ?? 'logger', loggerArguments(this.#options.target, process.pid), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child = child;
    child.stdout.resume();
    // A write to a logger that is gone fails here, not at the call: it is reported through the exit.
    child.stdin.on('error', () => undefined);
    createInterface({ input: child.stderr }).on('line', (message) => this.#options.onFailure(`logger: ${message.replace(/^logger: /, '')}`));
    child.once('error', (error) => {
      if (this.#child === child) this.#child = undefined;
      this.#restartAt = Date.now() + restartPauseMs;
      this.#options.onFailure(`cannot run logger: ${error.message}`);
    });
    child.once('exit', (code, signal) => {
      if (this.#child !== child) return;
      this.#child = undefined;
      this.#restartAt = Date.now() + restartPauseMs;
      this.#options.onFailure(`logger exited (${signal ?? `code ${code}`}); lines it had not sent are lost, the next line starts it again`);
    });
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr] as const) (stream as unknown as { unref?: () => void }).unref?.();
    return child;
  }
}
