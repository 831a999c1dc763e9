// `npm run bench`: what the gateway costs next to the registry alone, the registry's own TLS and nginx: transfers, concurrent pulls, request rates, CPU and memory.

import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { buildOciImage } from '../test/helpers/oci-image.js';
import type { SkopeoContext } from '../test/helpers/skopeo.js';
import { measureConcurrentPulls, type ConcurrentResult } from './concurrent.js';
import { addGatewayUser } from './fronts.js';
import { describeMachine, readSettings, type Settings } from './machine.js';
import { connections, measureRates, type RateResult } from './rates.js';
import { printConcurrent, printRates, printTransfers, summarizeTransfers } from './report.js';
import { startStage } from './stage.js';
import { mib, progress, round, Teardown } from './support.js';
import { measureTransfers } from './transfers.js';

async function prepare(settings: Settings, teardown: Teardown) {
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'gateway-bench-'));
  teardown.add(`remove ${workDir}`, () => rm(workDir, { recursive: true, force: true }));
  const gatewayDir = path.join(workDir, 'gateway');
  const skopeo: SkopeoContext = { certDir: path.join(workDir, 'skopeo-certs'), authFile: path.join(workDir, 'skopeo-auth.json') };
  await mkdir(gatewayDir, { recursive: true });
  await mkdir(skopeo.certDir, { recursive: true });
  const password = randomBytes(18).toString('base64url');
  await addGatewayUser(gatewayDir, password);
  progress(`building an image with one ${settings.layerMiB} MiB random layer`);
  const image = await buildOciImage({ dir: path.join(workDir, 'image'), layers: [{ sizeBytes: settings.layerMiB * mib }] });
  const logger = pino({ level: 'warn', base: { component: 'bench' } }, pino.destination(2));
  return { workDir, gatewayDir, skopeo, password, image, logger };
}

async function benchmark(settings: Settings, teardown: Teardown): Promise<void> {
  const machine = await describeMachine();
  const setup = await prepare(settings, teardown);
  const layerBytes = setup.image.layerSizes[0]!;
  const withNginx = machine.nginx !== null;
  if (!withNginx) progress('nginx is not installed (apt-get install -y nginx-light): no nginx figures');

  const transfers = await measureTransfers({ ...setup, rounds: settings.rounds, transferTimeoutMs: settings.transferTimeoutMs, withNginx });

  const stageTeardown = new Teardown();
  let concurrent: ConcurrentResult[];
  let rates: RateResult[] | null = null;
  const rateSkipped = machine.ab === null ? 'ab is not installed (apt-get install -y apache2-utils); request rates not measured' : null;
  try {
    const stage = await startStage({ ...setup, workers: settings.workers, withNginx, transferTimeoutMs: settings.transferTimeoutMs, teardown: stageTeardown });
    concurrent = await measureConcurrentPulls({ stage, clientCounts: settings.clients, rounds: settings.rounds, transferTimeoutMs: settings.transferTimeoutMs });
    if (rateSkipped) progress(rateSkipped);
    else rates = await measureRates({ stage, seconds: settings.rateSeconds });
  } finally {
    await stageTeardown.run();
  }

  const loadAtEnd = round(os.loadavg()[0]!, 2);
  const summaries = summarizeTransfers(transfers, layerBytes);
  console.log('\nregistry-gateway transfer benchmark');
  console.log(`machine: ${machine.cpus} cpus (${machine.cpuModel}), ${machine.os}, node ${machine.node}, skopeo ${machine.skopeo}, ab ${machine.ab ?? 'missing'}, nginx ${machine.nginx ?? 'missing'}`);
  console.log(`load average (1 min): ${machine.loadAtStart} at start, ${loadAtEnd} at end${Math.max(machine.loadAtStart, loadAtEnd) > machine.cpus / 2 ? ' -- other work was running: trust the CPU/GiB columns over the times' : ''}`);
  console.log(`image: one ${settings.layerMiB} MiB random layer (${(layerBytes / mib).toFixed(1)} MiB gzipped), ${settings.rounds} round${settings.rounds === 1 ? '' : 's'}, medians; workers compared: ${settings.workers.join(', ')}\n`);
  printTransfers(summaries);
  printConcurrent(concurrent);
  printRates(rates, rateSkipped, settings.rateSeconds, connections);
  console.log(JSON.stringify({ bench: 'transfer', machine, settings, layerBytes, loadAtEnd, transfers: summaries, concurrent, rates, rateSkipped }));
}

async function main(): Promise<number> {
  const teardown = new Teardown();
  const interrupted = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: stopping servers and removing temporary files\n`);
    void teardown.run().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    await benchmark(readSettings(process.env), teardown);
    return 0;
  } catch (error) {
    process.stderr.write(`bench failed: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await teardown.run();
  }
}

process.exit(await main());
