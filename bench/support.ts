// Plumbing shared by the transfer benchmark's modules: teardown, time limits, running programs, HTTPS GETs, medians.

import { execFile, type ChildProcess } from 'node:child_process';
import https from 'node:https';
import path from 'node:path';
import { createInterface } from 'node:readline';

export const mib = 1024 * 1024;
export const gib = 1024 * mib;
const stopTimeoutMs = 10_000;

/** Undo steps run last-in first-out, once, whether the run succeeded, failed or was interrupted. */
export class Teardown {
  readonly #steps: { what: string; undo: () => Promise<unknown> }[] = [];
  #running: Promise<void> | undefined;

  add(what: string, undo: () => Promise<unknown>): void {
    this.#steps.push({ what, undo });
  }

  run(): Promise<void> {
    this.#running ??= (async () => {
      for (const step of this.#steps.reverse()) {
        try {
          await step.undo();
        } catch (error) {
          process.stderr.write(`cleanup: could not ${step.what}: ${(error as Error).message}\n`);
        }
      }
    })();
    return this.#running;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with a message naming `what` if `work` takes longer than `ms`. */
export async function withTimeout<T>(what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)} s`)), ms);
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs a program to completion; resolves with its stdout, or rejects with its stderr. */
export function run(file: string, args: string[], options: { cwd?: string; stdin?: string; timeoutMs?: number; okExitCodes?: number[] } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { cwd: options.cwd, timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * mib }, (error, stdout, stderr) => {
      const code = typeof error?.code === 'number' ? error.code : undefined;
      if (error && !(code !== undefined && options.okExitCodes?.includes(code))) {
        reject(new Error(`${path.basename(file)} ${args[0] ?? ''} failed: ${stderr.trim() || error.message}`));
        return;
      }
      resolve(stdout);
    });
    child.stdin?.end(options.stdin ?? '');
  });
}

/** The first line a program prints for its version (on stdout, or stderr as nginx does), or null when it is missing. */
export function versionOf(file: string, args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 10_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') return resolve(null);
      resolve((stdout.trim() || stderr.trim()).split('\n')[0]!.trim() || null);
    });
  });
}

/** Keeps a child's last output lines for error messages; JSON lines (the gateway's warnings) go to our stderr. */
export function watchOutput(child: ChildProcess, name: string, tail: string[]): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      if (line.trim() === '') return;
      tail.push(line);
      if (tail.length > 30) tail.shift();
      if (line.startsWith('{')) process.stderr.write(`[${name}] ${line}\n`);
    });
  }
}

/** Children alive right now: killed synchronously if this process exits without stopping them. */
const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/** Tracks a child until it exits; resolves with how it ended. */
export function track(child: ChildProcess): Promise<string> {
  liveChildren.add(child);
  return new Promise<string>((resolve) => {
    child.once('error', (error) => {
      liveChildren.delete(child);
      resolve(`could not be started (${error.message})`);
    });
    child.once('exit', (code, signal) => {
      liveChildren.delete(child);
      resolve(signal ? `was killed by ${signal}` : `exited with code ${code}`);
    });
  });
}

/** SIGTERM (or `signal`), then SIGKILL after 10 s. */
export async function stopChild(child: ChildProcess, ended: Promise<unknown>, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  const outcome = await Promise.race([ended.then(() => 'ended'), sleep(stopTimeoutMs).then(() => 'timeout')]);
  if (outcome === 'timeout') {
    child.kill('SIGKILL');
    await ended;
  }
}

/** One HTTPS GET trusting only `ca`; resolves with status and body. */
export function httpsGet(url: string, ca: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = https.get(url, { ca, headers, agent: false, timeout: 5000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${url} timed out`)));
    request.on('error', reject);
  });
}

/** Polls `probe` until it resolves true; fails early with `exited()`'s reason, or after `timeoutMs`. */
export async function waitUntil(what: string, timeoutMs: number, probe: () => Promise<boolean>, exited: () => string | undefined, tail: string[]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const end = exited();
    if (end) throw new Error(`${what} ${end} before answering; its last output:\n${tail.join('\n')}`);
    try {
      if (await probe()) return;
    } catch {
      // Not listening yet.
    }
    await sleep(200);
  }
  throw new Error(`${what} did not answer within ${timeoutMs / 1000} s; its last output:\n${tail.join('\n')}`);
}

export function progress(message: string): void {
  process.stderr.write(`  ... ${message}\n`);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
