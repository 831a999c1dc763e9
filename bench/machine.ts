// What the benchmark ran on, and its settings from BENCH_* variables (a bad value stops the run before anything starts).

import os from 'node:os';
import { round, versionOf } from './support.js';

export interface Machine {
  cpus: number;
  cpuModel: string;
  os: string;
  node: string;
  skopeo: string;
  ab: string | null;
  nginx: string | null;
  /** 1-minute load average when the run started: above the CPU count, other work skews the figures. */
  loadAtStart: number;
}

export async function describeMachine(): Promise<Machine> {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    skopeo: (await versionOf('skopeo', ['--version']))?.replace(/^skopeo version /, '') ?? 'missing',
    ab: (await versionOf('ab', ['-V']))?.replace(/^This is ApacheBench, /, '').replace(/ <.*$/, '') ?? null,
    nginx: (await versionOf('nginx', ['-v']))?.replace(/^nginx version: nginx\//, '') ?? null,
    loadAtStart: round(os.loadavg()[0]!, 2),
  };
}

export interface Settings {
  layerMiB: number;
  rounds: number;
  /** Concurrent pull client counts (BENCH_CLIENTS, default 1,4,8). */
  clients: number[];
  /** Worker counts for the gateway (GATEWAY_WORKERS) and nginx (worker_processes) (BENCH_WORKERS, default 1,2). */
  workers: number[];
  /** Seconds per request-rate run (BENCH_RATE_SECONDS, default 10). */
  rateSeconds: number;
  /** A transfer slower than 1 MiB/s (plus a minute) is treated as hung. */
  transferTimeoutMs: number;
}

function wholeNumber(raw: string, name: string, max: number): number {
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isInteger(value) || value < 1 || value > max) throw new Error(`${name} must hold whole numbers from 1 to ${max}, got "${raw}"`);
  return value;
}

function list(env: NodeJS.ProcessEnv, name: string, fallback: string, max: number): number[] {
  const raw = env[name] ?? fallback;
  const values = raw.split(',').map((part) => wholeNumber(part, name, max));
  return [...new Set(values)];
}

function one(env: NodeJS.ProcessEnv, name: string, fallback: number, max: number): number {
  return wholeNumber(env[name] ?? String(fallback), name, max);
}

/** BENCH_QUICK=1 is BENCH_LAYER_MIB=64 BENCH_ROUNDS=1 BENCH_RATE_SECONDS=5; explicit variables still win. */
export function readSettings(env: NodeJS.ProcessEnv): Settings {
  const quick = env.BENCH_QUICK === '1';
  const layerMiB = one(env, 'BENCH_LAYER_MIB', quick ? 64 : 512, 16_384);
  return {
    layerMiB,
    rounds: one(env, 'BENCH_ROUNDS', quick ? 1 : 3, 20),
    clients: list(env, 'BENCH_CLIENTS', '1,4,8', 64),
    workers: list(env, 'BENCH_WORKERS', '1,2', 64),
    rateSeconds: one(env, 'BENCH_RATE_SECONDS', quick ? 5 : 10, 600),
    transferTimeoutMs: 60_000 + layerMiB * 1000,
  };
}
