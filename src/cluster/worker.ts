// A cluster worker: asks its primary for the registry, certificate and challenges, then serves HTTPS on the shared port and answers the primary.

import type { Registry } from 'prom-client';
import type { Config } from '../config/config.js';
import { startGateway, type GatewayOptions, type RunningGateway } from '../gateway.js';
import { AcmeFromPrimary } from './acme-share.js';
import { IpcSharedState, type PrimaryChannel } from './ipc-state.js';
import { ClusterLocks } from './lock-share.js';
import { shareKeyedLocks } from '../registry/tag-locks.js';
import { parsePrimaryMessage, type PrimaryMessage, type WorkerMessage } from './messages.js';
import type { MetricsJson } from './supervisor.js';
import type { WorkerPart } from './worker-part.js';

type Setup = Extract<PrimaryMessage, { type: 'gateway:setup' }>;

export interface WorkerOptions extends GatewayOptions {
  /** The primary asks this worker to stop (or is gone): drain and exit as on SIGTERM. */
  onStop(): void;
}

const channel: PrimaryChannel = {
  send: (message: WorkerMessage) => void process.send?.(message),
  get connected() {
    return process.connected;
  },
};

/** What the gateway is told it need not do: the primary checked and created everything. */
const checkedByPrimary: WorkerPart['checked'] = {
  creates: { tls: false, tokenKey: false, htpasswd: false },
  registryBinary: undefined,
  dataDirInUse: true,
  warnings: [],
  fileRemarks: [],
};

export async function startWorker(config: Readonly<Config>, options: WorkerOptions): Promise<RunningGateway> {
  const { logger } = options;
  // The primary's scrapes are answered from here on: nothing until the gateway counts.
  let registries: Registry[] = [];
  // Pushes of immutable tags and deletes take turns across all the workers, as in one process.
  const locks = new ClusterLocks(channel);
  shareKeyedLocks((name) => locks.lock(name));
  const state = config.redis === undefined ? new IpcSharedState(channel, { onListenerError: (error) => logger.error({ err: (error as Error).message }, 'a notice listener failed') }) : undefined;
  let acme: AcmeFromPrimary | undefined;
  let gateway: RunningGateway | undefined;
  let gotSetup: (setup: Setup) => void = () => undefined;
  const setup = new Promise<Setup>((resolve) => {
    gotSetup = resolve;
  });
  process.on('message', (raw) => {
    const message = parsePrimaryMessage(raw);
    if (message === undefined) return;
    if (message.type === 'gateway:setup') return gotSetup(message);
    if (state?.receive(message) || locks.receive(message) || acme?.receive(message)) return;
    if (message.type === 'gateway:sync') return channel.send({ type: 'gateway:synced', id: message.id });
    if (message.type === 'gateway:metrics') {
      void Promise.all(registries.map((registry) => registry.getMetricsAsJSON())).then(
        (each) => channel.send({ type: 'gateway:metrics-answer', id: message.id, metrics: each.flat() as unknown as MetricsJson }),
        (error: unknown) => logger.warn({ err: (error as Error).message }, 'could not read the metrics for a scrape'),
      );
      return;
    }
    if (message.type === 'gateway:stop') return options.onStop();
    if (message.type === 'gateway:reload') {
      // Before the gateway runs there is nothing to reload: it reads every file as it starts.
      void (gateway?.reload() ?? Promise.resolve()).then(
        () => channel.send({ type: 'gateway:reloaded', id: message.id }),
        (error: unknown) => channel.send({ type: 'gateway:reloaded', id: message.id, error: (error as Error).message }),
      );
    }
  });
  process.on('disconnect', () => {
    state?.disconnected();
    locks.disconnected();
    logger.warn('the cluster primary is gone: stopping');
    options.onStop();
  });
  channel.send({ type: 'gateway:hello' });
  const given = await setup;
  acme = new AcmeFromPrimary(given);
  const worker: WorkerPart = {
    checked: checkedByPrimary,
    registry: given.registry === undefined ? undefined : new URL(given.registry),
    acmeFor: (settings, wiring) => (settings.acme ? acme!.keeper(wiring, settings.acme.domains) : undefined),
    metrics: (counted: Registry[]) => {
      registries = counted;
    },
  };
  gateway = await startGateway(config, { ...options, worker, ...(state ? { sharedState: state } : {}) });
  channel.send({ type: 'gateway:listening', url: gateway.url, port: gateway.port });
  return gateway;
}
