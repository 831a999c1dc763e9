// Starts a whole gateway from a Config: keys and users on first run, upstream (or embedded registry), HTTPS server.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { createApp } from './app.js';
import { publicHostFor, publicHostResolver } from './public-host.js';
import { Authenticator, PasswordChecker } from './auth/authenticator.js';
import { createFirstRunFiles, startEmbeddedRegistry } from './first-run.js';
import type { Config } from './config/config.js';
import { ConfigError } from './errors.js';
import { settingName } from './config/settings.js';
import { loadGatewayFiles } from './config/gateway-files.js';
import { createRegistryProxy } from './registry/proxy.js';
import { LoginThrottle } from './auth/throttle.js';
import { UpstreamPool } from './registry/upstreams.js';
import { lockDataDir } from './config/data-lock.js';
import { preflight, type Preflight } from './config/preflight.js';
import { startHttpsServer, type RunningServer } from './tls/server.js';
import { AcmeChallenges } from './tls/acme/challenges.js';
import { acmeManagerFor } from './tls/acme/from-config.js';
import type { AcmeStatus } from './tls/acme/manager.js';
import { startHttpListener, type RunningHttpListener } from './tls/http-listener.js';
import { EventBus } from './ops/events.js';
import { AuditLog } from './ops/audit-log.js';
import { webhooksFor, type WebhookStats } from './ops/webhooks.js';
import { createGatewayMetrics } from './ops/metrics-setup.js';
import { createMaintenanceGuard, MaintenanceMode, type MaintenanceStatus } from './ops/maintenance.js';
import { scheduleFor } from './ops/gc-schedule.js';
import { TokenAuthority } from './auth/token.js';
import { createAuthenticatorChain, providerFingerprintKey, reportProviders } from './auth/chain-setup.js';
import { SuccessCache } from './auth/success-cache.js';
import { parseProviders } from './config/providers.js';
import { createWebPages, type WebPages } from './ui/setup.js';
import { maintenanceGate } from './ui/browse/deletes.js';
import { openSharedState } from './state/shared-setup.js';
import type { SharedState } from './state/shared-state.js';
import type { WorkerPart } from './cluster/worker-part.js';

export interface GatewayOptions {
  logger: Logger;
  /** Environment for finding the registry binary (PATH) and for its child process. */
  env: NodeJS.ProcessEnv;
  /** Where one-time messages for the operator go (generated password, generated certificates). */
  announce(message: string): void;
  /** ACME retry timing (tests); the defaults are 1 minute doubling to 6 hours. */
  acmeRetryMs?: number;
  acmeMaxRetryMs?: number;
  /** The ACME manager's clock (tests move it to make a renewal due). */
  acmeNow?(): number;
  /** State shared with other gateways made elsewhere (a cluster worker's); without it, Redis when redis_url is set. */
  sharedState?: SharedState;
  /** Set in a cluster worker: what its primary does instead (src/cluster/worker.ts). */
  worker?: WorkerPart;
}

export interface RunningGateway {
  /** https://HOST:PORT as bound (127.0.0.1 when listening on all addresses). */
  url: string;
  port: number;
  upstreams: URL[];
  /** What the gateway does, as events (metrics, audit and webhooks listen here). */
  events: EventBus;
  /** The plain-HTTP listener's port, when GATEWAY_HTTP_LISTEN is set. */
  httpPort: number | undefined;
  /** The metrics listener's port, when GATEWAY_METRICS_LISTEN is set (and, for the default, free). */
  metricsPort: number | undefined;
  /** Audit lines not written (or not sent) since start; 0 without an audit trail. */
  auditFailures(): number;
  /** Each webhook receiver's queue and counters (delivered, retried, failed for good, dropped). */
  webhookStats(): WebhookStats[];
  /** The ACME certificate's state, when ACME is on. */
  acmeStatus(): AcmeStatus | undefined;
  /** Read-only maintenance as this gateway has it in force, and its writes in flight. */
  maintenanceStatus(): MaintenanceStatus;
  /** Runs the ACME check the renewal timer runs (use disk, or order when due); resolves when it is done. */
  acmeCheckNow(): Promise<void>;
  /** Re-reads htpasswd, the access file, the CI tokens and the TLS certificate (what SIGHUP does). */
  reload(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Checks everything `gateway config check` checks, then, when the registry is embedded, takes the
 * data folder before anything there is read or written: a second gateway on the same folder stops
 * here, having changed nothing. With GATEWAY_UPSTREAM the data folder is not used and not locked.
 */
export async function startGateway(config: Readonly<Config>, options: GatewayOptions): Promise<RunningGateway> {
  if (options.worker) return startChecked(config, options, options.worker.checked);
  const checked = await preflight(config, options.env);
  for (const warning of checked.warnings) options.logger.warn(warning);
  if (checked.registryBinary === undefined) return startChecked(config, options, checked);
  const lock = await lockDataDir(config.dataDir, (error) =>
    options.logger.error({ dataDir: config.dataDir, err: error.message }, 'lost the lock on the data folder: another gateway could start on the same data'),
  );
  try {
    const gateway = await startChecked(config, options, checked);
    return { ...gateway, close: () => gateway.close().finally(() => lock.release()) };
  } catch (error) {
    await lock.release();
    throw error;
  }
}

async function startChecked(config: Readonly<Config>, options: GatewayOptions, checked: Preflight): Promise<RunningGateway> {
  const { logger } = options;
  if (!options.worker) await createFirstRunFiles(config, options, checked);

  // Read once: it signs tokens, keys the provider fingerprints and the web pages' cookies.
  const tokenKeyPem = readFileSync(config.tokenKey, 'utf8');
  const tokens = new TokenAuthority({
    privateKeyPem: tokenKeyPem,
    certificatePem: readFileSync(config.tokenCert, 'utf8'),
    issuer: config.tokenIssuer,
    service: config.service,
    ttlSeconds: config.tokenTtlSeconds,
  });
  const files = await loadGatewayFiles(config, logger);
  const { users, ciTokens, rules } = files;
  const checker = new PasswordChecker();
  // Successes are remembered once, for every authenticator, by the logins' success cache.
  const authenticator = new Authenticator(users, checker, { cacheTtlMs: 0 });
  const providers = config.providers ?? parseProviders(undefined);
  const chain = await createAuthenticatorChain(providers, {
    users,
    ciTokens,
    checker: authenticator,
    fingerprintKey: providerFingerprintKey(tokenKeyPem),
    logger,
  });
  logger.info({ authenticators: chain.names }, 'authenticators in the order they are asked');
  reportProviders(providers, logger);
  const shared = openSharedState(config, { logger, given: options.sharedState });
  const logins = { authenticator, users, ciTokens, throttle: shared?.throttle(new LoginThrottle()) ?? new LoginThrottle(), chain, successes: new SuccessCache({ ttlMs: config.basicCacheSeconds * 1000 }) };

  const audit = openAuditLog(config, logger);
  const webhooks = webhooksFor(config, logger);
  const registry = checked.registryBinary === undefined ? undefined : await startEmbeddedRegistry(config, options, checked.registryBinary);
  const upstreamUrls = registry ? [new URL(registry.url)] : options.worker?.registry ? [options.worker.registry] : config.upstreams;
  const pool = new UpstreamPool(upstreamUrls, { logger });
  const proxy = createRegistryProxy({ upstreams: pool, logger, publicHost: publicHostResolver(config), perClient: config.upstreamPerClient, bodyIdleMs: config.bodyIdleSeconds * 1000 });

  // ACME: a valid certificate on disk is served from the first connection; else the local one until ordered.
  const challenges = new AcmeChallenges();
  let certificate = { cert: readFileSync(config.tlsCert, 'utf8'), key: readFileSync(config.tlsKey, 'utf8') };
  let server: RunningServer | undefined;
  const acmeWiring = {
    logger,
    challenges,
    install: (cert: string, key: string) => {
      certificate = { cert, key };
      server?.setCertificate(cert, key);
    },
    retryMs: options.acmeRetryMs,
    maxRetryMs: options.acmeMaxRetryMs,
    now: options.acmeNow,
  };
  const acme = options.worker ? options.worker.acmeFor(config, acmeWiring) : acmeManagerFor(config, acmeWiring);
  await acme?.loadFromDisk();

  const events = new EventBus((error) => logger.error({ err: (error as Error).message }, 'an event listener failed'));
  audit?.listen(events);
  webhooks?.listen(events);
  files.onReload((file, error) => events.emit(error === undefined ? { type: 'config.reloaded', file } : { type: 'config.rejected', file, error }));
  const metrics = createGatewayMetrics(config, {
    events,
    logger,
    passwordChecks: () => ({ waiting: checker.waitingChecks, running: checker.runningChecks }),
    upstreams: pool,
    acmeNotAfter: () => acme?.status().notAfter,
    certificatePem: certificate.cert,
    auditFailures: () => audit?.failures ?? 0,
    webhooks: () => webhooks?.stats() ?? [],
    sharedState: shared && (() => shared.status()),
  });
  // Reported and read before the port opens: a gateway started during maintenance starts read-only.
  const maintenance = new MaintenanceMode({
    file: config.maintenanceFile,
    logger,
    onSwitch: (state) => events.emit({ type: 'maintenance', on: state.on, ...(state.by ? { by: state.by } : {}) }),
    onFileChange: (state) => shared?.maintenanceFileChanged(state),
  });
  let web: WebPages | undefined;
  try {
    await maintenance.start();
    await shared?.attach({ ciTokens, maintenance });
    web = await createWebPages(config, { logger, logins, users, ciTokens, tokenKeyPem, shared: shared?.state, registry: { upstreams: pool, authorizer: rules, events, maintenance: maintenanceGate(maintenance), ...(registry || options.worker?.registry ? { storageRoot: path.join(config.dataDir, 'registry') } : {}) } });
  } catch (error) {
    await shared?.close();
    pool.close();
    await registry?.stop();
    await checker.close();
    await audit?.close();
    throw error;
  }
  const app = createApp({ config, logger, tokens, logins, authorizer: rules, proxy, upstreams: pool, upstreamReady: () => pool.checkAll(), certificateStatus: () => acme?.status(), pages: web?.handler, events, maintenanceGuard: createMaintenanceGuard(maintenance), maintenanceStatus: () => maintenance.status() });
  const redirectHost = (hostHeader: string | undefined) => publicHostFor(config, hostHeader);
  let httpListener: RunningHttpListener | undefined;
  try {
    server = await startHttpsServer(app, {
      ...certificate,
      listen: config.listen,
      redirectHost,
      onPlainHttp: (answer) => logger.info(answer, 'plain HTTP request on the TLS port'),
      acme: acme ? challenges : undefined,
    });
    if (config.httpListen && !options.worker) {
      httpListener = await startHttpListener({ listen: config.httpListen, challenges, redirectHost, onAnswer: (answer) => logger.debug(answer, 'plain HTTP request') });
    }
    if (options.worker) options.worker.metrics(metrics?.registries ?? []);
    else await metrics?.listen();
  } catch (error) {
    await metrics?.close();
    await httpListener?.close();
    await server?.close(0);
    await maintenance.stop();
    await shared?.close();
    pool.close();
    await registry?.stop();
    await checker.close();
    await audit?.close();
    throw error;
  }
  acme?.begin();
  const gcSchedule = options.worker ? undefined : scheduleFor(config, registry !== undefined, logger, options.env);

  const running = server;
  const stopWatching = files.watch();

  const host = config.listen.host === '0.0.0.0' || config.listen.host === '::' ? '127.0.0.1' : config.listen.host;
  const url = `https://${host.includes(':') ? `[${host}]` : host}:${running.address.port}`;
  logger.info({ url, upstreams: upstreamUrls.map((u) => u.origin), auth: config.auth, service: config.service, embedded: registry !== undefined || options.worker?.registry !== undefined }, options.worker ? 'worker listening' : 'gateway listening');

  let closed: Promise<void> | undefined;
  return {
    url,
    port: running.address.port,
    upstreams: upstreamUrls,
    events,
    httpPort: httpListener?.address.port,
    metricsPort: metrics?.port,
    auditFailures: () => audit?.failures ?? 0,
    webhookStats: () => webhooks?.stats() ?? [],
    acmeStatus: () => acme?.status(),
    acmeCheckNow: async () => acme?.checkNow(),
    maintenanceStatus: () => maintenance.status(),
    async reload() {
      audit?.reopen();
      webhooks?.reloadSecrets();
      await files.reload();
      // With ACME the certificate comes from certs/acme/, never from tls_cert again.
      if (acme) {
        await acme.reload();
        return;
      }
      try {
        const cert = readFileSync(config.tlsCert);
        running.setCertificate(cert, readFileSync(config.tlsKey));
        metrics?.certificateChanged(cert);
        events.emit({ type: 'config.reloaded', file: config.tlsCert });
        logger.info({ cert: config.tlsCert }, 'TLS certificate reloaded');
      } catch (error) {
        events.emit({ type: 'config.rejected', file: config.tlsCert, error: (error as Error).message });
        logger.error({ err: (error as Error).message }, 'TLS certificate reload failed; keeping the previous one');
      }
    },
    close() {
      closed ??= (async () => {
        stopWatching();
        await gcSchedule?.stop();
        await acme?.stop();
        await httpListener?.close();
        await running.close(config.shutdownGraceSeconds * 1000);
        // After the last request, so that scrapes during the grace period see the transfers finish.
        await metrics?.close();
        // After the last request: what finished in the grace period is still audited and announced.
        await audit?.close();
        // Queued deliveries get one last try (the grace period, at most 10 s); what is left is logged as dead letters.
        await webhooks?.close(Math.min(config.shutdownGraceSeconds, 10) * 1000);
        await maintenance.stop();
        web?.close();
        await shared?.close();
        proxy.close();
        pool.close();
        await registry?.stop();
        await checker.close();
        await chain.close();
        logger.info('gateway stopped');
      })();
      return closed;
    },
  };
}

/**
 * The audit trail the settings ask for; a file that cannot be opened stops the start, naming the
 * setting. Trouble with it later is told on stderr (the trail may be stdout), at the gateway's level.
 */
function openAuditLog(config: Readonly<Config>, logger: Logger): AuditLog | undefined {
  if (config.auditLog === undefined) return undefined;
  try {
    return new AuditLog({ target: config.auditLog, logger: pino({ level: logger.level, base: { service: 'registry-gateway', component: 'audit' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2)) });
  } catch (error) {
    throw new ConfigError(settingName('audit_log'), `cannot append to ${config.auditLog} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}
