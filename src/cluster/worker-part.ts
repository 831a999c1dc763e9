// What a cluster worker's gateway takes from its primary instead of doing itself: the registry, the ACME certificate, the metrics listener.

import type { Registry } from 'prom-client';
import type { Config } from '../config/config.js';
import type { Preflight } from '../config/preflight.js';
import type { AcmeWiring } from '../tls/acme/from-config.js';
import type { AcmeManager } from '../tls/acme/manager.js';

/** What the gateway asks of whoever keeps its ACME certificate: the manager itself, or the primary's copy in a worker. */
export type CertificateKeeper = Pick<AcmeManager, 'loadFromDisk' | 'begin' | 'reload' | 'status' | 'checkNow' | 'stop'>;

/**
 * Handed to startGateway by a cluster worker (src/cluster/worker.ts). The gateway then checks and
 * creates nothing (the primary did), starts no registry, GC schedule, ACME order or plain-HTTP
 * listener, and opens no metrics listener: it serves HTTPS on the shared port and counts.
 */
export interface WorkerPart {
  /** What the primary's checks found; the worker does not run them again. */
  checked: Preflight;
  /** The primary's embedded registry; undefined when the upstreams come from the settings. */
  registry: URL | undefined;
  /** With ACME on: the certificate the primary keeps, installed here as the primary sends it. */
  acmeFor(config: Readonly<Config>, wiring: AcmeWiring): CertificateKeeper | undefined;
  /** The registries this worker counts in, for the primary's scrapes. */
  metrics(registries: Registry[]): void;
}
