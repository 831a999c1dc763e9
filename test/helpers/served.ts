// `gateway serve` as a child process, as an operator runs it: its log lines parsed as they come, waited for, and the process stopped at the end.

import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

export type LogEntry = Record<string, any>;

export class ServedGateway {
  readonly child: ChildProcess;
  /** Every JSON line on stdout so far, in order. */
  readonly lines: LogEntry[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters = new Set<() => void>();

  /** Starts `gateway serve` in `cwd` with PATH, HOME and `env` only. */
  constructor(cwd: string, env: Record<string, string>) {
    this.child = spawn(process.execPath, [cli, 'serve'], { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      const text = partial + chunk.toString('utf8');
      const complete = text.split('\n');
      partial = complete.pop()!;
      for (const line of complete) {
        try {
          this.lines.push(JSON.parse(line));
        } catch {
          this.lines.push({ text: line });
        }
      }
      for (const wake of this.#waiters) wake();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString('utf8');
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    void this.exited.then(() => {
      for (const wake of this.#waiters) wake();
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first line from index `from` on that matches; rejects when the process exits first or after `timeoutMs`. */
  waitFor(match: (entry: LogEntry) => boolean, from = 0, timeoutMs = 60_000): Promise<LogEntry> {
    return new Promise((resolve, reject) => {
      const look = () => {
        const found = this.lines.slice(from).find(match);
        if (found) return finish(() => resolve(found));
        if (!this.running) return finish(() => reject(new Error(`gateway exited before the line appeared; stderr:\n${this.stderr}`)));
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`no such line within ${timeoutMs} ms`))), timeoutMs);
      const finish = (then: () => void) => {
        clearTimeout(timer);
        this.#waiters.delete(look);
        then();
      };
      this.#waiters.add(look);
      look();
    });
  }

  /** Where the log is now: pass it to waitFor or requests to see only what comes after. */
  mark(): number {
    return this.lines.length;
  }

  /** The access log's request lines, from mark `from` on. */
  requests(from = 0): LogEntry[] {
    return this.lines.slice(from).filter((entry) => entry.msg === 'request');
  }

  /** SIGTERM, then waits for the exit (a gateway still running at the end of a test). */
  async stop(): Promise<void> {
    if (this.running) this.child.kill('SIGTERM');
    await this.exited;
  }
}
