// Starts a private redis-server on a loopback port for a test (no persistence), and stops or restarts it on the same port.

import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './ports.js';

export interface TestRedis {
  port: number;
  /** redis://127.0.0.1:PORT, with the password when one was asked for. */
  url: string;
  /** Stops the server (SIGTERM) and waits until it has exited; what it held is gone. */
  stop(): Promise<void>;
  /** Starts a fresh, empty server on the same port. */
  start(): Promise<void>;
  /** Whether the server is running. */
  readonly running: boolean;
}

export interface TestRedisOptions {
  /** Required of clients (requirepass). */
  password?: string;
}

/** Resolves once the server says it accepts connections; rejects when it exits first. */
function ready(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('Ready to accept connections')) {
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`redis-server exited (${code}) before it was ready:\n${output}`)));
  });
}

export async function startRedis(options: TestRedisOptions = {}): Promise<TestRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const args = ['--save', '', '--appendonly', 'no', '--port', String(port), '--bind', '127.0.0.1', '--protected-mode', 'yes', '--loglevel', 'notice'];
  if (options.password !== undefined) args.push('--requirepass', options.password);
  const redis: TestRedis = {
    port,
    url: options.password === undefined ? `redis://127.0.0.1:${port}` : `redis://:${encodeURIComponent(options.password)}@127.0.0.1:${port}`,
    get running() {
      return child !== undefined;
    },
    async start() {
      if (child !== undefined) return;
      const started = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'inherit'] });
      child = started;
      started.once('exit', () => {
        if (child === started) child = undefined;
      });
      try {
        await ready(started);
      } catch (error) {
        started.kill('SIGKILL');
        child = undefined;
        throw error;
      }
    },
    async stop() {
      const running = child;
      if (running === undefined) return;
      const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
      running.kill('SIGTERM');
      await exited;
      child = undefined;
    },
  };
  await redis.start();
  return redis;
}
