// `gateway serve` with several workers: the primary checks, locks, creates first-run files, runs the registry, GC and ACME once, and supervises the workers that serve.

import { AggregatorRegistry } from 'prom-client';
import type { Logger } from 'pino';
import { publicHostFor } from '../public-host.js';
import type { Config } from '../config/config.js';
import { lockDataDir, type DataDirLock } from '../config/data-lock.js';
import { preflight, type Preflight } from '../config/preflight.js';
import { createFirstRunFiles, startEmbeddedRegistry } from '../first-run.js';
import type { GatewayOptions } from '../gateway.js';
import { scheduleFor } from '../ops/gc-schedule.js';
import { listenForMetrics } from '../ops/metrics-setup.js';
import type { RunningMetricsListener } from '../ops/metrics-listener.js';
import type { RegistryProcess } from '../registry/registry-process.js';
import { InProcessSharedState, noticeChannels } from '../state/shared-state.js';
import { acmeManagerFor } from '../tls/acme/from-config.js';
import { startHttpListener, type RunningHttpListener } from '../tls/http-listener.js';
import { ClusterChallenges } from './acme-share.js';
import { WorkerSupervisor } from './supervisor.js';

/** What `serve` holds of a running cluster: what SIGHUP and SIGTERM do. */
export interface RunningCluster {
  /** Every worker does what SIGHUP does in a single gateway; the primary reads certs/acme again. */
  reload(): Promise<void>;
  /** Workers drain (each with the shutdown grace), then the registry stops and the data folder is let go. */
  close(): Promise<void>;
}

/** Checks what a single gateway checks and takes the data folder, before anything else. */
export async function startCluster(config: Readonly<Config>, options: GatewayOptions): Promise<RunningCluster> {
  const { logger } = options;
  const checked = await preflight(config, options.env);
  for (const warning of checked.warnings) logger.warn(warning);
  const lock =
    checked.registryBinary === undefined
      ? undefined
      : await lockDataDir(config.dataDir, (error) => logger.error({ dataDir: config.dataDir, err: error.message }, 'lost the lock on the data folder: another gateway could start on the same data'));
  try {
    return await startPrimary(config, options, checked, lock);
  } catch (error) {
    await lock?.release();
    throw error;
  }
}

async function startPrimary(config: Readonly<Config>, options: GatewayOptions, checked: Preflight, lock: DataDirLock | undefined): Promise<RunningCluster> {
  const { logger } = options;
  await createFirstRunFiles(config, options, checked);
  const registry = checked.registryBinary === undefined ? undefined : await startEmbeddedRegistry(config, options, checked.registryBinary);
  // Without Redis the workers share the primary's state: one count of login failures for all.
  const state = config.redis === undefined ? new InProcessSharedState({ onListenerError: (error) => logger.error({ err: (error as Error).message }, 'a notice listener failed') }) : undefined;

  let supervisor: WorkerSupervisor | undefined;
  const challenges = new ClusterChallenges({
    broadcast: (change) => supervisor?.broadcast({ type: 'gateway:challenge', change }),
    sync: async () => supervisor?.sync(),
  });
  let certificate: { cert: string; key: string } | undefined;
  const acme = acmeManagerFor(config, {
    logger,
    challenges,
    install: (cert, key) => {
      certificate = { cert, key };
      supervisor?.broadcast({ type: 'gateway:certificate', cert, key });
    },
    onChange: () => supervisor?.broadcast({ type: 'gateway:acme-status', status: acme?.status() }),
    retryMs: options.acmeRetryMs,
    maxRetryMs: options.acmeMaxRetryMs,
    now: options.acmeNow,
  });
  const workers = new WorkerSupervisor({
    count: config.workers,
    logger,
    state,
    setup: () => ({ type: 'gateway:setup', registry: registry?.url, certificate, acmeStatus: acme?.status(), challenges: challenges.current() }),
  });
  supervisor = workers;
  for (const channel of noticeChannels) state?.subscribe(channel, (message) => workers.broadcast({ type: 'gateway:notice', channel, message }));

  let httpListener: RunningHttpListener | undefined;
  let metrics: RunningMetricsListener | undefined;
  let address: { url: string; port: number };
  try {
    await acme?.loadFromDisk();
    address = await workers.start();
    if (config.httpListen) {
      httpListener = await startHttpListener({ listen: config.httpListen, challenges, redirectHost: (host) => publicHostFor(config, host), onAnswer: (answer) => logger.debug(answer, 'plain HTTP request') });
    }
    // One scrape asks every running worker and adds up what they count (prom-client's aggregation).
    if (config.metricsListen) metrics = await listenForMetrics(config, logger, async () => AggregatorRegistry.aggregate(await workers.metrics()).metrics(), AggregatorRegistry.PROMETHEUS_CONTENT_TYPE);
  } catch (error) {
    await httpListener?.close();
    await workers.stop(0);
    await state?.close();
    await registry?.stop();
    throw error;
  }
  acme?.begin();
  const gcSchedule = scheduleFor(config, registry !== undefined, logger, options.env);
  const upstreams = (registry ? [new URL(registry.url)] : config.upstreams).map((url) => url.origin);
  logger.info({ url: address.url, upstreams, auth: config.auth, service: config.service, embedded: registry !== undefined, workers: config.workers }, 'gateway listening');
  return running({ config, logger, workers, acme, httpListener, metrics, gcSchedule, state, registry, lock });
}

interface Parts {
  config: Readonly<Config>;
  logger: Logger;
  workers: WorkerSupervisor;
  acme: ReturnType<typeof acmeManagerFor>;
  httpListener: RunningHttpListener | undefined;
  metrics: RunningMetricsListener | undefined;
  gcSchedule: ReturnType<typeof scheduleFor>;
  state: InProcessSharedState | undefined;
  registry: RegistryProcess | undefined;
  lock: DataDirLock | undefined;
}

function running(parts: Parts): RunningCluster {
  const { config, logger, workers } = parts;
  let closed: Promise<void> | undefined;
  return {
    async reload() {
      await parts.acme?.reload();
      const errors = await workers.reload();
      if (errors.length > 0) logger.error({ errors }, 'reload failed in some workers');
      else logger.info({ workers: workers.size }, 'reloaded in every worker');
    },
    close() {
      closed ??= (async () => {
        await parts.gcSchedule?.stop();
        await parts.acme?.stop();
        await parts.httpListener?.close();
        await workers.stop(config.shutdownGraceSeconds * 1000);
        // After the last request, so that scrapes during the grace period see the transfers finish.
        await parts.metrics?.close();
        await parts.state?.close();
        await parts.registry?.stop();
        await parts.lock?.release();
        logger.info('gateway stopped');
      })();
      return closed;
    },
  };
}
