// Wires the metrics into a running gateway: counts its events from the start, then opens the listener GATEWAY_METRICS_LISTEN names.

import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config/config.js';
import { settingName } from '../config/settings.js';
import { ConfigError } from '../errors.js';
import type { EventBus } from './events.js';
import { GatewayMetrics } from './metrics.js';
import { startMetricsListener, type RunningMetricsListener } from './metrics-listener.js';
import { processMetrics, registerSourceMetrics, type WebhookCounts } from './metrics-sources.js';

export interface MetricsWiring {
  events: EventBus;
  logger: Logger;
  /** The password checker (its queue depth). */
  passwordChecks(): { waiting: number; running: number };
  /** The upstream pool (health, failovers). */
  upstreams: { readonly upstreams: readonly { url: URL; healthy: boolean }[]; readonly failovers: number };
  /** The ACME certificate's expiry, when ACME is on and has one. */
  acmeNotAfter(): string | undefined;
  /** The certificate read from tls_cert at start (PEM, its chain after it). */
  certificatePem: string | Buffer;
  /** Audit lines not written since start. */
  auditFailures(): number;
  /** Each webhook receiver's queue and counts. */
  webhooks(): readonly WebhookCounts[];
  /** The state shared with other gateways and whether it answers; undefined when nothing is shared. */
  sharedState?(): { backend: string; up: boolean } | undefined;
}

export interface GatewayMetricsRunning {
  /** Opens the listener; a port in use stops the start when the setting was given, else only warns. */
  listen(): Promise<void>;
  /** The bound port, once listening. */
  readonly port: number | undefined;
  /** What is counted: the gateway's registry and the process's (a cluster worker hands them to its primary). */
  readonly registries: Registry[];
  /** tls_cert was read again (SIGHUP): its expiry is what is served now. */
  certificateChanged(pem: string | Buffer): void;
  close(): Promise<void>;
}

/** notAfter of the first certificate in a PEM, as ms since the epoch; undefined when it does not parse. */
export function certificateNotAfter(pem: string | Buffer): number | undefined {
  try {
    const notAfter = Date.parse(new X509Certificate(pem).validTo);
    return Number.isNaN(notAfter) ? undefined : notAfter;
  } catch {
    return undefined;
  }
}

/** Undefined when GATEWAY_METRICS_LISTEN is empty: then nothing is counted either. */
export function createGatewayMetrics(config: Readonly<Config>, wiring: MetricsWiring): GatewayMetricsRunning | undefined {
  const address = config.metricsListen;
  if (address === undefined) return undefined;
  const metrics = new GatewayMetrics({ maxRepositories: config.metricsRepositories });
  let fileNotAfter = certificateNotAfter(wiring.certificatePem);
  registerSourceMetrics(metrics.registry, {
    passwordChecks: wiring.passwordChecks,
    upstreams: () => wiring.upstreams.upstreams,
    failovers: () => wiring.upstreams.failovers,
    certificateNotAfter: () => {
      const acme = wiring.acmeNotAfter();
      if (acme !== undefined && !Number.isNaN(Date.parse(acme))) return { notAfter: Date.parse(acme), source: 'acme' };
      return fileNotAfter === undefined ? undefined : { notAfter: fileNotAfter, source: 'tls_cert' };
    },
    auditFailures: wiring.auditFailures,
    webhooks: wiring.webhooks,
    sharedState: wiring.sharedState,
  });
  const stopListening = wiring.events.on(metrics.observe);
  const render = async () => (await metrics.render()) + (await processMetrics().metrics());
  let listener: RunningMetricsListener | undefined;
  return {
    async listen() {
      listener = await listenForMetrics(config, wiring.logger, render, metrics.registry.contentType);
      if (listener === undefined) stopListening();
    },
    get port() {
      return listener?.address.port;
    },
    registries: [metrics.registry, processMetrics()],
    certificateChanged(pem) {
      fileNotAfter = certificateNotAfter(pem) ?? fileNotAfter;
    },
    async close() {
      stopListening();
      await listener?.close();
    },
  };
}

/**
 * Opens the metrics listener on metrics_listen (set) for `render`; undefined when the default address
 * is taken (a warning says so), a ConfigError when the address was given and cannot be had.
 */
export async function listenForMetrics(config: Readonly<Config>, logger: Logger, render: () => Promise<string>, contentType: string): Promise<RunningMetricsListener | undefined> {
  const address = config.metricsListen!;
  const shown = `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
  let listener: RunningMetricsListener;
  try {
    listener = await startMetricsListener({ listen: address, render, contentType, onError: (error) => logger.error({ err: error.message }, 'metrics scrape failed') });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    if (config.metricsListenGiven) throw new ConfigError(settingName('metrics_listen'), `cannot listen on ${shown} (${code})`);
    logger.warn({ listen: shown, err: code }, `no metrics: the default metrics address is taken; set ${settingName('metrics_listen')} to another address, or empty to turn metrics off`);
    return undefined;
  }
  logger.info({ url: `http://${shown.replace(/:\d+$/, `:${listener.address.port}`)}/metrics` }, 'metrics listening');
  return listener;
}
