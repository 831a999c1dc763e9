// Measures the web UI's browse reader alone on a 10,000-repository registry: the start-up catalog read, the first list page, a search, a far page, a repository page.

import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { parseAccessFile } from '../src/access/access-rules.js';
import { RegistryProcess } from '../src/registry/registry-process.js';
import { UpstreamPool } from '../src/registry/upstreams.js';
import { createBrowseReader } from '../src/ui/browse/reader.js';
import { seedRegistry } from './ui-seed.js';

const targetMs = 1000;
/** bench pulls everything but ns-00 to ns-09, so the list is filtered by the rules for real. */
const rules = `rules:
  - users: [bench]
    repositories: ["**"]
    actions: [pull]
  - users: [bench]
    repositories: ["ns-0?/**"]
    actions: [pull]
    effect: deny
`;

function setting(name: string, fallback: number, max: number): number {
  const value = Number(process.env[name] ?? String(fallback));
  if (!Number.isInteger(value) || value < 1 || value > max) throw new Error(`${name} must be a whole number from 1 to ${max}`);
  return value;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function time<T>(work: () => Promise<T>): Promise<{ ms: number; result: T }> {
  const started = performance.now();
  const result = await work();
  return { ms: performance.now() - started, result };
}

async function main(): Promise<void> {
  const count = setting('BENCH_UI_REPOS', 10_000, 100_000);
  const rounds = setting('BENCH_UI_ROUNDS', 15, 200);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-ui-reader-bench-'));
  const logger = pino({ level: 'warn' });
  const dataDir = path.join(dir, 'registry-data');
  const registry = new RegistryProcess({ binary: '/usr/bin/docker-registry', dataDir, logger, extraConfig: { log: { level: 'warn' } } });
  try {
    await registry.start();
    const seeded = await seedRegistry(registry.url, count, 16, (done) => process.stdout.write(`\rseeded ${done}`));
    console.log(`\nseeded ${seeded.repositories} repositories in ${seeded.seconds.toFixed(1)} s`);
    const upstreams = new UpstreamPool([new URL(registry.url)], { logger, checkIntervalMs: 0 });
    const authorizer = parseAccessFile(rules, 'access.yml').rules;
    const storageRoot = path.join(dataDir, 'registry');
    const viewer = { identity: { user: 'bench' } };
    const results: Record<string, number> = {};

    // 1. A view at the very moment the reader starts: it waits for the catalog read (registry 2.8 walks its storage from the start for every page).
    const racing = createBrowseReader({ upstreams, authorizer, logger, storageRoot });
    const startUp = await time(() => racing.listRepositories(viewer, { page: 1, perPage: 50 }));
    racing.close();
    results.startUpReadMs = startUp.ms;
    console.log(`first page while the start-up catalog read (${count} names in pages of 1000) is under way: ${startUp.ms.toFixed(1)} ms, ${startUp.result.total} visible`);

    // 2. The first page once the start-up read is done: tag counts and last pushes still read cold.
    const reader = createBrowseReader({ upstreams, authorizer, logger, storageRoot });
    await reader.listRepositories(viewer, { page: 200, perPage: 1 });
    const first = await time(() => reader.listRepositories(viewer, { page: 1, perPage: 50 }));
    results.firstPageMs = first.ms;
    console.log(`first page after the start-up read (50 tag counts and last pushes read): ${first.ms.toFixed(1)} ms`);

    const measure = async (label: string, key: string, work: () => Promise<unknown>) => {
      const times: number[] = [];
      for (let i = 0; i < rounds; i++) times.push((await time(work)).ms);
      results[key] = median(times);
      console.log(`${label}: median ${median(times).toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms`);
    };
    await measure('first page again', 'warmFirstPageMs', () => reader.listRepositories(viewer, { page: 1, perPage: 50 }));
    await measure('substring search app-0424', 'searchMs', () => reader.listRepositories(viewer, { search: 'app-0424', page: 1, perPage: 50 }));
    await measure('page 150', 'farPageMs', () => reader.listRepositories(viewer, { page: 150, perPage: 50 }));
    await measure('repository page ns-42/app-00042', 'repositoryMs', () => reader.repository(viewer, 'ns-42/app-00042', { page: 1, perPage: 50 }));
    reader.close();
    upstreams.close();
    const met = results.firstPageMs! < targetMs && results.warmFirstPageMs! < targetMs;
    console.log(met ? `target met: the first page under ${targetMs} ms once the start-up read is done` : `TARGET MISSED: ${targetMs} ms`);
    console.log(JSON.stringify({ bench: 'ui-reader', repositories: count, rounds, ...Object.fromEntries(Object.entries(results).map(([k, v]) => [k, Math.round(v * 10) / 10])) }));
  } finally {
    await registry.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
