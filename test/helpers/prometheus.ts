// Reads Prometheus text exposition, and runs a real Prometheus (the Debian package) on loopback that scrapes one target, for metrics tests.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.js';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const unescape = (value: string) => value.replace(/\\(["\\n])/g, (_match, char: string) => (char === 'n' ? '\n' : char));

/** Every sample line of an exposition text (comments skipped). */
export function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = unescape(pair[2]!);
    const raw = match[3]!;
    samples.push({ name: match[1]!, labels, value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw) });
  }
  return samples;
}

/** The samples of `name` whose labels include `labels`. */
export function samplesOf(text: string, name: string, labels: Record<string, string> = {}): Sample[] {
  return parseSamples(text).filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value));
}

/** The value of the one sample of `name` with `labels` (undefined when there is none). */
export function valueOf(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samplesOf(text, name, labels);
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

export interface QueryResult {
  metric: Record<string, string>;
  value: number;
}

export interface RunningPrometheus {
  url: string;
  /** An instant query through /api/v1/query. */
  query(expression: string): Promise<QueryResult[]>;
  /** The scrape target's health as Prometheus reports it (`up`, `down`, `unknown`). */
  targetHealth(): Promise<string | undefined>;
  /** Everything Prometheus wrote, for failure messages. */
  output(): string;
  close(): Promise<void>;
}

async function getJson(url: string): Promise<unknown> {
  const response = await fetch(url);
  const body = (await response.json()) as { status?: string; data?: unknown; error?: string };
  if (body.status !== 'success') throw new Error(`${url}: ${response.status} ${body.error ?? JSON.stringify(body)}`);
  return body.data;
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * Starts `prometheus` with its own storage in a temp folder, listening on a free loopback port and
 * scraping `target` (HOST:PORT) every second; resolves once it is ready.
 */
export async function startPrometheus(target: string): Promise<RunningPrometheus> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'prometheus-test-'));
  const config = path.join(dir, 'prometheus.yml');
  await writeFile(
    config,
    ['global:', '  scrape_interval: 1s', '  scrape_timeout: 1s', '  evaluation_interval: 1s', 'scrape_configs:', '  - job_name: gateway', '    static_configs:', `      - targets: ['${target}']`, ''].join('\n'),
  );
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    'prometheus',
    [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<never>((_resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`prometheus exited (${code ?? signal}) before it was ready:\n${output}`)));
  });
  exited.catch(() => undefined);
  const close = async () => {
    await stop(child);
    await rm(dir, { recursive: true, force: true });
  };
  const ready = (async () => {
    for (let attempt = 0; attempt < 300; attempt++) {
      const answered = await fetch(`${url}/-/ready`).then((response) => response.ok, () => false);
      if (answered) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`prometheus was not ready after 30 s:\n${output}`);
  })();
  try {
    await Promise.race([ready, exited]);
  } catch (error) {
    await close();
    throw error;
  }
  return {
    url,
    async query(expression) {
      const data = (await getJson(`${url}/api/v1/query?${new URLSearchParams({ query: expression })}`)) as { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
      if (data.resultType !== 'vector') throw new Error(`expected a vector for ${expression}, got ${data.resultType}`);
      return data.result.map((entry) => ({ metric: entry.metric, value: Number(entry.value[1]) }));
    },
    async targetHealth() {
      const data = (await getJson(`${url}/api/v1/targets`)) as { activeTargets: { health: string }[] };
      return data.activeTargets[0]?.health;
    },
    output: () => output,
    close,
  };
}
